using System.Globalization;
using Xunit.Abstractions;
using ZeroDowntime.Hosting.FunctionalTests.Infrastructure;
using ZeroDowntime.Hosting.Tests.Infrastructure;
using static ZeroDowntime.Hosting.FunctionalTests.Infrastructure.Handoff;

namespace ZeroDowntime.Hosting.FunctionalTests;

/// <summary>
/// The defects found in review (issue 8), each reproduced with the real sample as OS processes. The handoff promise
/// is "some live process always accepts, nothing accepted is lost, and no stale generation ever serves again".
/// </summary>
public sealed class DefectTests(ITestOutputHelper output)
{
    private const string FaultVariable = "ZERODOWNTIME_FAULT_PAUSE";

    // Item 1: a 99-byte SocketPath passed validation, but the temporary name (+17 bytes) did not fit sun_path: the
    // handoff socket was never served and nothing was logged; the next version then died on EADDRINUSE.
    [Fact]
    public async Task SocketPathOf99Bytes_IsServed_AndSuccessorTakesOver()
    {
        using var scope = new TestScope();
        string directory = Path.Combine(scope.Directory, new string('d', 99 - scope.Directory.Length - 1 - "handoff.sock".Length - 1));
        Directory.CreateDirectory(directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        string socketPath = Path.Combine(directory, "handoff.sock");
        Assert.Equal(99, socketPath.Length);
        var config = scope.Config() with { SocketPath = socketPath };

        var v1 = await StartFirstAsync("v1", config, output);
        await using var load = HttpLoad.Start(scope.BaseUri, workers: 4, newConnectionPerRequest: true);
        await load.WaitForMoreSuccessesAsync(100);
        var (v2, oldExit) = await HandOverAsync(v1, "v2", config, output);
        await using var _ = v2;
        await v1.DisposeAsync();
        await load.WaitForMoreSuccessesAsync(100);
        await load.StopAsync();

        output.WriteLine($"load: {load}");
        load.AssertNoFailures();
        Assert.Equal(0, oldExit);
        Assert.True(File.Exists(socketPath));
    }

    // Item 2: the port is held by a copy that serves no handoff socket (here: the sample with ZeroDowntime disabled).
    // The new process must say what is wrong in one line and exit with a documented code, not abort (134).
    [Fact]
    public async Task PortHeldByCopyWithoutHandoffSocket_NewProcessExits79_NamingEndpointAndSocketPath()
    {
        using var scope = new TestScope();
        var config = scope.Config();
        await using var plain = SampleApp.Start("plain", config.With("ZeroDowntime__Enabled", "false"), output);
        await plain.WaitForLineAsync(l => l.Contains("Application started", StringComparison.Ordinal), "Application started");

        await using var v1 = SampleApp.Start("v1", config, output);
        int exitCode = await v1.WaitForExitAsync();

        Assert.Equal(ZeroDowntimeExitCodes.AddressInUse, exitCode);
        var line = await v1.WaitForEventAsync(Events.AddressInUse);
        Assert.Contains($"127.0.0.1:{scope.Port}", line, StringComparison.Ordinal);
        Assert.Contains(scope.SocketPath, line, StringComparison.Ordinal);
        var stderr = v1.Lines.Where(l => l.StartsWith("stderr: ZeroDowntime:", StringComparison.Ordinal)).ToArray();
        Assert.Single(stderr);
        Assert.Contains($"127.0.0.1:{scope.Port}", stderr[0], StringComparison.Ordinal);
        Assert.Contains("(exit code 79)", stderr[0], StringComparison.Ordinal);

        // The copy that holds the port is untouched.
        using var client = new HttpClient();
        Assert.Equal(plain.Pid.ToString(CultureInfo.InvariantCulture), await client.GetStringAsync(new Uri(scope.BaseUri, "/pid")));
    }

    // Item 4: SIGHUP (a closed terminal, or an operator's habit: HUP means reload elsewhere) must not kill the server.
    // It now means "upgrade" by default (UpgradeTests); where upgrades by signal are off, it is logged and ignored.
    [Fact]
    public async Task Sighup_UpgradeSignalNone_IsLoggedAndIgnored_ServerKeepsServing()
    {
        using var scope = new TestScope();
        var config = scope.Config().With("ZeroDowntime__Upgrade__Signal", "None");
        await using var v1 = await StartFirstAsync("v1", config, output);
        await using var load = HttpLoad.Start(scope.BaseUri, workers: 4, newConnectionPerRequest: true);
        await load.WaitForMoreSuccessesAsync(100);

        v1.Signal(Posix.SIGHUP);
        await v1.WaitForEventAsync(Events.HangupIgnored);
        v1.Signal(Posix.SIGHUP);
        await load.WaitForMoreSuccessesAsync(500);
        await load.StopAsync();

        output.WriteLine($"load: {load}");
        load.AssertNoFailures();
        Assert.False(v1.HasExited);
        Assert.Equal(2, v1.Entries.Count(l => l.Is(Events.HangupIgnored)));
    }

    // Item 5: a predecessor frozen for longer than the heartbeat timeout while it drains (SIGSTOP, cgroup freezer,
    // swap) wakes up to an expired deadline and queued heartbeats: it must read them, not revoke a healthy successor.
    [Fact]
    public async Task PredecessorFrozen7sWhileDraining_TenRounds_SuccessorNeverRevoked()
    {
        using var scope = new TestScope();
        var config = scope.Config();
        var server = await StartFirstAsync("v1", config, output);
        using var client = new HttpClient { Timeout = TimeSpan.FromMinutes(1) };
        try
        {
            for (int round = 1; round <= 10; round++)
            {
                var request = client.GetStringAsync(new Uri(scope.BaseUri, "/delay/12000"));
                await server.WaitForEventAsync(Events.FirstConnectionAccepted);
                var successor = SampleApp.Start($"v{round + 1}", config, output);
                await successor.WaitForEventAsync(Events.Committed);
                await successor.WaitForEventAsync(Events.ServingHandoffSocket);
                await server.WaitForEventAsync(Events.DrainStarted);

                server.Signal(Posix.SIGSTOP);
                await Task.Delay(TimeSpan.FromSeconds(7)); // the stimulus: frozen past the 5 s heartbeat timeout
                server.Signal(Posix.SIGCONT);

                Assert.Contains($"pid {server.Pid.ToString("D7", CultureInfo.InvariantCulture)}", await request, StringComparison.Ordinal);
                Assert.Equal(0, await server.WaitForExitAsync());
                Assert.DoesNotContain(server.Entries, l => l.Is(Events.SuccessorLost));
                Assert.False(successor.HasExited, $"round {round}: the successor was revoked");
                output.WriteLine($"round {round}: {server.Name} frozen 7 s while draining, woke, finished its request and exited 0; {successor.Name} serves");
                await server.DisposeAsync();
                server = successor;
            }
        }
        finally
        {
            await server.DisposeAsync();
        }
    }

    // Item 6: a participant that overruns its time at the commit must not let the commit go ahead while it runs
    // (the successor would take a log file the old process is still moving). The old process abandons the handoff
    // once the participant returns; the successor drains what it accepted and exits 77.
    [Fact]
    public async Task ParticipantOverrunsAtCommit_HandoffAbandoned_SuccessorDrainsAndExits77_OldKeepsServing()
    {
        using var scope = new TestScope();
        var config = scope.Config();
        await using var v1 = await StartFirstAsync("v1", config.With(FaultVariable, "in-release"), output);
        await using var load = HttpLoad.Start(scope.BaseUri, workers: 4, newConnectionPerRequest: false);
        await load.WaitForMoreSuccessesAsync(100);

        await using var v2 = SampleApp.Start("v2", config, output);
        await v1.WaitForEventAsync(Events.FaultInjectionPause); // the participant hangs in ReleaseAsync
        await v1.WaitForEventAsync(Events.ParticipantOverran);
        await load.WaitForMoreSuccessesAsync(100); // v2 (gate open) serves meanwhile
        Assert.DoesNotContain(v2.Entries, l => l.Is(Events.Committed));

        v1.Signal(Posix.SIGCONT); // the participant returns
        await v1.WaitForEventAsync(Events.HandoffAbandonedAtCommit);
        await v2.WaitForEventAsync(Events.HandoffAbandoned);
        await v2.WaitForEventAsync(Events.AbandonedSuccessorDraining);
        Assert.Equal(ZeroDowntimeExitCodes.HandoffAbandoned, await v2.WaitForExitAsync());
        await load.WaitForMoreSuccessesAsync(200);
        await load.StopAsync();

        output.WriteLine($"load: {load}");
        load.AssertNoFailures();
        Assert.False(v1.HasExited);
        Assert.DoesNotContain(v2.Entries, l => l.Is(Events.Committed));
        using var client = new HttpClient();
        Assert.Equal(v1.Pid.ToString(CultureInfo.InvariantCulture), await client.GetStringAsync(new Uri(scope.BaseUri, "/pid")));

        // The log file never changed hands: webapi.log holds v1's lines only, and v2 wrote its own archive.
        string logs = Path.Combine(scope.Directory, "logs");
        var pids = File.ReadLines(Path.Combine(logs, "webapi.log")).Select(l => l.Split('|')[1]).Distinct().ToArray();
        Assert.Equal([v1.Pid.ToString(CultureInfo.InvariantCulture)], pids);
    }

    // Item 8: a successor stopped between Ready and Committed must tell its predecessor at once, from the host's
    // stopping step, not from the process-exit hook after the whole host shutdown: meanwhile nobody would accept.
    [Fact]
    public async Task SuccessorStoppedBetweenReadyAndCommitted_TellsPredecessorAtOnce_OldServesAgain()
    {
        using var scope = new TestScope();
        var config = scope.Config();
        await using var v1 = await StartFirstAsync("v1", config, output);
        using var client = new HttpClient { Timeout = TimeSpan.FromMinutes(1) };
        var v1Request = client.GetStringAsync(new Uri(scope.BaseUri, "/delay/20000")); // keeps v1 draining
        await v1.WaitForEventAsync(Events.FirstConnectionAccepted);
        await using var v2 = SampleApp.Start("v2", config.With(FaultVariable, "after-ready"), output);
        await v2.WaitForEventAsync(Events.FaultInjectionPause);
        await v1.WaitForEventAsync(Events.DrainStarted); // v1 has closed its gate and sent Committed

        // A request that only v2 can take now. (Should v2's Kestrel close that connection before it has read the
        // request, HttpClient retries it on a new one, which v1 answers once it serves again: either way it succeeds.)
        var inFlight = client.GetStringAsync(new Uri(scope.BaseUri, "/delay/3000"));
        await v2.WaitForEventAsync(Events.FirstConnectionAccepted);

        v2.Signal(Posix.SIGTERM);
        var lost = await v1.WaitForEventAsync(Events.SuccessorLost);
        Assert.Contains("before the commit", lost, StringComparison.Ordinal); // from v2's stopping step, not its exit
        Assert.Equal(v1.Pid.ToString(CultureInfo.InvariantCulture), await client.GetStringAsync(new Uri(scope.BaseUri, "/pid")));
        Assert.Contains("delayed 3000 ms", await inFlight, StringComparison.Ordinal);

        await v2.WaitForExitAsync();
        Assert.DoesNotContain(v2.Entries, l => l.Is(Events.Committed));
        Assert.Contains("delayed 20000 ms", await v1Request, StringComparison.Ordinal);
        Assert.False(v1.HasExited);
    }
}
