using System.Globalization;
using Xunit.Abstractions;
using ZeroDowntime.Hosting.FunctionalTests.Infrastructure;
using ZeroDowntime.Hosting.Tests.Infrastructure;
using static ZeroDowntime.Hosting.FunctionalTests.Infrastructure.HandoffSteps;

namespace ZeroDowntime.Hosting.FunctionalTests;

/// <summary>A predecessor frozen during a handoff wakes up to a successor that has given up on it.</summary>
public sealed class WakingPredecessorTests(ITestOutputHelper output)
{
    /// <summary>
    /// README, "A frozen predecessor": the successor exits 77 after HandoffTimeout + 5 s "and the old one serves when
    /// it wakes". Found in review (it failed 3 of 3 before the fix): the old process, woken, read the successor's stale
    /// Ready, committed to it (the successor had already sent Failed and exited), found its drain empty at once and
    /// exited 0, so nobody served. Now a Ready followed by a queued Failed is no Ready, and a committed predecessor
    /// exits only after its successor's first heartbeat (or Stopping) confirms that it serves.
    /// </summary>
    [Fact]
    public async Task FrozenPredecessor_WakesAfterSuccessorGaveUp_ServesAgainUnderLoad()
    {
        using var scope = new TestScope();
        var config = scope.Config();
        await using var v1 = await StartFirstAsync("v1", config, output);
        await using var load = HttpLoad.Start(scope.BaseUri, workers: 4, newConnectionPerRequest: true);
        await load.WaitForMoreSuccessesAsync(100);

        // v1 sends the listeners, then freezes before it can read v2's Ready.
        await using var v2 = SampleApp.Start("v2", config.With("ZeroDowntime__HandoffTimeout", "00:00:03").WithFaultPause("after-receive"), output);
        await v2.WaitForEventAsync(Events.FaultInjectionPause);
        v1.Signal(Posix.SIGSTOP);
        try
        {
            v2.Signal(Posix.SIGCONT);
            await v2.WaitForEventAsync(Events.SentReady);
            Assert.Equal(ZeroDowntimeExitCodes.HandoffAbandoned, await v2.WaitForExitAsync(TimeSpan.FromSeconds(40)));
        }
        finally
        {
            v1.Signal(Posix.SIGCONT);
        }

        // Woken, v1 must serve: the load goes on (connections queued while nobody accepted included).
        await load.WaitForMoreSuccessesAsync(200);
        Assert.False(v1.HasExited, $"v1 exited ({(v1.HasExited ? v1.ExitCode : 0)}) after waking: nobody serves");
        using (var client = new HttpClient())
        {
            Assert.Equal(v1.Pid.ToString(CultureInfo.InvariantCulture), await client.GetStringAsync(new Uri(scope.BaseUri, "/pid")));
        }

        var (v3, oldExit) = await HandOverAsync(v1, "v3", config, output);
        await using var _ = v3;
        await load.WaitForMoreSuccessesAsync(100);
        await load.StopAsync();
        output.WriteLine($"load: {load}");
        load.AssertNoFailures();
        Assert.Equal(0, oldExit);
    }

    // Item 5: a predecessor frozen for longer than the heartbeat timeout while it drains (SIGSTOP, cgroup freezer,
    // swap) wakes up to an expired deadline and queued heartbeats: it must read them, not revoke a healthy successor.
    // The rule itself is shown deterministically on the fake clock (HandoffChannelTests.ReadAsync_DeadlineFiredWhileFrozen_*);
    // three real freezes show the processes do it (ten took 2 min of the suite for no more evidence).
    [Fact]
    public async Task PredecessorFrozen7sWhileDraining_ThreeRounds_SuccessorNeverRevoked()
    {
        using var scope = new TestScope();
        var config = scope.Config();
        var server = await StartFirstAsync("v1", config, output);
        using var client = new HttpClient { Timeout = TimeSpan.FromMinutes(1) };
        try
        {
            for (int round = 1; round <= 3; round++)
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
}
