using System.Globalization;
using System.Net;
using System.Text.RegularExpressions;
using Xunit.Abstractions;
using ZeroDowntime.Hosting.FunctionalTests.Infrastructure;
using ZeroDowntime.Hosting.Protocol;
using ZeroDowntime.Hosting.Tests.Infrastructure;
using static ZeroDowntime.Hosting.FunctionalTests.Infrastructure.HandoffSteps;

namespace ZeroDowntime.Hosting.FunctionalTests;

/// <summary>
/// Log files change hands with the listeners (ZeroDowntime.Hosting.NLog in the sample): the old process renames its
/// webapi.log at the commit point and writes the rest of its lines there; the new one writes webapi.log only after.
/// </summary>
public sealed partial class LogHandoffTests(ITestOutputHelper output)
{
    /// <param name="maxHeldLines">4: four held lines in memory, the rest (a start-up logs about eleven) through the
    /// side file; 0: every held line through the side file.</param>
    [Theory]
    [InlineData(4)]
    [InlineData(0)]
    public async Task FiveHandoffs_WhileMarkersAreLogged_EveryMarkerOnceAndOneProcessPerFile(int maxHeldLines)
    {
        using var scope = new TestScope();
        string logs = Path.Combine(scope.Directory, "logs");
        var config = QuietMarkers(scope.Config().With("Logs__Directory", logs)).With("ZeroDowntime__LogFiles__MaxHeldLines", maxHeldLines.ToString(CultureInfo.InvariantCulture));
        var current = await StartFirstAsync("v1", config, output);
        var all = new List<SampleApp> { current };
        try
        {
            // Half the clients open a connection per request, so that successors also serve (and hold) markers
            // between their start and the commit.
            await using var markers = MarkerClient.Start(scope.BaseUri, workers: 4);
            await markers.WaitForMoreAsync(100);
            for (int version = 2; version <= 6; version++)
            {
                var (successor, oldExit) = await HandOverAsync(current, $"v{version}", config, output);
                all.Add(successor);
                Assert.Equal(0, oldExit);
                await successor.WaitForEventAsync(Events.LogFileAcquired);
                current = successor;
                await markers.WaitForMoreAsync(100);
            }

            await markers.StopAsync();
            output.WriteLine($"markers: {markers}");

            // The last process stops in order too, so that its shutdown lines are in its file like everyone's.
            current.Signal(Posix.SIGTERM);
            Assert.Equal(0, await current.WaitForExitAsync());

            var files = LogFiles.Read(logs);
            output.WriteLine(files.Describe());
            var held = ReportHeldLines(all.Skip(1));
            Assert.Equal(5, held.Count);
            Assert.All(held, h => Assert.True(h.Spilled > 0, "a successor's start-up lines exceed 4 and go through the side file"));
            Assert.All(held, h => Assert.True(maxHeldLines > 0 || h.Spilled == h.Count, $"MaxHeldLines=0: {h.Spilled} of {h.Count} held lines went through the side file"));

            // Every marker that got a 200 is in exactly one file, exactly once; no marker is anywhere twice.
            var counts = files.MarkerCounts();
            var missing = markers.Succeeded.Where(id => !counts.ContainsKey(id)).Order().ToList();
            Assert.True(missing.Count == 0, $"{missing.Count} answered markers missing from the log files, first: {string.Join(", ", missing.Take(20))}");
            var twice = counts.Where(kv => kv.Value > 1).Select(kv => kv.Key).Order().ToList();
            Assert.True(twice.Count == 0, $"markers logged more than once: {string.Join(", ", twice.Take(20))}");

            // One process per file; webapi.log is the current process's; five archives, one per old process.
            foreach (var file in files.All)
            {
                Assert.True(file.Pids.Count == 1, $"{file.Name} holds lines of pids {string.Join(", ", file.Pids)}");
            }

            Assert.Equal([current.Pid], files.Current!.Pids);
            var archives = files.Archives;
            Assert.Equal(5, archives.Count);
            foreach (var archive in archives)
            {
                Assert.Equal([archive.NamedPid!.Value], archive.Pids);
            }

            // A successor's held lines come first and in order: its first line is the first it logged.
            foreach (var file in files.All.Where(f => f.Pids[0] != all[0].Pid))
            {
                Assert.Contains("Found 1 NLog file target(s)", file.Lines[0], StringComparison.Ordinal);
            }

            // Not only markers: every line a process wrote to its console (the library's, and the host's start-up
            // and shutdown lines) is in that process's file: start-up lines held before the commit, drain and
            // exit lines written after the rename, all of them.
            foreach (var app in all)
            {
                AssertEveryLibraryLineIn(app, files.All.Single(f => f.Pids.Contains(app.Pid)));
            }

            // Order, which each process's causality fixes: the steps of its handoffs in the order they happened,
            // and each marker client's markers (each sent after the previous one was answered) in sending order,
            // held lines included.
            foreach (var app in all)
            {
                var file = files.All.Single(f => f.Pids.Contains(app.Pid));
                int[] steps = app == all[0] ? [3, 4, 12, 13, 42, 45, 46, 51] : app == all[^1] ? [3, 6, 7, 12, 20, 21, 13] : [3, 6, 7, 12, 20, 21, 13, 42, 45, 46, 51];
                var positions = steps.Select(id => file.Lines.ToList().FindIndex(l => l.Contains($"|ZeroDowntime.Hosting.", StringComparison.Ordinal) && LogFiles.EventIdOf(l, app) == id)).ToArray();
                Assert.True(positions.All(p => p >= 0) && positions.SequenceEqual(positions.Order()),
                    $"{app.Name}: events {string.Join(",", steps)} at lines {string.Join(",", positions)} of {file.Name}");
            }

            foreach (var file in files.All)
            {
                var ids = file.Lines.Select(l => LogFiles.MarkerId(l)).Where(id => id is not null).Select(id => id!.Value).ToList();
                foreach (var sequence in markers.SentByWorker)
                {
                    var rank = sequence.Select((id, i) => (id, i)).ToDictionary(x => x.id, x => x.i);
                    var inFile = ids.Where(rank.ContainsKey).Select(id => rank[id]).ToList();
                    Assert.True(inFile.SequenceEqual(inFile.Order()), $"{file.Name}: a client's markers out of order: {string.Join(",", inFile.Take(30))}");
                }
            }

            Assert.Equal(all.Take(5).Select(a => a.Pid).Order(), archives.Select(a => a.NamedPid!.Value).Order());
            Assert.Empty(Directory.GetFiles(logs, "*.held", new EnumerationOptions { AttributesToSkip = 0 }));
            Assert.True(markers.Failed == 0, $"{markers.Failed} marker requests failed: {string.Join(Environment.NewLine, markers.Failures)}");
        }
        finally
        {
            foreach (var app in all)
            {
                await app.DisposeAsync();
            }
        }
    }

