using System.Globalization;
using System.Net;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Xunit.Abstractions;
using ZeroDowntime.Hosting.FunctionalTests.Infrastructure;
using ZeroDowntime.Hosting.Tests.Infrastructure;
using static ZeroDowntime.Hosting.FunctionalTests.Infrastructure.HandoffSteps;

namespace ZeroDowntime.Hosting.FunctionalTests;

/// <summary>
/// Probation and rollback with real processes and real clients (issue 20's Proof, docs/probation-design.md): after the
/// commit the old process stands by for <c>ZeroDowntime:Probation:Duration</c>; a release that answers 500
/// (<c>Sample:FailRequestsAfterMs</c>) or whose tagged check turns Unhealthy is rolled back by itself, an operator rolls
/// back with <c>zerodowntime rollback</c> or SIGUSR1, and a probation that passes ends with the old process exiting 0.
/// Windows are short (3-8 s, ErrorWindow 2 s, MinRequests 20) so that the class stays near a minute.
/// </summary>
public sealed partial class ProbationTests(ITestOutputHelper output)
{
    /// <summary>SIGUSR1, the default <c>ZeroDowntime:Probation:RollbackSignal</c>.</summary>
    private const int SIGUSR1 = 10;

    private const double MaxErrorRatio = 0.05;
    private const int MinRequests = 20;
    private static readonly TimeSpan ErrorWindow = TimeSpan.FromSeconds(2);

    /// <summary>The evaluation period of the 5xx ratio (design section 7).</summary>
    private static readonly TimeSpan EvaluationPeriod = TimeSpan.FromMilliseconds(250);

    private static readonly TimeSpan ToolWait = TimeSpan.FromSeconds(60);

    /// <summary>How the manual rollback's load reaches the sample.</summary>
    public enum Load
    {
        /// <summary><c>wrk -t2 -c64</c>: 64 HTTP/1.1 keep-alive connections.</summary>
        Wrk,

        /// <summary>The HTTP/2 client (<see cref="Http2Load"/>: 8 connections, 10 streams each, GOAWAY honoured).</summary>
        Http2,
    }

