using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using Xunit.Abstractions;
using ZeroDowntime.Hosting.FunctionalTests.Infrastructure;
using ZeroDowntime.Hosting.Tests.Infrastructure;
using static ZeroDowntime.Hosting.FunctionalTests.Infrastructure.HandoffSteps;

namespace ZeroDowntime.Hosting.FunctionalTests;

/// <summary>How an old process ends: plain shutdown, and the drain after a handoff, seen from raw connections.</summary>
public sealed partial class DrainTests(ITestOutputHelper output)
{
    /// <summary>
    /// With DrainOnShutdown (the default) the request still running at SIGTERM is cut at DrainTimeout (2 s here), by the
    /// library's drain; without it, at the host's ShutdownTimeout (1 s here), by Kestrel's stop. Either way the exit is
    /// prompt and the sole server removes its files.
    /// </summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Sigterm_SoleServer_ExitsZero_RemovesHandoffSocketAndUnixEndpointFiles(bool drainOnShutdown)
    {
        using var scope = new TestScope();
        string unixPath = Path.Combine(scope.Directory, "kestrel.sock");
        var config = (scope.Config() with { Arguments = ["--urls", $"http://127.0.0.1:{scope.Port};http://unix:{unixPath}"] })
            .With("shutdownTimeoutSeconds", "1")
            .With("ZeroDowntime__DrainOnShutdown", drainOnShutdown ? "true" : "false")
            .With("ZeroDowntime__DrainTimeout", "00:00:02")
            .With("ZeroDowntime__IdleConnectionGracePeriod", "00:00:01");
        await using var v1 = await StartFirstAsync("v1", config, output);
        Assert.True(File.Exists(scope.SocketPath));
        Assert.True(File.Exists(unixPath));

        // A request still running at SIGTERM is cut at DrainTimeout or ShutdownTimeout: the exit is prompt.
        using var slow = await RawHttpConnection.ConnectAsync(scope.Port);
        var held = slow.GetAsync("/delay/30000", TimeSpan.FromSeconds(60));
        await Until.TrueAsync(() => TcpTable.CountEstablished(scope.Port) >= 1, "the slow request's connection");
        using (var probe = new HttpClient())
        {
            Assert.Equal(v1.Pid.ToString(CultureInfo.InvariantCulture), await probe.GetStringAsync(new Uri(scope.BaseUri, "/pid")));
        }

        var stopped = Stopwatch.StartNew();
        v1.Signal(Posix.SIGTERM);
        Assert.Equal(0, await v1.WaitForExitAsync(TimeSpan.FromSeconds(15)));
        output.WriteLine($"v1 exited 0 {stopped.ElapsedMilliseconds} ms after SIGTERM");
        Assert.True(stopped.Elapsed < TimeSpan.FromSeconds(10), $"exit took {stopped.Elapsed} with a ShutdownTimeout of 1 s and a DrainTimeout of 2 s");
        await Assert.ThrowsAnyAsync<Exception>(() => held);
        if (drainOnShutdown)
        {
            Assert.Contains("(1 connection(s) aborted at the deadline)", v1.Entries.Single(l => l.Is(Events.DrainCompleted)), StringComparison.Ordinal);
        }
        else
        {
            Assert.DoesNotContain(v1.Entries, l => l.Is(Events.DrainStarted));
        }

        Assert.False(File.Exists(scope.SocketPath), "the sole server removes its handoff socket");
        Assert.False(File.Exists(unixPath), "the sole server removes its Unix endpoint file");
        Assert.Empty(Directory.GetFiles(scope.Directory, "*.tmp"));
        Assert.Contains(v1.Entries, l => l.Is(Events.HandoffSocketRemoved));
    }

