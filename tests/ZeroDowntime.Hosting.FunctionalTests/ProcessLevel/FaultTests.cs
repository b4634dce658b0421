using System.Globalization;
using Xunit.Abstractions;
using ZeroDowntime.Hosting.FunctionalTests.Infrastructure;
using ZeroDowntime.Hosting.Tests.Infrastructure;
using static ZeroDowntime.Hosting.FunctionalTests.Infrastructure.HandoffSteps;

namespace ZeroDowntime.Hosting.FunctionalTests;

/// <summary>Every step of a handoff can fail; every failure must leave a server that serves.</summary>
public sealed class FaultTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData("after-connect", Posix.SIGKILL)]
    [InlineData("after-connect", Posix.SIGSTOP)]
    [InlineData("after-receive", Posix.SIGKILL)]
    [InlineData("after-receive", Posix.SIGSTOP)]
    [InlineData("while-starting", Posix.SIGKILL)]
    [InlineData("while-starting", Posix.SIGSTOP)]
    [InlineData("before-ready", Posix.SIGKILL)]
    [InlineData("before-ready", Posix.SIGSTOP)]
    public async Task SuccessorKilledOrFrozen_AtEachStep_OldKeepsServing_NextTakesOver(string step, int signal)
    {
        using var scope = new TestScope();

        // The frozen successor costs the whole HandoffTimeout; the real v3 below must be ready within the same
        // timeout under load on a loaded machine, so it is not cut close (a handoff takes about 1 s).
        var config = scope.Config().With("ZeroDowntime__HandoffTimeout", "00:00:06");
        await using var v1 = await StartFirstAsync("v1", config, output);
        await using var load = HttpLoad.Start(scope.BaseUri, workers: 4, newConnectionPerRequest: true);
        await load.WaitForMoreSuccessesAsync(100);

        var faulty = step == "while-starting"
            ? config.With("Sample__StartupDelayMs", "10000")
            : config.WithFaultPause(step);
        await using var v2 = SampleApp.Start("v2-faulty", faulty, output);
        if (step == "while-starting")
        {
            await v2.WaitForLineAsync(l => l.Contains("Warming up", StringComparison.Ordinal), "warm-up");
        }
        else
        {
            await v2.WaitForEventAsync(Events.FaultInjectionPause);
        }

        v2.Signal(signal);
        output.WriteLine($"sent signal {signal} to v2 (pid {v2.Pid}) at {step}");

        // The old process notices (EOF at once for a kill; its deadlines for a freeze) and frees the handoff slot.
        var expected = (step, signal) switch
        {
            ("after-connect", _) => Events.HandoffProtocolError,
            (_, Posix.SIGKILL) => Events.SuccessorFailed,
            _ => Events.SuccessorTimedOut,
        };
        await v1.WaitForEventAsync(expected);
        await load.WaitForMoreSuccessesAsync(200);

        var (v3, oldExit) = await HandOverAsync(v1, "v3", config, output);
        await using var _ = v3;
        await load.WaitForMoreSuccessesAsync(100);

        if (signal == Posix.SIGSTOP)
        {
            // Woken up late and under load, the abandoned successor stops with its exit code instead of serving
            // beside v3, and accepts nothing on the way out. Frozen after connect, it was dropped before any fd was
            // sent (v1's 5 s greeting deadline): its greeting then meets a closed connection, and it exits 75
            // ("refused, nothing changed, retry" in README's table), not the 77 that architecture.md's failure
            // matrix gives for the whole row. Pinned here as the code does it; the docs differ (reported).
            v2.Signal(Posix.SIGCONT);
            int exit = await v2.WaitForExitAsync();
            output.WriteLine($"woken v2 exited {exit}");
            Assert.Equal(step == "after-connect" ? ZeroDowntimeExitCodes.RefusedByPredecessor : ZeroDowntimeExitCodes.HandoffAbandoned, exit);
            await load.WaitForMoreSuccessesAsync(100);
        }

        await load.StopAsync();
        output.WriteLine($"load: {load}");
        load.AssertNoFailures();
        Assert.Equal(0, oldExit);
        Assert.DoesNotContain(v2.Entries, l => l.Is(Events.Accepting) || l.Is(Events.FirstConnectionAccepted)); // never accepted a connection
        Assert.DoesNotContain(load.ResponsesByBody.Keys, body => body.Contains($"pid {v2.Pid:D7}", StringComparison.Ordinal));
    }

    [Fact]
    public async Task SlowSuccessor_NotReadyWithinHandoffTimeout_IsAbandonedAndExits77()
    {
        using var scope = new TestScope();
        var config = scope.Config().With("ZeroDowntime__HandoffTimeout", "00:00:02");
        await using var v1 = await StartFirstAsync("v1", config, output);
        await using var load = HttpLoad.Start(scope.BaseUri, workers: 4, newConnectionPerRequest: true);
        await load.WaitForMoreSuccessesAsync(100);

        await using var slow = SampleApp.Start("v2-slow", config.With("Sample__StartupDelayMs", "5000"), output);
        await v1.WaitForEventAsync(Events.SuccessorTimedOut);
        Assert.Equal(ZeroDowntimeExitCodes.HandoffAbandoned, await slow.WaitForExitAsync());
        await slow.WaitForEventAsync(Events.HandoffAbandoned);
        Assert.DoesNotContain(slow.Entries, l => l.Is(Events.Accepting));

        await load.WaitForMoreSuccessesAsync(100);
        await load.StopAsync();
        load.AssertNoFailures();
        Assert.False(v1.HasExited);
    }

    [Fact]
    public async Task PredecessorKilledAfterSendingSockets_SuccessorCarriesOn_AndServesHandoffSocket()
    {
        using var scope = new TestScope();
        var config = scope.Config();
        var v1 = await StartFirstAsync("v1", config, output);

        // v2 holds still after receiving the sockets (until SIGCONT): the window in which nobody accepts is as long
        // as the test needs, not a start-up delay that a loaded machine may outrun.
        await using var v2 = SampleApp.Start("v2", config.WithFaultPause("after-receive"), output);
        await v2.WaitForEventAsync(Events.FaultInjectionPause);
        v1.Signal(Posix.SIGKILL);
        await v1.WaitForExitAsync();
        await v1.DisposeAsync();

        // Nobody accepts now: v1 is dead, v2 has not started Kestrel. Connections made now wait in the kernel's
        // queue of the listening socket that v2 holds, and must all be answered once v2 accepts.
        await using var load = HttpLoad.Start(scope.BaseUri, workers: 4, newConnectionPerRequest: true);
        await Until.TrueAsync(() => TcpTable.CountEstablished(scope.Port) >= 4, "4 connections queued while nobody accepts");
        Assert.Equal(0, load.Succeeded + load.Failed);
        output.WriteLine($"{TcpTable.CountEstablished(scope.Port)} connection(s) queued while nobody accepts");
        v2.Signal(Posix.SIGCONT);

        await v2.WaitForEventAsync(Events.PredecessorVanished);
        await v2.WaitForEventAsync(Events.ServingHandoffSocket);
        await load.WaitForMoreSuccessesAsync(100);
        await load.StopAsync();
        output.WriteLine($"load: {load}");
        load.AssertNoFailures();
        using var client = new HttpClient();
        Assert.Equal(v2.Pid.ToString(CultureInfo.InvariantCulture), await client.GetStringAsync(new Uri(scope.BaseUri, "/pid")));

        // And it hands over normally to the next version.
        var (v3, v2Exit) = await HandOverAsync(v2, "v3", config, output);
        await using var _ = v3;
        Assert.Equal(0, v2Exit);
    }

    [Fact]
    public async Task TwoSuccessorsAtOnce_ExactlyOneTakesOver_OtherExitsRefused()
    {
        using var scope = new TestScope();
        var config = scope.Config();
        await using var v1 = await StartFirstAsync("v1", config, output);
        var slow = config.With("Sample__StartupDelayMs", "3000");
        await using var a = SampleApp.Start("v2a", slow, output);
        await using var b = SampleApp.Start("v2b", slow, output);

        var first = await Task.WhenAny(a.WaitForExitAsync(TimeSpan.FromSeconds(60)), b.WaitForExitAsync(TimeSpan.FromSeconds(60)));
        var refused = a.HasExited ? a : b;
        var winner = refused == a ? b : a;
        Assert.Equal(ZeroDowntimeExitCodes.RefusedByPredecessor, await first);
        Assert.Contains(refused.Entries, l => l.Is(Events.RefusedByPredecessor) && l.Contains("in progress", StringComparison.Ordinal));

        await winner.WaitForEventAsync(Events.Committed);
        Assert.Equal(0, await v1.WaitForExitAsync());
        using var client = new HttpClient();
        Assert.Equal(winner.Pid.ToString(CultureInfo.InvariantCulture), await client.GetStringAsync(new Uri(scope.BaseUri, "/pid")));
    }

    [Fact]
    public async Task SuccessorFrozenAfterCommit_OldResumesAccepting_WokenSuccessorStops()
    {
        using var scope = new TestScope();
        var config = scope.Config().With("ZeroDowntime__DrainTimeout", "00:00:30").With("ZeroDowntime__IdleConnectionGracePeriod", "00:00:20");
        await using var v1 = await StartFirstAsync("v1", config, output);

        // An idle keep-alive connection keeps v1 draining long enough to watch its successor.
        using var idle = new HttpClient();
        Assert.Equal(v1.Pid.ToString(CultureInfo.InvariantCulture), await idle.GetStringAsync(new Uri(scope.BaseUri, "/pid")));

        await using var v2 = SampleApp.Start("v2", config, output);
        await v2.WaitForEventAsync(Events.ServingHandoffSocket);
        v2.Signal(Posix.SIGSTOP);

        // Nobody accepts until v1 misses five heartbeats: v1 has closed its gate, v2 is frozen. Connections made in
        // that window wait in the kernel's queue and must be answered once v1 resumes.
        await using var load = HttpLoad.Start(scope.BaseUri, workers: 4, newConnectionPerRequest: true);
        await Until.TrueAsync(() => TcpTable.CountEstablished(scope.Port) >= 4 + 1, "4 connections queued (beside the idle one) while nobody accepts");
        Assert.Equal(0, load.Succeeded + load.Failed);

        await v1.WaitForEventAsync(Events.SuccessorLost, TimeSpan.FromSeconds(20));

        // The second 13: v1 serves the handoff socket again (the first was at its own start).
        await v1.WaitForEventCountAsync(Events.ServingHandoffSocket, 2);
        await load.WaitForMoreSuccessesAsync(100);
        await load.StopAsync();
        output.WriteLine($"load through the window: {load}");
        load.AssertNoFailures();
        Assert.Equal([$"Hello from ZeroDowntime.Hosting sample, pid {v1.Pid:D7}\n"], load.ResponsesByBody.Keys);
        using (var fresh = new HttpClient())
        {
            for (int i = 0; i < 20; i++)
            {
                using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(scope.BaseUri, "/pid"));
                request.Headers.ConnectionClose = true;
                using var response = await fresh.SendAsync(request);
                Assert.Equal(v1.Pid.ToString(CultureInfo.InvariantCulture), await response.Content.ReadAsStringAsync());
            }
        }

        v2.Signal(Posix.SIGCONT);
        Assert.Equal(ZeroDowntimeExitCodes.HandoffAbandoned, await v2.WaitForExitAsync());
        await v2.WaitForEventAsync(Events.HandoffRevoked);

        // v1 serves alone again and accepts the next successor.
        // The grace period that counts is v1's (20 s): close the idle connection so that v1's next drain is short.
        idle.Dispose();
        var (v3, oldExit) = await HandOverAsync(v1, "v3", config, output);
        await using var _ = v3;
        Assert.Equal(0, oldExit);
    }

    [Fact]
    public async Task StaleKestrelUnixSocket_AfterKill9_NextStartNeedsNoCleanup()
    {
        using var scope = new TestScope();
        string unixPath = Path.Combine(scope.Directory, "kestrel.sock");
        var config = scope.Config() with { Arguments = ["--urls", $"http://127.0.0.1:{scope.Port};http://unix:{unixPath}"] };
        var v1 = await StartFirstAsync("v1", config, output);
        v1.Signal(Posix.SIGKILL);
        await v1.WaitForExitAsync();
        await v1.DisposeAsync();
        Assert.True(File.Exists(unixPath));
        Assert.True(File.Exists(scope.SocketPath));

        await using var v2 = await StartFirstAsync("v2", config, output);
        await v2.WaitForEventAsync(Events.StaleSocket);
        await v2.WaitForEventAsync(Events.StaleUnixEndpointReplaced);
        using var client = new HttpClient();
        Assert.Equal(v2.Pid.ToString(CultureInfo.InvariantCulture), await client.GetStringAsync(new Uri(scope.BaseUri, "/pid")));
    }

    /// <summary>
    /// Every figure here is of a fresh process: version n+1 is measured after it took over from version n. So it
    /// shows that what a version inherits does not grow along the chain (fds that one version leaves open and the
    /// next one receives, a per-handoff cost that is handed on); a leak inside one process cannot accumulate here,
    /// because each process hands over once. That is the job of
    /// <see cref="AbortedHandoffs_HundredOnOneProcess_PredecessorFdsAndMemoryStable"/>.
    /// </summary>
    [Fact]
    public async Task FiftyHandoffsInARow_EachVersionStartsWithSameFdsAndMemory()
    {
        using var scope = new TestScope();
        var config = scope.Config();
        var current = await StartFirstAsync("v1", config, output);
        var measurements = new List<(int Version, int Fds, long RssKb)>();
        try
        {
            for (int version = 2; version <= 51; version++)
            {
                var (successor, oldExit) = await HandOverAsync(current, $"v{version}", config, output);
                await current.DisposeAsync();
                Assert.Equal(0, oldExit);
                current = successor;

                // The same work before every measurement: 200 requests on new connections.
                await using (var load = HttpLoad.Start(scope.BaseUri, workers: 4, newConnectionPerRequest: true))
                {
                    await load.WaitForMoreSuccessesAsync(200);
                    await load.StopAsync();
                    Assert.Equal(0, load.Failed);
                }

                // Measure a quiet process: predecessor gone, its handoff connection closed, no client connection open.
                await current.WaitForEventAsync(Events.PredecessorExited);
                measurements.Add((version, await QuietFdCountAsync(current.Pid, scope.Port), ReadRssKb(current.Pid)));
            }
        }
        finally
        {
            await current.DisposeAsync();
        }

        foreach (var m in measurements)
        {
            output.WriteLine($"v{m.Version}: {m.Fds} fds, {m.RssKb} kB RSS");
        }

        // With the JIT profile (on by default) a version compiles ahead what its grandparent compiled, and the count
        // of open files alternates between two values along the chain (257 and 259 in the run where it was first
        // seen: one more assembly loaded by every second version). That is no growth; a leak handed on would be.
        var second = measurements[0];
        var last = measurements[^1];
        int firstTenMost = measurements.Take(10).Max(m => m.Fds);
        int lastTenMost = measurements.TakeLast(10).Max(m => m.Fds);
        Assert.True(lastTenMost <= firstTenMost, $"fds grew along the chain: at most {firstTenMost} in v2-v11, {lastTenMost} in v42-v51");
        Assert.InRange(last.RssKb, second.RssKb * 0.9, second.RssKb * 1.1);
    }

    /// <summary>
    /// The predecessor side within one long-lived process: a hundred successors greet it, receive every listener
    /// (the fds travel) and disconnect before they are ready, and it serves on. Its fds must come back to the same
    /// count, and its memory must not grow with the number of handoffs.
    /// </summary>
    [Fact]
    public async Task AbortedHandoffs_HundredOnOneProcess_PredecessorFdsAndMemoryStable()
    {
        using var scope = new TestScope();
        var config = scope.Config();
        await using var v1 = await StartFirstAsync("v1", config, output);
        using var client = new HttpClient();
        var measurements = new List<(int Handoffs, int Fds, long RssKb)>();
        int handoffs = 0;
        for (int round = 0; round <= 10; round++)
        {
            // Round 0 warms up (JIT, pools); rounds 1-10 are measured.
            for (int i = 0; i < 10; i++)
            {
                await AbortedHandoffAsync(scope.SocketPath);
                handoffs++;
                await v1.WaitForEventCountAsync(Events.SuccessorFailed, handoffs);
            }

            Assert.Equal(v1.Pid.ToString(CultureInfo.InvariantCulture), await client.GetStringAsync(new Uri(scope.BaseUri, "/pid")));
            measurements.Add((handoffs, await QuietFdCountAsync(v1.Pid, scope.Port, ignoreOpenConnections: 1), ReadRssKb(v1.Pid)));
        }

        foreach (var m in measurements)
        {
            output.WriteLine($"after {m.Handoffs} aborted handoffs: {m.Fds} fds, {m.RssKb} kB RSS");
        }

        var first = measurements[1];
        var last = measurements[^1];
        Assert.Equal(first.Fds, last.Fds);
        Assert.InRange(last.RssKb, first.RssKb * 0.8, first.RssKb * 1.15);
        Assert.Equal(handoffs, v1.CountEvent(Events.HandoffRequested));
    }

    /// <summary>
    /// A successor that greets, receives the welcome with every listener and disconnects. v1 frees its handoff slot
    /// just after it logs the failure, so a greeting right after that line may still be refused as busy (exit 75 for
    /// a real successor: retry); this one retries too, a bounded number of times.
    /// </summary>
    private static async Task AbortedHandoffAsync(string socketPath)
    {
        for (int attempt = 1; ; attempt++)
        {
            using var successor = await RawHandoffClient.ConnectAsync(socketPath);
            await successor.SendAsync(new ZeroDowntime.Hosting.Protocol.HelloMessage(1, 100_000 + attempt, "WebApi"));
            byte[] answer = await successor.ReadSomeAsync(TimeSpan.FromSeconds(10));
            Assert.True(answer.Length > 2, "no answer to the greeting");
            if (answer[2] == (byte)ZeroDowntime.Hosting.Protocol.MessageType.Welcome)
            {
                return;
            }

            Assert.True(answer[2] == (byte)ZeroDowntime.Hosting.Protocol.MessageType.Refused && attempt < 1000, $"answer type {answer[2]} on attempt {attempt}");
        }
    }

    /// <summary>The fd count once no TCP connection to the port is left and the count holds still for 200 ms.</summary>
    private async Task<int> QuietFdCountAsync(int pid, int port, int ignoreOpenConnections = 0)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(50));
        var limit = System.Diagnostics.Stopwatch.StartNew();
        int last = -1, same = 0;
        while (limit.Elapsed < TimeSpan.FromSeconds(10))
        {
            await timer.WaitForNextTickAsync();
            if (HandoffTests.CountConnections(port) > ignoreOpenConnections)
            {
                same = 0;
                continue;
            }

            int now = Directory.GetFiles($"/proc/{pid}/fd").Length;
            same = now == last ? same + 1 : 0;
            last = now;
            if (same >= 4)
            {
                return now;
            }
        }

        var kinds = Directory.GetFiles($"/proc/{pid}/fd")
            .Select(f => File.ResolveLinkTarget(f, false)?.ToString() ?? "?")
            .GroupBy(t => t.Split(':')[0]).Select(g => $"{g.Key}={g.Count()}");
        output.WriteLine($"fds never settled: {string.Join(", ", kinds)}");
        return last;
    }

    private static long ReadRssKb(int pid)
    {
        string line = File.ReadLines($"/proc/{pid}/status").First(l => l.StartsWith("VmRSS:", StringComparison.Ordinal));
        return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture);
    }

    // Item 6: a participant that overruns its time at the commit must not let the commit go ahead while it runs
    // (the successor would take a log file the old process is still moving). The old process abandons the handoff
    // once the participant returns; the successor drains what it accepted and exits 77.
    [Fact]
    public async Task ParticipantOverrunsAtCommit_HandoffAbandoned_SuccessorDrainsAndExits77_OldKeepsServing()
    {
        using var scope = new TestScope();
        var config = scope.Config();
        await using var v1 = await StartFirstAsync("v1", config.WithFaultPause("in-release"), output);
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
}