    /// <summary>
    /// Proof 1: a release that answers 500 on <c>/</c> 500 ms after its commit (<c>Sample:FailRequestsAfterMs</c>, in
    /// its own appsettings.json only), deployed with <c>zerodowntime upgrade --wait-probation</c> under
    /// <c>ab -r -c 16</c>: it rolls back by itself within the window, the old pid serves again, ab sees no
    /// connection-level failure, the 500s answered before the rollback are within the bound of design section 9, and
    /// the tool exits 9 naming the 5xx ratio.
    /// </summary>
    [Fact]
    public async Task FailingRelease_UnderAb_RollsBackByItself_OldPidServesAgain_No5xxBeyondTheBound_UpgradeWaitProbationExits9()
    {
        const int failAfterMs = 500;
        var duration = TimeSpan.FromSeconds(8);
        using var scope = new TestScope();
        var releases = new Releases(scope);
        string release1 = releases.Create("1", json => json["Urls"] = $"http://127.0.0.1:{scope.Port}");
        string release2 = releases.Create("2", json =>
        {
            json["Urls"] = $"http://127.0.0.1:{scope.Port}";
            json["Sample"]!["FailRequestsAfterMs"] = failAfterMs;
            json["ZeroDowntime"]!["Probation"] = new JsonObject
            {
                ["Duration"] = duration.ToString("c", CultureInfo.InvariantCulture),
                ["MaxErrorRatio"] = MaxErrorRatio,
                ["MinRequests"] = MinRequests,
                ["ErrorWindow"] = ErrorWindow.ToString("c", CultureInfo.InvariantCulture),
            };
        });
        releases.Switch(release1);
        var config = new SampleConfig(scope.SocketPath, []) { SampleDirectory = releases.Current, RelativeEntryPoint = true }
            .With("PWD", "")
            .With("ZeroDowntime__Upgrade__WorkingDirectory", releases.Current);
        await using var v1 = await StartFirstAsync("v1", config, output);
        AdoptedProcess? v2 = null;
        try
        {
            await using var ab = LoadTool.Start("ab", "-r", "-c", "16", "-t", "120", "-n", "100000000", "-s", "30", new Uri(scope.BaseUri, "/").ToString());
            await v1.WaitForEventAsync(Events.FirstConnectionAccepted);

            releases.Switch(release2);
            await using var upgrade = ZeroDowntimeTool.Start(output, "dotnet", [ZeroDowntimeTool.DllPath, "upgrade", "--socket", scope.SocketPath, "--wait-probation", "--json"]);
            var committed = await v1.WaitForOutputEventAsync(Events.UpgradeCommitted, 1, ToolWait);
            v2 = new AdoptedProcess((int)committed.Number("ProcessId"));
            var commit = await v1.WaitForOutputEventAsync(Events.Committed, 1, ToolWait);
            await v1.WaitForOutputEventAsync(Events.ProbationStarted, 1, ToolWait);
            var standingBy = await v1.WaitForOutputEventAsync(Events.StandingBy, 1, ToolWait);
            var failing = await v1.WaitForOutputEventAsync(SampleEvents.FailingRequests, 1, ToolWait);

            // The release rolls back by itself on the 5xx ratio, within the window.
            var ratio = await v1.WaitForOutputEventAsync(Events.RollbackErrorRatio, 1, duration);
            var rolledBack = await v1.WaitForOutputEventAsync(Events.RolledBack, 1, duration);
            var sinceCommit = Between(commit, rolledBack);
            output.WriteLine($"rolled back {sinceCommit.TotalMilliseconds:0} ms after the commit (window {duration.TotalSeconds:0} s, until {WindowEnd(standingBy):HH:mm:ss.fff}): {ratio.Text} | {rolledBack.Text}");
            Assert.True(rolledBack.Timestamp < WindowEnd(standingBy), $"the rollback came {sinceCommit.TotalMilliseconds:0} ms after the commit, after the window");
            await v2.WaitForExitAsync(TimeSpan.FromSeconds(40));
            var handedBack = await v1.WaitForOutputEventAsync(Events.HandedBack, 1, TimeSpan.FromSeconds(5));

            // The old pid serves again, "/" included, under the same load.
            using var client = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
            Assert.Equal(v1.Pid.ToString(CultureInfo.InvariantCulture), await client.GetStringAsync(new Uri(scope.BaseUri, "/pid")));
            Assert.Equal($"Hello from ZeroDowntime.Hosting sample, pid {v1.Pid:D7}\n", await client.GetStringAsync(new Uri(scope.BaseUri, "/")));
            await WaitForRootCallsAsync(client, scope.BaseUri, more: 500);
            Assert.False(v1.HasExited);

            // zerodowntime upgrade --wait-probation: exit 9, the reason named.
            var result = await upgrade.WaitForExitAsync(ToolWait);
            Assert.True(result.ExitCode == 9, $"upgrade --wait-probation exited {result.ExitCode}: {result.Stdout}{result.Stderr}");
            var probation = result.Json.GetProperty("probation");
            Assert.Equal("rolled-back", probation.GetProperty("outcome").GetString());
            Assert.Equal("error-ratio", probation.GetProperty("origin").GetString());
            Assert.Contains("5xx ratio", probation.GetProperty("reason").GetString(), StringComparison.Ordinal);

            Assert.False(ab.HasExited, "ab stopped early: " + ab.Output);
            string text = await ab.InterruptAsync(ToolWait);
            output.WriteLine(text);
            var counts = LoadTool.AbResult.Parse(text);
            double seconds = double.Parse(AbTimeTaken().Match(text).Groups[1].Value, CultureInfo.InvariantCulture);

            // The design's bound (section 9): max(MinRequests, ceil(r x rate x W) + 1) + ceil(rate x (0.25 s + switch)). The
            // rate is the load's while the release fails: the higher of ab's average and what the monitor itself counted
            // in its window at the trip (the 500s come faster than ab's average on a loaded machine). The switch is the
            // time from the trip to v2's HandedBack (its gate closed: no 500 is answered to a new request after it).
            double abRate = counts.Complete / seconds;
            var monitored = Between(commit, ratio) < ErrorWindow ? Between(commit, ratio) : ErrorWindow;
            double monitorRate = ratio.Number("Requests") / monitored.TotalSeconds;
            double rate = Math.Max(abRate, monitorRate);
            double switchSeconds = Between(ratio, handedBack).TotalSeconds;
            long bound = Math.Max(MinRequests, (long)Math.Ceiling(MaxErrorRatio * rate * ErrorWindow.TotalSeconds) + 1)
                + (long)Math.Ceiling(rate * (EvaluationPeriod.TotalSeconds + switchSeconds));
            output.WriteLine($"ab -r -c 16: {counts.Complete} complete in {seconds:0.0} s ({abRate:0} responses/s; the monitor counted {ratio["Requests"]} in {monitored.TotalSeconds:0.000} s: {monitorRate:0}/s), " +
                $"{counts.Failed} failed (connect {counts.Connect}, receive {counts.Receive}, length {counts.Length}, exceptions {counts.Exceptions}); " +
                $"first 500 to the trip {Between(failing, ratio).TotalMilliseconds:0} ms, trip to HandedBack {switchSeconds * 1000:0} ms, v1 serving again {rolledBack.Number("Milliseconds"):0.#} ms after the request; " +
                $"5xx before the rollback {counts.Non2xx}, bound max({MinRequests}, ceil({MaxErrorRatio} x {rate:0} x {ErrorWindow.TotalSeconds:0}) + 1) + ceil({rate:0} x ({EvaluationPeriod.TotalSeconds} + {switchSeconds:0.000})) = {bound}");
            Assert.True(counts.Failed == 0, $"connection-level failures: {counts}");
            Assert.True(counts.Non2xx > 0, "the failing release answered no 500: it did not fail, or rolled back before");
            Assert.True(counts.Non2xx <= bound, $"{counts.Non2xx} 5xx answered before the rollback, above the bound {bound}");
        }
        finally
        {
            v2?.Dispose();
        }
    }