    /// <summary>
    /// The drain runs before the host stops, so its deadline is its own. With DrainTimeout 6 s beyond a
    /// ShutdownTimeout of 1 s (which applies: see the SIGTERM test), a 3 s request that the old process starts after
    /// the commit is answered in full. With DrainTimeout 3 s below a ShutdownTimeout of 30 s, the straggler is aborted
    /// at the drain's deadline, not when the host's stop would give up on it. Either way the straggler (a 30 s
    /// request) ends at the deadline, not earlier, and the old process says it aborted one connection.
    /// </summary>
    [Theory]
    [InlineData(6, 1)]
    [InlineData(3, 30)]
    public async Task DrainTimeout_EitherSideOfShutdownTimeout_RequestInsideAnswered_StragglerAbortedAtDeadline(int drainSeconds, int shutdownSeconds)
    {
        using var scope = new TestScope();
        var drainTimeout = TimeSpan.FromSeconds(drainSeconds);
        var config = scope.Config()
            .With("ZeroDowntime__DrainTimeout", drainTimeout.ToString())
            .With("ZeroDowntime__IdleConnectionGracePeriod", "00:00:01")
            .With("shutdownTimeoutSeconds", shutdownSeconds.ToString(CultureInfo.InvariantCulture));
        await using var v1 = await StartFirstAsync("v1", config, output);

        using var idle = await RawHttpConnection.ConnectAsync(scope.Port);
        Assert.Equal(200, (await idle.GetAsync("/pid", TimeSpan.FromSeconds(10))).Status);
        using var straggler = await RawHttpConnection.ConnectAsync(scope.Port);
        var stuck = straggler.GetAsync("/delay/30000", TimeSpan.FromSeconds(60));
        using (var probe = new HttpClient())
        {
            Assert.Equal(v1.Pid.ToString(CultureInfo.InvariantCulture), await probe.GetStringAsync(new Uri(scope.BaseUri, "/pid")));
        }

        await using var v2 = SampleApp.Start("v2", scope.Config(), output);
        // From the old process's own timestamp of the drain's start, not from when this test read the line: under
        // load the line arrives late, and the straggler's end then seemed to come before DrainTimeout (run 13: 5.16 s).
        var drainLine = await v1.WaitForEventAsync(Events.DrainStarted);
        var drainBegan = drainLine.Timestamp ?? DateTimeOffset.UtcNow;
        int insideMs = drainSeconds * 1000 / 2;
        var inside = await idle.GetAsync($"/delay/{insideMs}", TimeSpan.FromSeconds(30));
        var insideDone = DateTimeOffset.UtcNow - drainBegan;
        Exception? aborted = await Record.ExceptionAsync(() => stuck);
        var abortedAt = DateTimeOffset.UtcNow - drainBegan;
        Assert.Equal(0, await v1.WaitForExitAsync(TimeSpan.FromSeconds(40)));

        string completed = v1.Entries.First(l => l.Is(Events.DrainCompleted));
        output.WriteLine($"DrainTimeout {drainSeconds} s, ShutdownTimeout {shutdownSeconds} s: {insideMs} ms request answered {insideDone.TotalMilliseconds:0} ms after the drain started; straggler ended {abortedAt.TotalMilliseconds:0} ms after ({(aborted is null ? "no error" : Posix.Describe(aborted))}); {completed}");
        Assert.Equal(200, inside.Status);
        Assert.Contains($"pid {v1.Pid:D7}", inside.Body, StringComparison.Ordinal);
        Assert.True(inside.ConnectionClose, "a response during the drain says Connection: close");
        Assert.NotNull(aborted);
        Assert.True(abortedAt > drainTimeout - TimeSpan.FromSeconds(0.5), $"the straggler ended {abortedAt} after the drain began, before DrainTimeout");
        Assert.True(abortedAt < drainTimeout + TimeSpan.FromSeconds(5), $"the straggler ended {abortedAt} after the drain began, long after DrainTimeout");
        var figures = DrainFigures().Match(completed);
        Assert.True(figures.Success, completed);
        Assert.Equal("1", figures.Groups["aborted"].Value);
        Assert.InRange(double.Parse(figures.Groups["ms"].Value, CultureInfo.InvariantCulture), drainTimeout.TotalMilliseconds, drainTimeout.TotalMilliseconds + 5000);
        await v2.WaitForEventAsync(Events.PredecessorExited);
    }

