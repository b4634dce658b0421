using System.Globalization;
using Xunit.Abstractions;
using ZeroDowntime.Hosting.FunctionalTests.Infrastructure;
using ZeroDowntime.Hosting.Tests.Infrastructure;
using static ZeroDowntime.Hosting.FunctionalTests.Infrastructure.HandoffSteps;

namespace ZeroDowntime.Hosting.FunctionalTests;

/// <summary>
/// Issue 21: the fd store messages as systemd reads them. The test's NOTIFY_SOCKET receives with recvmsg, as systemd
/// does, and compares each descriptor that came with <c>FDSTORE=1</c> with the app's listener (same socket inode).
/// </summary>
public sealed class FdStoreTests(ITestOutputHelper output)
{
    /// <summary>
    /// v1 on two ports stores both (FDSTORE=1, FDNAME=the listener's key, the very sockets); v2, configured with the
    /// first port only, takes the second out of the store (FDSTOREREMOVE=1) and stores the first again (same inode).
    /// </summary>
    [Fact]
    public async Task FdStore_EachListenerStoredAsItsOwnSocket_TheEndpointASuccessorDropsIsRemoved()
    {
        using var scope = new TestScope();
        int dropped = TestScope.FreePort();
        await using var keeper = new NotifySocketRecorder(Path.Combine(scope.Directory, "notify.sock"));
        var v1Config = scope.Config().With("NOTIFY_SOCKET", keeper.Path) with
        {
            Arguments = ["--urls", $"http://127.0.0.1:{scope.Port};http://127.0.0.1:{dropped}"],
        };
        await using var v1 = await StartFirstAsync("v1", v1Config, output);
        await v1.WaitForEventCountAsync(Events.ListenerStored, 2);
        var v1Sockets = v1.EventsOf(Events.ListenerStored).ToDictionary(l => l["Key"]!, l => SocketInode(v1.Pid, int.Parse(l["Fd"]!, CultureInfo.InvariantCulture)));
        await keeper.FlushAsync();

        foreach (int port in new[] { scope.Port, dropped })
        {
            string key = $"tcp:127.0.0.1:{port}";
            var stored = Assert.Single(keeper.Messages, m => m.Text == $"FDSTORE=1\nFDNAME=tcp%3A127.0.0.1%3A{port}");
            Assert.Equal([v1Sockets[key]], stored.Inodes);
        }

        var v2Config = scope.Config().With("NOTIFY_SOCKET", keeper.Path);
        var (v2, oldExit) = await HandOverAsync(v1, "v2", v2Config, output);
        await using (v2)
        {
            Assert.Equal(0, oldExit);
            await v2.WaitForEventAsync(Events.ListenerUnstored);
            await v2.WaitForEventAsync(Events.ListenerStored);
            await keeper.FlushAsync();
            foreach (var message in keeper.Messages)
            {
                output.WriteLine($"sd_notify: {message.Text.Replace('\n', ' ')} fds [{string.Join(", ", message.Inodes)}]");
            }

            Assert.Single(keeper.Messages, m => m.Text == $"FDSTOREREMOVE=1\nFDNAME=tcp%3A127.0.0.1%3A{dropped}" && m.Inodes.Count == 0);
            var stores = keeper.Messages.Where(m => m.Text == $"FDSTORE=1\nFDNAME=tcp%3A127.0.0.1%3A{scope.Port}").ToList();
            Assert.Equal(2, stores.Count); // v1's, and v2's of the same socket
            Assert.All(stores, s => Assert.Equal([v1Sockets[$"tcp:127.0.0.1:{scope.Port}"]], s.Inodes));
            Assert.Single(keeper.Messages, m => m.Text == $"FDSTORE=1\nFDNAME=tcp%3A127.0.0.1%3A{dropped}"); // v1's only
        }
    }

    /// <summary>
    /// A configuration reload in place (appsettings.json's <c>Kestrel:Endpoints</c> loses one) makes Kestrel unbind
    /// that listener while the process serves on: it is taken out of the store (FDSTOREREMOVE=1), or the keeper's copy
    /// would queue connections for nobody. The endpoint kept stays stored and served.
    /// </summary>
    [Fact]
    public async Task FdStore_ReloadDropsAnEndpoint_ItIsRemovedFromTheStore()
    {
        using var scope = new TestScope();
        int dropped = TestScope.FreePort();
        await using var keeper = new NotifySocketRecorder(Path.Combine(scope.Directory, "notify.sock"));
        string settings = Path.Combine(scope.Directory, "appsettings.json");
        await WriteSettingsAsync(settings, scope.Port, dropped);
        var config = scope.Config().With("NOTIFY_SOCKET", keeper.Path) with { Arguments = [], WorkingDirectory = scope.Directory };
        await using var app = await StartFirstAsync("app", config, output);
        await app.WaitForEventCountAsync(Events.ListenerStored, 2);

        await WriteSettingsAsync(settings, scope.Port);
        var removed = await app.WaitForEventAsync(Events.ListenerUnstored, TimeSpan.FromSeconds(30));
        Assert.Equal($"tcp:127.0.0.1:{dropped}", removed["Key"]);
        await keeper.FlushAsync();
        Assert.Single(keeper.Messages, m => m.Text == $"FDSTOREREMOVE=1\nFDNAME=tcp%3A127.0.0.1%3A{dropped}");
        Assert.DoesNotContain(keeper.Messages, m => m.Text.StartsWith("FDSTOREREMOVE=1", StringComparison.Ordinal) && m.Text.Contains($"%3A{scope.Port}", StringComparison.Ordinal));
        using var client = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        Assert.Equal(app.Pid.ToString(CultureInfo.InvariantCulture), await client.GetStringAsync(new Uri(scope.BaseUri, "/pid")));
    }

    /// <summary>The sample's appsettings.json with Kestrel:Endpoints on <paramref name="ports"/> instead of Urls.</summary>
    private static async Task WriteSettingsAsync(string path, params int[] ports)
    {
        var json = System.Text.Json.Nodes.JsonNode.Parse(await File.ReadAllTextAsync(Path.Combine(SampleApp.SampleDirectory, "appsettings.json")))!.AsObject();
        json.Remove("Urls");
        var endpoints = new System.Text.Json.Nodes.JsonObject();
        foreach (int port in ports)
        {
            endpoints[$"Port{port}"] = new System.Text.Json.Nodes.JsonObject { ["Url"] = $"http://127.0.0.1:{port}" };
        }

        json["Kestrel"] = new System.Text.Json.Nodes.JsonObject { ["Endpoints"] = endpoints };

        // Written aside and renamed over: the reload reads a whole file, never a half-written one.
        await File.WriteAllTextAsync(path + ".tmp", json.ToJsonString());
        File.Move(path + ".tmp", path, overwrite: true);
    }

    /// <summary>The inode of the socket behind a descriptor of another process (<c>socket:[N]</c>).</summary>
    private static ulong SocketInode(int pid, int fd)
    {
        string target = new FileInfo($"/proc/{pid}/fd/{fd}").LinkTarget ?? "";
        Assert.StartsWith("socket:[", target, StringComparison.Ordinal);
        return ulong.Parse(target[8..^1], CultureInfo.InvariantCulture);
    }
}
