using System.Globalization;
using Xunit.Abstractions;
using ZeroDowntime.Hosting.Tests.Infrastructure;
using static ZeroDowntime.Hosting.Tests.Infrastructure.Handoff;

namespace ZeroDowntime.Hosting.Tests.ProcessLevel;

/// <summary>Every step of a handoff can fail; every failure must leave a server that serves.</summary>
public sealed class FaultTests(ITestOutputHelper output)
{
    private const string FaultVariable = "ZERODOWNTIME_FAULT_PAUSE";

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
        var config = scope.Config().With("ZeroDowntime__HandoffTimeout", "00:00:03");
        await using var v1 = await StartFirstAsync("v1", config, output);
        await using var load = HttpLoad.Start(scope.BaseUri, workers: 4, newConnectionPerRequest: true);
        await load.WaitForMoreSuccessesAsync(100);

        var faulty = step == "while-starting"
            ? config.With("Sample__StartupDelayMs", "6000")
            : config.With(FaultVariable, step);
        await using var v2 = SampleApp.Start("v2-faulty", faulty, output);
        if (step == "while-starting")
        {
            await v2.WaitForLineAsync(l => l.Contains("Warming up", StringComparison.Ordinal), "warm-up");
        }
        else
        {
            await v2.WaitForEventAsync(90);
        }

        v2.Signal(signal);
        output.WriteLine($"sent signal {signal} to v2 (pid {v2.Pid}) at {step}");

        // The old process notices (EOF at once for a kill; its deadlines for a freeze) and frees the handoff slot.
        int expected = (step, signal) switch
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
        await load.StopAsync();

        output.WriteLine($"load: {load}");
        load.AssertNoFailures();
        Assert.Equal(0, oldExit);
        Assert.DoesNotContain(v2.Lines, l => l.Contains("[12]", StringComparison.Ordinal)); // never accepted a connection

        if (signal == Posix.SIGSTOP && step != "after-connect")
        {
            // Woken up late, the abandoned successor stops with its exit code instead of serving beside v3.
            v2.Signal(Posix.SIGCONT);
            Assert.Equal(ZeroDowntimeExitCodes.HandoffAbandoned, await v2.WaitForExitAsync());
            Assert.DoesNotContain(v2.Lines, l => l.Contains("[12]", StringComparison.Ordinal));
        }
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
        Assert.DoesNotContain(slow.Lines, l => l.Contains("[12]", StringComparison.Ordinal));

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
        await using var v2 = SampleApp.Start("v2", config.With("Sample__StartupDelayMs", "1500"), output);
        await v2.WaitForEventAsync(Events.ListenersReceived);
        v1.Signal(Posix.SIGKILL);
        await v1.WaitForExitAsync();
        await v1.DisposeAsync();

        await v2.WaitForEventAsync(Events.PredecessorVanished);
        await v2.WaitForEventAsync(Events.ServingHandoffSocket);
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
        Assert.Contains(refused.Lines, l => l.Contains("[22]", StringComparison.Ordinal) && l.Contains("in progress", StringComparison.Ordinal));

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

        await v1.WaitForEventAsync(Events.SuccessorLost, TimeSpan.FromSeconds(20));
        await v1.WaitForEventAsync(Events.ServingHandoffSocket);
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
        await v2.WaitForEventAsync(27);

        // v1 serves alone again and accepts the next successor.
        var (v3, oldExit) = await HandOverAsync(v1, "v3", config.With("ZeroDowntime__IdleConnectionGracePeriod", "00:00:01"), output);
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
        await v2.WaitForEventAsync(15);
        using var client = new HttpClient();
        Assert.Equal(v2.Pid.ToString(CultureInfo.InvariantCulture), await client.GetStringAsync(new Uri(scope.BaseUri, "/pid")));
    }

    [Fact]
    public async Task FiftyHandoffsInARow_NoFdLeak_MemoryStable()
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
                await current.WaitForEventAsync(26);
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

        var second = measurements[0];
        var last = measurements[^1];
        Assert.Equal(second.Fds, last.Fds);
        Assert.InRange(last.RssKb, second.RssKb * 0.9, second.RssKb * 1.1);
    }

    /// <summary>The fd count once no TCP connection to the port is left and the count holds still for 200 ms.</summary>
    private async Task<int> QuietFdCountAsync(int pid, int port)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(50));
        var limit = System.Diagnostics.Stopwatch.StartNew();
        int last = -1, same = 0;
        while (limit.Elapsed < TimeSpan.FromSeconds(10))
        {
            await timer.WaitForNextTickAsync();
            if (HandoffTests.CountConnections(port) > 0)
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
}