    // Issue 18 item 3: v2 (committed, v1 still draining a 15 s request) gets SIGTERM: the service is being stopped. v1
    // held its copy of the listener, so the port kept listening (connections queued for nobody) until v1 exited. v2
    // releases v1 first, v1 closes its copies, and once v2 stops listening the kernel refuses at once.
    [Fact]
    public async Task Sigterm_ToTheNewProcessWhileTheOldDrains_PortRefusesAtOnce_OldNeverServesAgain()
    {
        using var scope = new TestScope();
        var config = scope.Config().With("ZeroDowntime__DrainTimeout", "00:01:00");
        await using var v1 = await StartFirstAsync("v1", config, output);
        using var client = new HttpClient { Timeout = TimeSpan.FromMinutes(1) };
        var inFlight = client.GetStringAsync(new Uri(scope.BaseUri, "/delay/15000"));
        await v1.WaitForEventAsync(Events.FirstConnectionAccepted);
        await using var v2 = SampleApp.Start("v2", config, output);
        await v2.WaitForEventAsync(Events.Committed);
        await v2.WaitForEventAsync(Events.ServingHandoffSocket);

        v2.Signal(Posix.SIGTERM);
        await v1.WaitForEventAsync(Events.ReleasedBySuccessor);
        Assert.Equal(0, await v2.WaitForExitAsync());
        Assert.False(v1.HasExited, "v1 must still drain, or the test shows nothing");

        using (var probe = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp))
        {
            var ex = await Assert.ThrowsAsync<System.Net.Sockets.SocketException>(() => probe.ConnectAsync(System.Net.IPAddress.Loopback, scope.Port));
            Assert.Equal(System.Net.Sockets.SocketError.ConnectionRefused, ex.SocketErrorCode);
        }

        Assert.Contains("pid", await inFlight, StringComparison.Ordinal);
        Assert.Equal(0, await v1.WaitForExitAsync());
        Assert.DoesNotContain(v1.Entries, l => l.Is(Events.SuccessorLost));
    }

    [Fact]
    public async Task IdleKeepAliveConnection_NextRequestInsideGrace_AnsweredWithConnectionClose_IdleOneClosedAfterGrace()
    {
        using var scope = new TestScope();
        var config = scope.Config().With("ZeroDowntime__IdleConnectionGracePeriod", "00:00:05");
        await using var v1 = await StartFirstAsync("v1", config, output);
        using var reused = await RawHttpConnection.ConnectAsync(scope.Port);
        using var idle = await RawHttpConnection.ConnectAsync(scope.Port);
        foreach (var connection in new[] { reused, idle })
        {
            var before = await connection.GetAsync("/pid", TimeSpan.FromSeconds(10));
            Assert.Equal(v1.Pid.ToString(CultureInfo.InvariantCulture), before.Body);
            Assert.False(before.ConnectionClose, "before the handoff the connection is kept alive");
        }

        await using var v2 = SampleApp.Start("v2", config, output);

        // DrainStarted is logged once v1 says goodbye on every response (the commit happened just before).
        await v1.WaitForEventAsync(Events.DrainStarted);
        var drainStarted = Stopwatch.StartNew();
        var after = await reused.GetAsync("/pid", TimeSpan.FromSeconds(10));
        var answeredAt = drainStarted.Elapsed;
        Assert.Equal(v1.Pid.ToString(CultureInfo.InvariantCulture), after.Body);
        Assert.True(after.ConnectionClose, "a response after the commit carries Connection: close");
        Assert.True(await reused.WaitForEndOfStreamAsync(TimeSpan.FromSeconds(5)), "v1 closes the connection after that response (FIN)");

        // The connection that stays idle is closed in order (FIN) once the grace period is over, not before.
        Assert.True(await idle.WaitForEndOfStreamAsync(TimeSpan.FromSeconds(20)), "the idle connection is closed after the grace period");
        var closedAt = drainStarted.Elapsed;
        output.WriteLine($"reused connection answered {answeredAt.TotalMilliseconds:0} ms after the drain began; idle one closed after {closedAt.TotalMilliseconds:0} ms (grace 5 s)");
        Assert.True(closedAt > TimeSpan.FromSeconds(4), $"the idle connection was closed {closedAt} after the drain began, before the grace period of 5 s");
        Assert.Equal(0, await v1.WaitForExitAsync());
        Assert.Contains(v1.Entries, l => l.Is(Events.IdleConnectionsClosing));
    }

    [GeneratedRegex(@"Drain finished in (?<ms>\d+) ms \((?<aborted>\d+) connection")]
    private static partial Regex DrainFigures();
}