    [Fact]
    public async Task SuccessorThatFailsStartup_WritesHeldLinesToItsOwnArchive_OldKeepsWebapiLog()
    {
        using var scope = new TestScope();
        string logs = Path.Combine(scope.Directory, "logs");
        var config = scope.Config().With("Logs__Directory", logs);
        await using var v1 = await StartFirstAsync("v1", config, output);

        await using var broken = SampleApp.Start("v2-broken", config.With("Sample__FailStartup", "true"), output);
        Assert.NotEqual(0, await broken.WaitForExitAsync());
        await v1.WaitForEventAsync(Events.SuccessorFailed);
        await broken.WaitForEventAsync(Events.LogFileAbandoned);
        using (var client = new HttpClient())
        {
            Assert.Equal(HttpStatusCode.OK, (await client.GetAsync(new Uri(scope.BaseUri, "/log/1"))).StatusCode);
        }

        var files = LogFiles.Read(logs);
        output.WriteLine(files.Describe());
        Assert.Equal([v1.Pid], files.Current!.Pids);
        Assert.Equal(1, files.MarkerCounts()[1]);
        var archive = Assert.Single(files.Archives);
        Assert.Equal(broken.Pid, archive.NamedPid);
        Assert.Equal([broken.Pid], archive.Pids);
        Assert.Contains(archive.Lines, l => l.Contains("Start-up failed on purpose", StringComparison.Ordinal));
        Assert.Contains(archive.Lines, l => l.Contains($"Connected to predecessor pid {v1.Pid}", StringComparison.Ordinal));
    }