    /// <summary>
    /// Proof 2: <c>zerodowntime rollback</c> during probation under <c>wrk -c64</c> and under the HTTP/2 client: 0 failed,
    /// the switch measured from the command to the first answer by the old pid, the new process exits 81, webapi.log
    /// is the old process's again, and every marker logged while it all happened is in exactly one file, once.
    /// </summary>
    [Theory]
    [InlineData(Load.Wrk)]
    [InlineData(Load.Http2)]
    public async Task ManualRollback_UnderLoad_NoFailure_OldServesAgainWithItsLogFile_NoLineLost(Load load)
    {
        using var scope = new TestScope();
        string logs = Path.Combine(scope.Directory, "logs");
        int http1Port = load == Load.Http2 ? TestScope.FreePort() : scope.Port;
        var http1 = new Uri($"http://127.0.0.1:{http1Port}");
        var config = WithProbation(load == Load.Http2
                ? new SampleConfig(scope.SocketPath,
                [
                    $"--Kestrel:Endpoints:h2:Url=http://127.0.0.1:{scope.Port}",
                    "--Kestrel:Endpoints:h2:Protocols=Http2",
                    $"--Kestrel:Endpoints:h1:Url={http1}",
                ])
                : scope.Config(), TimeSpan.FromSeconds(8))
            .With("Logs__Directory", logs)
            .With("Logging__Console__LogLevel__ZeroDowntime.Sample.LogMarker", "Warning"); // NLog still writes every marker
        await using var v1 = await StartFirstAsync("v1", config, output);
        await using var markers = MarkerClient.Start(http1, workers: 4);
        await markers.WaitForMoreAsync(50);
        await using var wrk = load == Load.Wrk ? LoadTool.Start("wrk", "-t2", "-c64", "-d120s", "--timeout", "30s", new Uri(scope.BaseUri, "/").ToString()) : null;
        await using var h2 = load == Load.Http2 ? Http2Load.Start(scope.BaseUri, connections: 8, streamsPerConnection: 10, maxDuration: TimeSpan.FromMinutes(2)) : null;
        if (h2 is not null)
        {
            await h2.WaitForMoreSuccessesAsync(200);
        }

        await using var v2 = SampleApp.Start("v2", config, output);
        await v2.WaitForEventAsync(Events.Committed);
        await v2.WaitForEventAsync(Events.ProbationStarted);
        await v1.WaitForEventAsync(Events.StandingBy);
        await markers.WaitForMoreAsync(50);
        if (h2 is not null)
        {
            await h2.WaitForMoreSuccessesAsync(200);
        }

        // One client on new connections sees who answers: the first answer by the old pid after the command is the switch.
        await using var probe = RootAnswers.Start(http1);
        await probe.WaitForAsync(a => a.Pid == v2.Pid, "an answer by v2");
        var commanded = DateTimeOffset.UtcNow;
        var rollback = await ZeroDowntimeTool.RunAsync(output, ToolWait, "rollback", "--socket", scope.SocketPath, "--json");
        Assert.True(rollback.ExitCode == 0, $"rollback exited {rollback.ExitCode}: {rollback.Stdout}{rollback.Stderr}");
        Assert.Equal("rolled-back", rollback.Json.GetProperty("outcome").GetString());
        Assert.Equal(v1.Pid, rollback.Json.GetProperty("servingPid").GetInt32());
        Assert.Equal(v2.Pid, rollback.Json.GetProperty("rolledBackPid").GetInt32());
        var firstOld = await probe.WaitForAsync(a => a.Pid == v1.Pid && a.At > commanded, "the first answer by v1 after the rollback command");
        var rolledBack = await v1.WaitForEventAsync(Events.RolledBack);
        var requested = await v2.WaitForEventAsync(Events.RollbackRequested);
        var fromRequest = firstOld.At - (requested.Timestamp ?? throw new InvalidOperationException("no timestamp: " + requested));
        output.WriteLine($"{load}: switch {(firstOld.At - commanded).TotalMilliseconds:0} ms from the rollback command to the first answer by pid {v1.Pid} " +
            $"(the tool's own start included), {fromRequest.TotalMilliseconds:0} ms from v2's RollbackRequested line to it; the tool reports " +
            $"{rollback.Json.GetProperty("switchMilliseconds")} ms from the request to HandedBack, v1 {rolledBack.Number("Milliseconds"):0.#} ms from the request to serving again " +
            $"(one probe request at a time on new connections: {probe.Answers.Count} answers so far)");

        Assert.Equal(ZeroDowntimeExitCodes.RolledBack, await v2.WaitForExitAsync(TimeSpan.FromSeconds(40)));
        await markers.WaitForMoreAsync(50);
        if (h2 is not null)
        {
            await h2.WaitForMoreSuccessesAsync(200);
        }

        await probe.StopAsync();
        await markers.StopAsync();
        using (var client = new HttpClient { Timeout = TimeSpan.FromSeconds(10) })
        {
            Assert.Equal(v1.Pid.ToString(CultureInfo.InvariantCulture), await client.GetStringAsync(new Uri(http1, "/pid")));
            Assert.Equal(HttpStatusCode.OK, (await client.GetAsync(new Uri(http1, "/log/-1"))).StatusCode); // after the rollback: in webapi.log
        }

        if (wrk is not null)
        {
            Assert.False(wrk.HasExited, "wrk stopped early: " + wrk.Output);
            string text = await wrk.InterruptAsync(ToolWait);
            output.WriteLine(text);
            var result = LoadTool.WrkResult.Parse(text);
            output.WriteLine($"wrk -c64: {result}");
            Assert.True(result.Requests > 1000, $"wrk completed only {result.Requests} requests");
            Assert.True(result.SocketErrors == 0 && result.Non2xx == 0, $"wrk: {result}");
        }
        else
        {
            await h2!.StopAsync();
            output.WriteLine($"HTTP/2 load: {h2}");
            Assert.True(h2.Failed == 0, $"{h2.Failed} HTTP/2 requests failed ({string.Join(", ", h2.FailuresByKind)}): {string.Join(Environment.NewLine, h2.Failures)}");
            Assert.Contains(h2.ResponsesByBody.Keys, body => body.Contains($"pid {v1.Pid:D7}", StringComparison.Ordinal));
        }

        output.WriteLine($"probe: {probe}; markers: {markers}");
        Assert.True(probe.Failed == 0, $"{probe.Failed} probe requests failed: {string.Join(Environment.NewLine, probe.Failures)}");
        Assert.True(markers.Failed == 0, $"{markers.Failed} marker requests failed: {string.Join(Environment.NewLine, markers.Failures)}");

        // The old process stops in order, so that every line it logged is written; then the files.
        v1.Signal(Posix.SIGTERM);
        Assert.Equal(0, await v1.WaitForExitAsync());
        var files = LogFiles.Read(logs);
        output.WriteLine(files.Describe());
        foreach (var file in files.All)
        {
            Assert.True(file.Pids.Count == 1, $"{file.Name} holds lines of pids {string.Join(", ", file.Pids)}");
        }

        // webapi.log is the old process's again, with all its lines: it took back the name it had renamed at the commit
        // (acquired RolledBack, as NotCommitted). The new release's lines are in its own archive, named at its release.
        Assert.Equal([v1.Pid], files.Current!.Pids);
        Assert.Contains(files.Current.Lines, l => LogFiles.MarkerId(l) == -1);
        var v2Archive = Assert.Single(files.Archives);
        Assert.Equal(v2.Pid, v2Archive.NamedPid);
        Assert.Equal([v2.Pid], v2Archive.Pids);
        Assert.Single(v1.EventsOf(Events.LogFileTakenBack));

        var counts = files.MarkerCounts();
        var missing = markers.Succeeded.Where(id => !counts.ContainsKey(id)).Order().ToList();
        Assert.True(missing.Count == 0, $"{missing.Count} answered markers missing from the log files, first: {string.Join(", ", missing.Take(20))}");
        var twice = counts.Where(kv => kv.Value > 1).Select(kv => kv.Key).Order().ToList();
        Assert.True(twice.Count == 0, $"markers logged more than once: {string.Join(", ", twice.Take(20))}");
        LogFiles.AssertEveryLibraryLineIn(v2, v2Archive, output);
        LogFiles.AssertEveryLibraryLineIn(v1, files.Current, output);
    }

