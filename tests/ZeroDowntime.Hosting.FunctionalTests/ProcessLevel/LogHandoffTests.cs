using System.Collections.Concurrent;
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
    private void AssertEveryLibraryLineIn(SampleApp app, LogFile file)
    {
        var written = file.Lines.Select(LogFiles.CategoryAndMessage).Where(l => l is not null).ToHashSet(StringComparer.Ordinal);
        var expected = app.Lines.Select(ConsoleCategoryAndMessage).Where(l => l is not null && (l.StartsWith("ZeroDowntime.", StringComparison.Ordinal) || l.StartsWith("Microsoft.Hosting.Lifetime|", StringComparison.Ordinal))).ToList();
        var lost = expected.Where(l => !written.Contains(l!)).ToList();
        output.WriteLine($"{app.Name}: {expected.Count} console lines of the library and host, {lost.Count} missing from {file.Name}");
        Assert.True(lost.Count == 0, $"{app.Name} (pid {app.Pid}): {lost.Count} of {expected.Count} lines missing from {file.Name}, first: {string.Join(" || ", lost.Take(10))}");
        Assert.True(expected.Count >= 8, $"{app.Name}: only {expected.Count} console lines parsed");
    }

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

    /// <summary>The log files of one test's log directory, parsed.</summary>
    private sealed partial class LogFiles
    {
        private LogFiles(List<LogFile> all) => All = all;

        public List<LogFile> All { get; }

        public LogFile? Current => All.SingleOrDefault(f => f.Name == "webapi.log");

        public List<LogFile> Archives => All.Where(f => f.Name != "webapi.log").ToList();

        public static LogFiles Read(string directory)
        {
            var files = new List<LogFile>();
            foreach (string path in Directory.GetFiles(directory, "webapi*.log").Order(StringComparer.Ordinal))
            {
                string name = Path.GetFileName(path);
                int? namedPid = null;
                if (name != "webapi.log")
                {
                    var archive = ArchiveName().Match(name);
                    Assert.True(archive.Success, $"{name} is not named as documented (webapi.yyyy-MM-ddTHH-mm-ss.<pid>.log)");
                    namedPid = int.Parse(archive.Groups["pid"].Value, CultureInfo.InvariantCulture);
                }

                var lines = File.ReadAllLines(path);
                var pids = lines.Select(l => LineStart().Match(l)).Where(m => m.Success)
                    .Select(m => int.Parse(m.Groups["pid"].Value, CultureInfo.InvariantCulture)).ToHashSet();
                files.Add(new LogFile(name, namedPid, lines, [.. pids.Order()]));
            }

            return new LogFiles(files);
        }

        public Dictionary<int, int> MarkerCounts()
        {
            var counts = new Dictionary<int, int>();
            foreach (var match in All.SelectMany(f => f.Lines).Select(l => Marker().Match(l)).Where(m => m.Success))
            {
                int id = int.Parse(match.Groups["id"].Value, CultureInfo.InvariantCulture);
                counts[id] = counts.GetValueOrDefault(id) + 1;
            }

            return counts;
        }

        public string Describe() =>
            $"{All.Count} log file(s), {All.Sum(f => f.Lines.Count)} lines, {MarkerCounts().Count} distinct markers:{Environment.NewLine}"
            + string.Join(Environment.NewLine, All.Select(f => $"  {f.Name}: {f.Lines.Count} lines, {f.Lines.Count(l => Marker().IsMatch(l))} markers, pids {string.Join(",", f.Pids)}"));

        /// <summary>"category|message" of a file line, as <see cref="ConsoleCategoryAndMessage"/> gives it for a console line.</summary>
        public static string? CategoryAndMessage(string line)
        {
            var parts = line.Split('|', 5);
            return parts.Length == 5 && LineStart().IsMatch(line) ? parts[3] + "|" + parts[4] : null;
        }

        /// <summary>The event id of a file line (files have none): that of the console line of the process with its text.</summary>
        public static int? EventIdOf(string line, SampleApp app)
        {
            string? key = CategoryAndMessage(line);
            if (key is null)
            {
                return null;
            }

            foreach (string console in app.Lines)
            {
                var match = ConsoleLine().Match(console);
                if (match.Success && match.Groups["cat"].Value + "|" + match.Groups["msg"].Value == key)
                {
                    return int.Parse(match.Groups["id"].Value, CultureInfo.InvariantCulture);
                }
            }

            return null;
        }

        public static int? MarkerId(string line)
        {
            var match = Marker().Match(line);
            return match.Success ? int.Parse(match.Groups["id"].Value, CultureInfo.InvariantCulture) : null;
        }

        [GeneratedRegex(@"^webapi\.\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}\.(?<pid>\d+)\.log$")]
        private static partial Regex ArchiveName();

        [GeneratedRegex(@"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{4}\|(?<pid>\d+)\|")]
        private static partial Regex LineStart();

        [GeneratedRegex(@"\|ZeroDowntime\.Sample\.LogMarker\|log-marker (?<id>-?\d+)$")]
        private static partial Regex Marker();
    }

    private static string? ConsoleCategoryAndMessage(string line)
    {
        var match = ConsoleLine().Match(line);
        return match.Success ? match.Groups["cat"].Value + "|" + match.Groups["msg"].Value : null;
    }

    /// <summary>A line of the console's simple single-line formatter as SampleApp configures it.</summary>
    [GeneratedRegex(@"^\d\d:\d\d:\d\d\.\d{3} (?:info|warn|fail|crit): (?<cat>[^\[ ]+)\[(?<id>\d+)\] (?<msg>.*)$")]
    private static partial Regex ConsoleLine();

    private sealed record LogFile(string Name, int? NamedPid, IReadOnlyList<string> Lines, IReadOnlyList<int> Pids);

    /// <summary>
    /// Clients that call <c>/log/{i}</c> with ever-increasing i until stopped: even workers over keep-alive
    /// connections, odd ones with a new connection per request.
    /// </summary>
    private sealed class MarkerClient : IAsyncDisposable
    {
        private readonly HttpClient _client = new() { Timeout = TimeSpan.FromSeconds(30) };
        private readonly CancellationTokenSource _stop = new(HttpLoad.MaxDuration);
        private readonly ConcurrentBag<int> _succeeded = [];
        private readonly ConcurrentQueue<string> _failures = new();
        private readonly Task[] _workers;
        private int _next;
        private long _failed;

        private readonly List<int>[] _sentByWorker;

        private MarkerClient(Uri baseUri, int workers)
        {
            _sentByWorker = Enumerable.Range(0, workers).Select(_ => new List<int>()).ToArray();
            _workers = Enumerable.Range(0, workers).Select(i => Task.Run(() => RunAsync(baseUri, newConnectionPerRequest: i % 2 == 1, _sentByWorker[i]))).ToArray();
        }

        /// <summary>Each worker's marker ids in the order it sent them (read after <see cref="StopAsync"/>).</summary>
        public IReadOnlyList<IReadOnlyList<int>> SentByWorker => _sentByWorker;

        public IReadOnlyCollection<int> Succeeded => _succeeded;

        public long Failed => Interlocked.Read(ref _failed);

        public IReadOnlyCollection<string> Failures => _failures;

        public static MarkerClient Start(Uri baseUri, int workers) => new(baseUri, workers);

        public async Task WaitForMoreAsync(int count)
        {
            int target = _succeeded.Count + count;
            using var limit = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(10));
            while (_succeeded.Count < target)
            {
                await timer.WaitForNextTickAsync(limit.Token);
            }
        }

        public async Task StopAsync()
        {
            await _stop.CancelAsync();
            await Task.WhenAll(_workers);
        }

        public async ValueTask DisposeAsync()
        {
            if (!_stop.IsCancellationRequested)
            {
                await StopAsync();
            }

            _client.Dispose();
            _stop.Dispose();
        }

        public override string ToString() => $"{_succeeded.Count} answered 200, {Failed} failed, {_next} sent";

        private async Task RunAsync(Uri baseUri, bool newConnectionPerRequest, List<int> sent)
        {
            while (!_stop.IsCancellationRequested)
            {
                int id = Interlocked.Increment(ref _next);
                sent.Add(id);
                try
                {
                    using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(baseUri, $"/log/{id}"));
                    request.Headers.ConnectionClose = newConnectionPerRequest;
                    using var response = await _client.SendAsync(request, _stop.Token);
                    if (response.StatusCode == HttpStatusCode.OK)
                    {
                        _succeeded.Add(id);
                    }
                    else
                    {
                        Fail($"/log/{id}: HTTP {(int)response.StatusCode}");
                    }
                }
                catch (OperationCanceledException) when (_stop.IsCancellationRequested)
                {
                    return;
                }
                catch (Exception ex) when (ex is HttpRequestException or IOException or OperationCanceledException)
                {
                    Fail($"/log/{id}: {Posix.Describe(ex)}");
                }
            }
        }

        private void Fail(string reason)
        {
            Interlocked.Increment(ref _failed);
            if (_failures.Count < 50)
            {
                _failures.Enqueue(reason);
            }
        }
    }
}