    [Fact]
    public async Task PredecessorKilledDuringHandoff_SuccessorTakesWebapiLogAndSaysSo()
    {
        using var scope = new TestScope();
        string logs = Path.Combine(scope.Directory, "logs");
        var config = scope.Config().With("Logs__Directory", logs);
        var v1 = await StartFirstAsync("v1", config, output);
        SampleApp? v2 = null;
        try
        {
            using (var client = new HttpClient())
            {
                Assert.Equal(HttpStatusCode.OK, (await client.GetAsync(new Uri(scope.BaseUri, "/log/1"))).StatusCode);
            }

            // v2 holds after receiving the sockets until SIGCONT: v1 dies inside the handoff however slow the machine.
            v2 = SampleApp.Start("v2", config.WithFaultPause("after-receive").With("ZeroDowntime__HandoffTimeout", "00:00:20"), output);
            await v2.WaitForEventAsync(Events.FaultInjectionPause);
            v1.Signal(Posix.SIGKILL);
            var killed = System.Diagnostics.Stopwatch.StartNew();
            await v1.WaitForExitAsync();
            v2.Signal(Posix.SIGCONT);

            // Within the handoff timeout (20 s here), and said in v2's log.
            await v2.WaitForEventAsync(Events.PredecessorVanished, TimeSpan.FromSeconds(20));
            await v2.WaitForEventAsync(Events.LogFileTakenOver, TimeSpan.FromSeconds(20) - killed.Elapsed);
            output.WriteLine($"v2 took webapi.log {killed.Elapsed.TotalMilliseconds:0} ms after v1 was killed");
            await v2.WaitForEventAsync(Events.OrphanLogFileArchived);
            using (var client = new HttpClient())
            {
                Assert.Equal(HttpStatusCode.OK, (await client.GetAsync(new Uri(scope.BaseUri, "/log/2"))).StatusCode);
            }

            var files = LogFiles.Read(logs);
            output.WriteLine(files.Describe());
            Assert.Equal([v2.Pid], files.Current!.Pids);
            var archive = Assert.Single(files.Archives);
            Assert.Equal(v1.Pid, archive.NamedPid);
            Assert.Equal([v1.Pid], archive.Pids);
            Assert.Equal(1, files.MarkerCounts()[1]);
            Assert.Equal(1, files.MarkerCounts()[2]);
            Assert.Contains(files.Current.Lines, l => l.Contains("without its release", StringComparison.Ordinal));
        }
        finally
        {
            await v1.DisposeAsync();
            if (v2 is not null)
            {
                await v2.DisposeAsync();
            }
        }
    }