    /// <summary>Proof 3, first half: a check tagged <c>zerodowntime-probation</c> Unhealthy for <c>UnhealthyFor</c> rolls back.</summary>
    [Fact]
    public async Task UnhealthyTaggedCheckDuringProbation_RollsBack_OldServesAgain_NewExits81()
    {
        var duration = TimeSpan.FromSeconds(8);
        using var scope = new TestScope();
        var config = WithProbation(scope.Config(), duration);
        await using var v1 = await StartFirstAsync("v1", config, output);
        await using var load = HttpLoad.Start(new Uri(scope.BaseUri, "/pid"), workers: 2, newConnectionPerRequest: true);
        await load.WaitForMoreSuccessesAsync(50);

        // Only the new release has the check (the sample's test build: Unhealthy from 300 ms after it took over).
        await using var v2 = SampleApp.Start("v2", config.With("ZERODOWNTIME_TEST_PROBATION_UNHEALTHY_AFTER_MS", "300"), output);
        var commit = await v2.WaitForEventAsync(Events.Committed);
        await v2.WaitForEventAsync(Events.ProbationStarted);
        var standingBy = await v1.WaitForEventAsync(Events.StandingBy);
        var trip = await v2.WaitForEventAsync(Events.RollbackUnhealthyCheck, duration);
        Assert.Equal("test-probation", trip["CheckName"]);
        var rolledBack = await v1.WaitForEventAsync(Events.RolledBack, duration);
        var sinceCommit = Between(commit, rolledBack);
        output.WriteLine($"rolled back {sinceCommit.TotalMilliseconds:0} ms after the commit (Unhealthy from 300 ms, UnhealthyFor 1 s, window {duration.TotalSeconds:0} s): {trip.Text}");
        Assert.True(rolledBack.Timestamp < WindowEnd(standingBy), $"the rollback came {sinceCommit.TotalMilliseconds:0} ms after the commit, after the window");
        Assert.True(sinceCommit >= TimeSpan.FromMilliseconds(300 + 1000 - 50), $"the rollback came {sinceCommit.TotalMilliseconds:0} ms after the commit: before the check was Unhealthy for UnhealthyFor");
        Assert.Equal(ZeroDowntimeExitCodes.RolledBack, await v2.WaitForExitAsync(TimeSpan.FromSeconds(40)));

        await FinishAsync(load, v1, scope.BaseUri);
    }

