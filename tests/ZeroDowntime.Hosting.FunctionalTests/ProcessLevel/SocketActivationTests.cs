using System.Globalization;
using Xunit.Abstractions;
using ZeroDowntime.Hosting.FunctionalTests.Infrastructure;
using ZeroDowntime.Hosting.Tests.Infrastructure;
using static ZeroDowntime.Hosting.FunctionalTests.Infrastructure.HandoffSteps;

namespace ZeroDowntime.Hosting.FunctionalTests;

/// <summary>
/// Issue 21: a start with LISTEN_FDS, as systemd starts a socket-activated unit, restarts a unit from its fd store, or
/// <c>zerodowntime run</c> restarts a crashed app. systemd-socket-activate (Debian's systemd package) plays systemd: it
/// binds, waits for the first connection, and execs the app with LISTEN_FDS, LISTEN_PID and LISTEN_FDNAMES.
/// </summary>
public sealed class SocketActivationTests(ITestOutputHelper output)
{
    /// <summary>
    /// The app serves the socket it was passed (fd 3, matched to its endpoint by the bound address: the name "web" is
    /// a .socket unit's own), binds nothing, sets close-on-exec on it, closes a second one that no endpoint asks for,
    /// and hands the first over to a successor (started as usual) under load: 0 failed requests.
    /// </summary>
    [Fact]
    public async Task SystemdSocketActivate_ServesThePassedSocket_ThenHandsItOver_NoFailedRequest()
    {
        LoadTool.Require("systemd-socket-activate");
        using var scope = new TestScope();
        int unused = TestScope.FreePort();

        // systemd-socket-activate passes only the variables named with -E (from its own environment), and refuses a name
        // with a dot (Logging__LogLevel__Microsoft.AspNetCore: the app logs ASP.NET Core's information lines too).
        string[] passed = ["DOTNET_ENVIRONMENT", "ASPNETCORE_ENVIRONMENT", "Logs__ConsoleJson", "ZeroDowntime__SocketPath", "Logs__Directory", "HOME"];
        var config = scope.Config() with
        {
            Launcher = ["systemd-socket-activate", "--listen", $"127.0.0.1:{scope.Port}", "--listen", $"127.0.0.1:{unused}", "--fdname=web:spare",
                .. passed.SelectMany(v => new[] { "-E", v })],
        };
        await using var v1 = SampleApp.Start("v1", config, output);

        await v1.WaitForOutputLineAsync(l => l.Contains($"Listening on 127.0.0.1:{scope.Port} as 3.", StringComparison.Ordinal), "systemd-socket-activate's socket");

        // The first connection makes systemd-socket-activate exec the app; it waits in the queue until the app serves it.
        Assert.Equal(v1.Pid, await PidAsync(scope));
        var adopted = await v1.WaitForEventAsync(Events.ListenerActivated);
        await v1.WaitForEventAsync(Events.ServingHandoffSocket);
        Assert.Equal($"tcp:127.0.0.1:{scope.Port}", adopted["Key"]);
        Assert.Equal("3", adopted["Fd"]);
        Assert.Equal("web", adopted["Name"]);
        Assert.Equal(0, v1.CountEvent(Events.ListenerBound));
        Assert.True(CloseOnExec(v1.Pid, 3), "fd 3 must be close-on-exec once adopted (systemd passes it without)");

        // The second socket (fd 4, "spare") matches no endpoint: closed once the app has started, so that the kernel
        // refuses its clients instead of queueing them for nobody.
        var unusedLine = await v1.WaitForEventAsync(Events.InheritedListenerUnused);
        Assert.Equal($"tcp:127.0.0.1:{unused}", unusedLine["Key"]);
        // systemd-socket-activate exec'd the app, so the app held the only copy: closed, the port refuses.
        using (var probe = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp))
        {
            var refused = await Assert.ThrowsAsync<System.Net.Sockets.SocketException>(() => probe.ConnectAsync(System.Net.IPAddress.Loopback, unused));
            Assert.Equal(System.Net.Sockets.SocketError.ConnectionRefused, refused.SocketErrorCode);
        }

        await using var load = HttpLoad.Start(scope.BaseUri, workers: 8, newConnectionPerRequest: true);
        await load.WaitForMoreSuccessesAsync(200);
        var (v2, oldExit) = await HandOverAsync(v1, "v2", scope.Config(), output);
        await using (v2)
        {
            await v2.WaitForEventAsync(Events.ListenerInherited);
            await load.WaitForMoreSuccessesAsync(200);
            await load.StopAsync();
            output.WriteLine($"load: {load}");
            load.AssertNoFailures();
            Assert.Equal(0, oldExit);
            Assert.Equal(v2.Pid, await PidAsync(scope));
            Assert.Equal(0, v2.CountEvent(Events.ListenerBound));
        }
    }

    private static bool CloseOnExec(int pid, int fd)
    {
        // fdinfo's flags are octal; O_CLOEXEC is 02000000.
        string flags = File.ReadLines($"/proc/{pid}/fdinfo/{fd}").First(l => l.StartsWith("flags:", StringComparison.Ordinal))[6..].Trim();
        return (Convert.ToInt64(flags, 8) & 0x80000) != 0;
    }

    private static async Task<int> PidAsync(TestScope scope)
    {
        using var client = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
        return int.Parse(await client.GetStringAsync(new Uri(scope.BaseUri, "/pid")), CultureInfo.InvariantCulture);
    }
}