    [Fact]
    public async Task SuccessorKilledAfterCommit_OldServesAgainOnItsArchive_NeverReclaimsWebapiLog()
    {
        using var scope = new TestScope();
        string logs = Path.Combine(scope.Directory, "logs");
        var config = scope.Config().With("Logs__Directory", logs).With("ZeroDowntime__IdleConnectionGracePeriod", "00:00:20");
        await using var v1 = await StartFirstAsync("v1", config, output);
        using var idle = new HttpClient();
        Assert.Equal(HttpStatusCode.OK, (await idle.GetAsync(new Uri(scope.BaseUri, "/log/1"))).StatusCode);

        await using var v2 = SampleApp.Start("v2", config, output);
        await v2.WaitForEventAsync(Events.LogFileAcquired);
        await v2.WaitForEventAsync(Events.ServingHandoffSocket);
        v2.Signal(Posix.SIGKILL);
        await v2.WaitForExitAsync();

        await v1.WaitForEventAsync(Events.SuccessorLost);
        await v1.WaitForEventAsync(Events.LogFilesStayArchived);
        using (var fresh = new HttpClient())
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(scope.BaseUri, "/log/2"));
            request.Headers.ConnectionClose = true;
            Assert.Equal(HttpStatusCode.OK, (await fresh.SendAsync(request)).StatusCode);
        }

        // Stop v1 in order so that its lines are all written, then read the files.
        idle.Dispose();
        v1.Signal(Posix.SIGTERM);
        Assert.Equal(0, await v1.WaitForExitAsync());
        var files = LogFiles.Read(logs);
        output.WriteLine(files.Describe());
        Assert.Equal([v2.Pid], files.Current!.Pids);
        var archive = Assert.Single(files.Archives);
        Assert.Equal(v1.Pid, archive.NamedPid);
        Assert.Equal([v1.Pid], archive.Pids);
        Assert.Equal(1, files.MarkerCounts()[1]);
        Assert.Equal(1, files.MarkerCounts()[2]);
        Assert.Contains(archive.Lines, l => l.Contains("log-marker 2", StringComparison.Ordinal));
        Assert.Contains(archive.Lines, l => l.Contains("keeps writing to its archive", StringComparison.Ordinal));
    }

    /// <summary>
    /// The commit never reaches the successor: its connection broke between Ready and Committed. v1 had released
    /// webapi.log at the commit point; it serves again and takes webapi.log back (<c>AcquireAsync(NotCommitted)</c>),
    /// with every line it wrote meanwhile, in order. The raw successor sends Ready and closes while v1 is stopped
    /// (SIGSTOP), so v1 reads Ready with the connection already gone and cannot send Committed, however slow the machine.
    /// </summary>
    [Fact]
    public async Task ConnectionBrokenAtTheCommit_OldServesAgain_TakesWebapiLogBackWithEveryLine()
    {
        using var scope = new TestScope();
        string logs = Path.Combine(scope.Directory, "logs");
        var config = scope.Config().With("Logs__Directory", logs);
        await using var v1 = await StartFirstAsync("v1", config, output);
        using var client = new HttpClient();
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync(new Uri(scope.BaseUri, "/log/1"))).StatusCode);

        using (var successor = await RawHandoffClient.ConnectAsync(scope.SocketPath))
        {
            await successor.SendAsync(new HelloMessage(HandoffProtocol.Version, Environment.ProcessId, "WebApi"));
            await v1.WaitForEventAsync(Events.HandoffRequested);
            v1.Signal(Posix.SIGSTOP);
            await WaitUntilStoppedAsync(v1.Pid);
            await successor.SendAsync(new ReadyMessage());
        }

        v1.Signal(Posix.SIGCONT);
        await v1.WaitForEventAsync(Events.LogFileReleased);
        var lost = await v1.WaitForEventAsync(Events.SuccessorLost);
        Assert.Contains("the connection broke at the commit", lost, StringComparison.Ordinal);
        await v1.WaitForEventAsync(Events.LogFileTakenBack);
        Assert.Equal(v1.Pid.ToString(CultureInfo.InvariantCulture), await client.GetStringAsync(new Uri(scope.BaseUri, "/pid")));
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync(new Uri(scope.BaseUri, "/log/2"))).StatusCode);

        v1.Signal(Posix.SIGTERM);
        Assert.Equal(0, await v1.WaitForExitAsync());
        var files = LogFiles.Read(logs);
        output.WriteLine(files.Describe());
        Assert.Empty(files.Archives);
        Assert.Equal([v1.Pid], files.Current!.Pids);
        Assert.Equal(1, files.MarkerCounts()[1]);
        Assert.Equal(1, files.MarkerCounts()[2]);
        AssertEveryLibraryLineIn(v1, files.Current);
        AssertInOrder(v1, files.Current, [Events.LogFileReleased.Id, Events.SuccessorLost.Id, Events.LogFileTakenBack.Id], "release, lost, taken back");
        Assert.True(Array.FindIndex([.. files.Current.Lines], l => LogFiles.MarkerId(l) == 1) < Array.FindIndex([.. files.Current.Lines], l => LogFiles.MarkerId(l) == 2), "markers out of order");
        Assert.Empty(v1.EventsOf(Events.LogFilesStayArchived));
    }

    /// <summary>
    /// A participant registered after NLog's hangs in its release at the commit (the fault step <c>in-release</c>):
    /// NLog's participant has really released (webapi.log renamed to v1's archive) when the overrun abandons the
    /// handoff, so v1 must take webapi.log back. The successor, which never owned it, writes its own archive.
    /// </summary>
    [Fact]
    public async Task ParticipantAfterNLogOverrunsAtCommit_HandoffAbandoned_OldTakesWebapiLogBack()
    {
        using var scope = new TestScope();
        string logs = Path.Combine(scope.Directory, "logs");
        var config = scope.Config().With("Logs__Directory", logs);
        await using var v1 = await StartFirstAsync("v1", config.WithFaultPause("in-release"), output);
        using var client = new HttpClient();
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync(new Uri(scope.BaseUri, "/log/1"))).StatusCode);

        await using var v2 = SampleApp.Start("v2", config, output);
        await v1.WaitForEventAsync(Events.FaultInjectionPause); // the hanging participant, asked after NLog's
        Assert.True(v1.EventsOf(Events.LogFileReleased).Count == 1,
            "v1's NLog participant had not released when the hanging participant was asked: it must be registered after NLog's for this test");
        await v1.WaitForEventAsync(Events.ParticipantOverran);
        v1.Signal(Posix.SIGCONT); // the participant returns; v1 abandons the handoff and takes back what it released
        await v1.WaitForEventAsync(Events.HandoffAbandonedAtCommit);
        await v1.WaitForEventAsync(Events.LogFileTakenBack);
        Assert.Equal(ZeroDowntimeExitCodes.HandoffAbandoned, await v2.WaitForExitAsync());
        Assert.Equal(v1.Pid.ToString(CultureInfo.InvariantCulture), await client.GetStringAsync(new Uri(scope.BaseUri, "/pid")));
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync(new Uri(scope.BaseUri, "/log/2"))).StatusCode);

        v1.Signal(Posix.SIGTERM);
        Assert.Equal(0, await v1.WaitForExitAsync());
        var files = LogFiles.Read(logs);
        output.WriteLine(files.Describe());
        Assert.Equal([v1.Pid], files.Current!.Pids);
        var archive = Assert.Single(files.Archives); // v2's own, none of v1
        Assert.Equal([v2.Pid], archive.Pids);
        Assert.Equal(v2.Pid, archive.NamedPid);
        Assert.Equal(1, files.MarkerCounts()[1]);
        Assert.Equal(1, files.MarkerCounts()[2]);
        AssertEveryLibraryLineIn(v1, files.Current);
        AssertInOrder(v1, files.Current, [Events.LogFileReleased.Id, Events.HandoffAbandonedAtCommit.Id], "released, then abandoned");
        Assert.Contains(files.Current.Lines, l => l.Contains("taken back from", StringComparison.Ordinal));
    }

    /// <summary>Every line that <paramref name="app"/> wrote to its console from the library and the host is in <paramref name="file"/>.</summary>
    private void AssertEveryLibraryLineIn(SampleApp app, LogFile file) => LogFiles.AssertEveryLibraryLineIn(app, file, output);

    /// <summary>The library's events <paramref name="ids"/> are in <paramref name="file"/> in this order.</summary>
    private static void AssertInOrder(SampleApp app, LogFile file, int[] ids, string what)
    {
        var positions = ids.Select(id => file.Lines.ToList().FindIndex(l => l.Contains("|ZeroDowntime.Hosting.", StringComparison.Ordinal) && LogFiles.EventIdOf(l, app) == id)).ToArray();
        Assert.True(positions.All(p => p >= 0) && positions.SequenceEqual(positions.Order()),
            $"{app.Name}: {what}: events {string.Join(",", ids)} at lines {string.Join(",", positions)} of {file.Name}");
    }

    /// <summary>Until every thread of <paramref name="pid"/> is stopped (state T), so that it reads nothing meanwhile.</summary>
    private static Task WaitUntilStoppedAsync(int pid) =>
        Until.TrueAsync(() => Directory.GetDirectories($"/proc/{pid}/task").All(task =>
        {
            try
            {
                return File.ReadAllText(Path.Combine(task, "stat")).Split(") ")[^1].StartsWith('T');
            }
            catch (IOException)
            {
                return true; // the thread ended
            }
        }), $"pid {pid} stopped");

    /// <summary>Keeps the marker lines out of the console (and the test log); NLog still writes every one.</summary>
    private static SampleConfig QuietMarkers(SampleConfig config) =>
        config.With("Logging__Console__LogLevel__ZeroDowntime.Sample.LogMarker", "Warning");

    private List<(int Count, int Spilled, int Ms)> ReportHeldLines(IEnumerable<SampleApp> successors)
    {
        var held = new List<(int Count, int Spilled, int Ms)>();
        foreach (var app in successors)
        {
            foreach (string line in app.Entries.Where(l => l.Is(Events.LogFileAcquired)))
            {
                var match = HeldLinesPattern().Match(line);
                if (match.Success)
                {
                    var figures = (int.Parse(match.Groups["count"].Value, CultureInfo.InvariantCulture), int.Parse(match.Groups["spilled"].Value, CultureInfo.InvariantCulture),
                        int.Parse(match.Groups["ms"].Value, CultureInfo.InvariantCulture));
                    held.Add(figures);
                    output.WriteLine($"held lines {app.Name}: {figures.Item1} line(s), {figures.Item2} via the side file, held {figures.Item3} ms");
                }
            }
        }

        if (held.Count > 0)
        {
            output.WriteLine($"held lines: at most {held.Max(h => h.Count)} line(s), longest hold {held.Max(h => h.Ms)} ms");
        }

        return held;
    }

    [GeneratedRegex(@"wrote (?<count>\d+) held line\(s\) \((?<spilled>\d+) via the side file\), held for (?<ms>\d+) ms")]
    private static partial Regex HeldLinesPattern();
}