    /// <summary>
    /// Proof 3, second half: a healthy probation. The old process stands by for the window (alive, accepting nothing,
    /// shown by <c>zerodowntime status</c>), then exits 0; the new one serves on, and a rollback after the window is
    /// refused (exit 4).
    /// </summary>
    [Fact]
    public async Task HealthyProbation_OldStandsByForTheWindow_ThenExits0_RollbackAfterItRefused()
    {
        var duration = TimeSpan.FromSeconds(3);
        using var scope = new TestScope();
        var config = WithProbation(scope.Config(), duration);
        await using var v1 = await StartFirstAsync("v1", config, output);
        await using var load = HttpLoad.Start(new Uri(scope.BaseUri, "/pid"), workers: 2, newConnectionPerRequest: true);
        await load.WaitForMoreSuccessesAsync(50);

        await using var v2 = SampleApp.Start("v2", config, output);
        await v2.WaitForEventAsync(Events.Committed);
        await v2.WaitForEventAsync(Events.ProbationStarted);
        var standingBy = await v1.WaitForEventAsync(Events.StandingBy);
        var status = (await ZeroDowntimeTool.RunAsync(output, ToolWait, "status", "--socket", scope.SocketPath, "--json")).Json;
        Assert.Equal(v2.Pid, status.GetProperty("pid").GetInt32());
        var onProbation = status.GetProperty("probation");
        Assert.Equal("on-probation", onProbation.GetProperty("state").GetString());
        Assert.Equal(v1.Pid, onProbation.GetProperty("peerPid").GetInt32());
        Assert.False(v1.HasExited, "the old process did not stand by");

        // The window (from v1's commit point, as its StandingBy line says) ends without a rollback: v1 exits 0, not before.
        Assert.Equal(0, await v1.WaitForExitAsync(duration + TimeSpan.FromSeconds(20)));
        var passed = Assert.Single(v1.EventsOf(Events.ProbationPassed));
        var stoodBy = Between(standingBy, passed);
        output.WriteLine($"v1 stood by {stoodBy.TotalMilliseconds:0} ms (window {duration.TotalMilliseconds:0} ms, until {WindowEnd(standingBy):HH:mm:ss.fff}), then exited 0: {passed.Text}");
        Assert.True(passed.Timestamp >= WindowEnd(standingBy) - TimeSpan.FromMilliseconds(5), $"v1's probation passed at {passed.Timestamp:HH:mm:ss.fff}, before the window's end");
        await v2.WaitForEventAsync(Events.ProbationEndedForSuccessor);
        Assert.Empty(v1.EventsOf(Events.RolledBack));
        Assert.Empty(v2.EventsOf(Events.RollbackRequested));

        var refused = await ZeroDowntimeTool.RunAsync(output, ToolWait, "rollback", "--socket", scope.SocketPath);
        Assert.Equal(4, refused.ExitCode);
        await FinishAsync(load, v2, scope.BaseUri);
    }

