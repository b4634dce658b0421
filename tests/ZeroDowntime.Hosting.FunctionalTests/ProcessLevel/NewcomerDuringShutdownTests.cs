using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using Xunit.Abstractions;
using ZeroDowntime.Hosting.FunctionalTests.Infrastructure;
using ZeroDowntime.Hosting.Tests.Infrastructure;
using static ZeroDowntime.Hosting.FunctionalTests.Infrastructure.HandoffSteps;

namespace ZeroDowntime.Hosting.FunctionalTests;

/// <summary>
/// A new process started while the old one shuts down in a plain shutdown (SIGTERM, no successor): it starts fresh once
/// the old one has closed its listeners, and nothing the old one does on its way out takes the new one's files away.
/// </summary>
public sealed class NewcomerDuringShutdownTests(ITestOutputHelper output)
{
    // Issue 18 item 2, as reproduced with the published sample: v1 drains a 5 s request after SIGTERM; v2 starts fresh
    // once v1 removed its handoff socket and binds the Unix endpoint anew; when v1's drain ends, v1 unlinked that path
    // by name, so v2 listened on an unlinked socket and every client got ENOENT. v1 now removes only its own file.
    [Fact]
    public async Task Sigterm_RequestInFlight_NewcomerStartsFresh_StillAnswersOnUnixPathAfterOldExits()
    {
        using var scope = new TestScope();
        string unixPath = Path.Combine(scope.Directory, "kestrel.sock");
        var config = scope.Config() with { Arguments = ["--urls", $"http://127.0.0.1:{scope.Port};http://unix:{unixPath}"] };
        await using var v1 = await StartFirstAsync("v1", config, output);
        Assert.Equal(v1.Pid, await GetPidOverUnixSocketAsync(unixPath));

        // A request on a connection that v1 has accepted already (it answered one before): in flight, not queued.
        using var slow = await RawHttpConnection.ConnectAsync(scope.Port);
        Assert.Equal(200, (await slow.GetAsync("/pid", TimeSpan.FromSeconds(10))).Status);
        var held = slow.GetAsync("/delay/5000", TimeSpan.FromSeconds(30));

        v1.Signal(Posix.SIGTERM);
        await v1.WaitForEventAsync(Events.HandoffSocketRemoved);
        Assert.False(v1.HasExited, "v1 still drains the 5 s request");

        await using var v2 = SampleApp.Start("v2", config, output);
        await v2.WaitForEventAsync(Events.ServingHandoffSocket);
        Assert.Single(v2.EventsOf(Events.NoPredecessor));
        Assert.Equal(v2.Pid, await GetPidOverUnixSocketAsync(unixPath));

        var answered = await held;
        Assert.Equal(200, answered.Status);
        Assert.Contains($"pid {v1.Pid:D7}", answered.Body, StringComparison.Ordinal);
        Assert.Equal(0, await v1.WaitForExitAsync(TimeSpan.FromSeconds(40)));
        output.WriteLine($"v1 exited; its drain ended after v2 bound {unixPath} anew");

        Assert.True(File.Exists(unixPath), "v1 must not remove the Unix socket file that v2 bound after v1 stopped listening");
        Assert.Contains(v1.Entries, l => l.Is(Events.UnixSocketFileKept) && l.Contains(unixPath, StringComparison.Ordinal));
        for (int i = 0; i < 10; i++)
        {
            Assert.Equal(v2.Pid, await GetPidOverUnixSocketAsync(unixPath));
        }

        using var client = new HttpClient();
        Assert.Equal(v2.Pid.ToString(CultureInfo.InvariantCulture), await client.GetStringAsync(new Uri(scope.BaseUri, "/pid")));
        Assert.True(File.Exists(scope.SocketPath), "v2's handoff socket survives v1's exit");
    }

    // Issue 18 item 2, related part: during a ShutdownDelay v1 answers "already handed over" and a newcomer gave up after
    // 20 tries (about 9.5 s, exit 75). With a delay of 15 s, a newcomer started at its beginning now waits until v1 has
    // closed its listeners and removed the handoff socket, then starts fresh and serves.
    [Fact]
    public async Task Sigterm_ShutdownDelayAbove10s_NewcomerStartedDuringTheDelay_StartsFreshAndServes()
    {
        using var scope = new TestScope();
        var delay = TimeSpan.FromSeconds(15);
        var config = scope.Config().With("ZeroDowntime__ShutdownDelay", delay.ToString());
        await using var v1 = await StartFirstAsync("v1", config, output);

        var sinceSigterm = Stopwatch.StartNew();
        v1.Signal(Posix.SIGTERM);
        await v1.WaitForEventAsync(Events.ShutdownDelayStarted);
        await using var v2 = SampleApp.Start("v2", config, output);
        await v2.WaitForEventAsync(Events.PredecessorShuttingDown);

        await v2.WaitForEventAsync(Events.ServingHandoffSocket, delay + TimeSpan.FromSeconds(30));
        var servedAt = sinceSigterm.Elapsed;
        output.WriteLine($"v2 serves {servedAt.TotalMilliseconds:0} ms after v1's SIGTERM (ShutdownDelay {delay.TotalSeconds:0} s)");
        Assert.False(v2.HasExited, $"v2 exited with code {(v2.HasExited ? v2.ExitCode : 0)}");
        Assert.True(servedAt >= delay - TimeSpan.FromSeconds(1), $"v2 served {servedAt} after SIGTERM, before v1's delay of {delay} was over");
        Assert.Single(v2.EventsOf(Events.NoPredecessor));
        Assert.Equal(0, await v1.WaitForExitAsync(TimeSpan.FromSeconds(40)));

        using var client = new HttpClient();
        Assert.Equal(v2.Pid.ToString(CultureInfo.InvariantCulture), await client.GetStringAsync(new Uri(scope.BaseUri, "/pid")));
        Assert.False(v2.HasExited);
    }

    private static async Task<int> GetPidOverUnixSocketAsync(string path)
    {
        using var handler = new SocketsHttpHandler
        {
            ConnectCallback = async (_, ct) =>
            {
                var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                try
                {
                    await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), ct);
                }
                catch
                {
                    socket.Dispose();
                    throw;
                }

                return new NetworkStream(socket, ownsSocket: true);
            },
        };
        using var client = new HttpClient(handler) { Timeout = TimeSpan.FromSeconds(10) };
        return int.Parse(await client.GetStringAsync(new Uri("http://localhost/pid")), CultureInfo.InvariantCulture);
    }
}