    /// <summary>SIGUSR1 to the serving process during probation asks for the rollback, as <c>zerodowntime rollback</c> does.</summary>
    [Fact]
    public async Task Sigusr1ToTheServingProcess_DuringProbation_RollsBack()
    {
        using var scope = new TestScope();
        var config = WithProbation(scope.Config(), TimeSpan.FromSeconds(8));
        await using var v1 = await StartFirstAsync("v1", config, output);
        await using var load = HttpLoad.Start(new Uri(scope.BaseUri, "/pid"), workers: 2, newConnectionPerRequest: true);
        await using var v2 = SampleApp.Start("v2", config, output);
        await v2.WaitForEventAsync(Events.ProbationStarted);
        await v1.WaitForEventAsync(Events.StandingBy);
        await load.WaitForMoreSuccessesAsync(50);

        v2.Signal(SIGUSR1);
        var requested = await v2.WaitForEventAsync(Events.RollbackRequested);
        output.WriteLine(requested.Text);
        await v1.WaitForEventAsync(Events.RolledBack);
        Assert.Equal(ZeroDowntimeExitCodes.RolledBack, await v2.WaitForExitAsync(TimeSpan.FromSeconds(40)));
        await FinishAsync(load, v1, scope.BaseUri);
    }

    /// <summary>
    /// The end of a rollback or a probation under <paramref name="load"/>: the load reaches <paramref name="serving"/>
    /// (50 more answers), none failed, and it is the one that answers; then it stops in order and exits 0.
    /// </summary>
    private async Task FinishAsync(HttpLoad load, SampleApp serving, Uri baseUri)
    {
        string pid = serving.Pid.ToString(CultureInfo.InvariantCulture);
        await Until.TrueAsync(() => load.ResponsesByBody.ContainsKey(pid), $"an answer of the load by {serving.Name}");
        await load.WaitForMoreSuccessesAsync(50);
        await load.StopAsync();
        output.WriteLine($"load: {load}");
        load.AssertNoFailures();
        using var client = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        Assert.Equal(pid, await client.GetStringAsync(new Uri(baseUri, "/pid")));
        serving.Signal(Posix.SIGTERM);
        Assert.Equal(0, await serving.WaitForExitAsync());
    }

    /// <summary>The short windows of these tests, as environment variables (both processes read them; the new one's count).</summary>
    private static SampleConfig WithProbation(SampleConfig config, TimeSpan duration) => config
        .With("ZeroDowntime__Probation__Duration", duration.ToString("c", CultureInfo.InvariantCulture))
        .With("ZeroDowntime__Probation__MaxErrorRatio", MaxErrorRatio.ToString(CultureInfo.InvariantCulture))
        .With("ZeroDowntime__Probation__MinRequests", MinRequests.ToString(CultureInfo.InvariantCulture))
        .With("ZeroDowntime__Probation__ErrorWindow", ErrorWindow.ToString("c", CultureInfo.InvariantCulture))
        .With("ZeroDowntime__Probation__UnhealthyFor", "00:00:01");

    /// <summary>The time between two log lines, by their timestamps (both processes log this machine's clock).</summary>
    private static TimeSpan Between(LogLine from, LogLine to) =>
        (to.Timestamp ?? throw new InvalidOperationException("no timestamp: " + to)) - (from.Timestamp ?? throw new InvalidOperationException("no timestamp: " + from));

    /// <summary>When the window ends, as the old process's StandingBy line says ("until {EndsAt:O}", to the tick).</summary>
    private static DateTimeOffset WindowEnd(LogLine standingBy) =>
        DateTimeOffset.Parse(StandingByUntil().Match(standingBy.Message ?? "").Groups[1].Value, CultureInfo.InvariantCulture);

    /// <summary>Until <c>/</c> has run <paramref name="more"/> more times for clients in the process that serves (bounded).</summary>
    private static async Task WaitForRootCallsAsync(HttpClient client, Uri baseUri, long more)
    {
        long start = await RootCallsAsync(client, baseUri);
        using var limit = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(50));
        while (await RootCallsAsync(client, baseUri) < start + more)
        {
            await timer.WaitForNextTickAsync(limit.Token);
        }
    }

    private static async Task<long> RootCallsAsync(HttpClient client, Uri baseUri) =>
        long.Parse(RootCalls().Match(await client.GetStringAsync(new Uri(baseUri, "/stats/root"))).Groups[1].Value, CultureInfo.InvariantCulture);

    [GeneratedRegex(@"Time taken for tests:\s+([\d.]+) seconds")]
    private static partial Regex AbTimeTaken();

    [GeneratedRegex(@"until (\d{4}-\d\d-\d\dT[\d:.]+[+-]\d\d:\d\d)")]
    private static partial Regex StandingByUntil();

    [GeneratedRegex(@"calls=(\d+)")]
    private static partial Regex RootCalls();
}
