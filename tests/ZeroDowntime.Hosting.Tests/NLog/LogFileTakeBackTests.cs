using NLog;
using NLog.Config;
using NLog.Layouts;
using NLog.Targets;
using NLog.Targets.Wrappers;
using ZeroDowntime.Hosting.NLog;
using ZeroDowntime.Hosting.NLog.Internal;
using ZeroDowntime.Hosting.Tests.Infrastructure;

namespace ZeroDowntime.Hosting.Tests.NLog;

/// <summary>
/// What the old process does with its log file when it serves again after releasing it at the commit point, through
/// the participant as the core calls it, with real NLog over real files: <see cref="HandoffAcquireReason.NotCommitted"/>
/// (no successor heard Committed) takes the file back to its original name, <see cref="HandoffAcquireReason.Reclaimed"/>
/// (the successor heard Committed and was lost) stays on the archive.
/// </summary>
public sealed class LogFileTakeBackTests : IDisposable
{
    private const int Pid = 4242;
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);
    private readonly TestScope _scope = new();
    private readonly LogFactory _factory = new();
    private readonly RecordingLogger<object> _log = new();
    private readonly List<LogFileHandoff> _handoffs = [];

    private string LogPath => Path.Combine(_scope.Directory, "app.log");

    /// <summary>The archive name of this process (pid 4242, fixed clock), as docs/logging.md describes it.</summary>
    private string ArchivePath => Path.Combine(_scope.Directory, "app.2024-05-01T10-00-00.4242.log");

    public void Dispose()
    {
        _handoffs.ForEach(h => h.Dispose());
        _factory.Dispose();
        _scope.Dispose();
    }

    [Fact]
    public async Task AcquireAsync_NotCommittedAfterRelease_ArchiveBackToOriginalName_EveryLineOnceInOrder()
    {
        var (handoff, participant, file) = Start(out var log);
        var configured = file.FileName;
        await participant.AcquireAsync(HandoffAcquireReason.FirstStart, CancellationToken.None).WaitAsync(Timeout);
        log.Info("before 1");
        log.Info("before 2");

        await participant.ReleaseAsync(CancellationToken.None).WaitAsync(Timeout);
        log.Info("window 3");
        log.Info("window 4");
        _factory.Flush();
        Assert.False(File.Exists(LogPath), "released: the original name is free for the successor");
        Assert.Equal(["before 1", "before 2", "window 3", "window 4"], File.ReadAllLines(ArchivePath));

        await participant.AcquireAsync(HandoffAcquireReason.NotCommitted, CancellationToken.None).WaitAsync(Timeout);
        log.Info("after 5");
        _factory.Flush();

        Assert.Equal(["before 1", "before 2", "window 3", "window 4", "after 5"], File.ReadAllLines(LogPath));
        Assert.False(File.Exists(ArchivePath), "the archive went back to the original name");
        Assert.Equal(["app.log"], Directory.GetFiles(_scope.Directory, "app*.log").Select(Path.GetFileName));
        Assert.Equal(LogFileOwnership.Owning, handoff.State);
        Assert.Equal(Pid.ToString(System.Globalization.CultureInfo.InvariantCulture), OwnerRecord.Read(LogPath));
        Assert.Same(configured, file.FileName); // the app's layout, not a literal path
        var takenBack = Assert.Single(_log.Named("LogFileTakenBack"));
        Assert.Equal(150, takenBack.EventId.Id);
        Assert.Contains(ArchivePath, takenBack.Message, StringComparison.Ordinal);
        Assert.Empty(_log.Named("LogFilesStayArchived"));
        Assert.Empty(_log.Named("LogFileHandoffFailed"));
    }

    /// <summary>
    /// Lines logged without pause from another thread, through NLog's async wrapper, across the release and the
    /// take-back and for longer than NLog's once-a-second check whether its file still exists: each one is in the file
    /// once, in the order logged, and no archive is left or recreated.
    /// </summary>
    [Fact]
    public async Task AcquireAsync_NotCommitted_WhileAnotherThreadLogs_NoLineLostDuplicatedOrReordered()
    {
        var (handoff, participant, _) = Start(out var log, wrapAsync: true);
        await participant.AcquireAsync(HandoffAcquireReason.FirstStart, CancellationToken.None).WaitAsync(Timeout);
        int logged = 0;
        using var stop = new CancellationTokenSource();
        var writer = Task.Run(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                log.Info($"seq {logged + 1}");
                Interlocked.Increment(ref logged);
            }
        });

        async Task WaitForMoreLinesAsync(int count)
        {
            int target = Volatile.Read(ref logged) + count;
            await Until.TrueAsync(() => Volatile.Read(ref logged) >= target || writer.IsCompleted, $"{target} lines logged", Timeout);
        }

        await WaitForMoreLinesAsync(500);
        await participant.ReleaseAsync(CancellationToken.None).WaitAsync(Timeout);
        await WaitForMoreLinesAsync(500);
        await participant.AcquireAsync(HandoffAcquireReason.NotCommitted, CancellationToken.None).WaitAsync(Timeout);
        await Task.Delay(TimeSpan.FromMilliseconds(1200)); // the stimulus: NLog's file existence check runs once a second
        await WaitForMoreLinesAsync(500);
        await stop.CancelAsync();
        await writer.WaitAsync(Timeout);
        _factory.Flush();

        var lines = File.ReadAllLines(LogPath);
        Assert.Equal(logged, lines.Length);
        Assert.Equal(Enumerable.Range(1, logged).Select(i => $"seq {i}"), lines);
        Assert.Equal(["app.log"], Directory.GetFiles(_scope.Directory, "app*.log").Select(Path.GetFileName));
        Assert.Equal(LogFileOwnership.Owning, handoff.State);
        Assert.Single(_log.Named("LogFileTakenBack"));
    }

    /// <summary>
    /// Reclaimed: the successor heard Committed and may have created the original name before it was lost; this
    /// process keeps to its archive and leaves that file as it is.
    /// </summary>
    [Fact]
    public async Task AcquireAsync_ReclaimedAfterRelease_StaysOnArchive_SuccessorsFileLeftAlone()
    {
        var (handoff, participant, _) = Start(out var log);
        await participant.AcquireAsync(HandoffAcquireReason.FirstStart, CancellationToken.None).WaitAsync(Timeout);
        log.Info("before");
        await participant.ReleaseAsync(CancellationToken.None).WaitAsync(Timeout);
        File.WriteAllText(LogPath, "successor's line\n");

        await participant.AcquireAsync(HandoffAcquireReason.Reclaimed, CancellationToken.None).WaitAsync(Timeout);
        log.Info("after");
        _factory.Flush();

        Assert.Equal(LogFileOwnership.Released, handoff.State);
        Assert.Equal(["before", "after"], File.ReadAllLines(ArchivePath));
        Assert.Equal(["successor's line"], File.ReadAllLines(LogPath));
        Assert.Single(_log.Named("LogFilesStayArchived"));
        Assert.Empty(_log.Named("LogFileTakenBack"));
    }

    /// <summary>
    /// Something created the original name while this process had released it: the rename back must not replace that
    /// file. The process keeps its archive for good, says why, and a later handoff does not rename the archive again.
    /// </summary>
    [Fact]
    public async Task AcquireAsync_NotCommitted_OriginalNameCreatedMeanwhile_KeepsArchiveAndSaysWhy()
    {
        var (handoff, participant, _) = Start(out var log);
        await participant.AcquireAsync(HandoffAcquireReason.FirstStart, CancellationToken.None).WaitAsync(Timeout);
        log.Info("before");
        await participant.ReleaseAsync(CancellationToken.None).WaitAsync(Timeout);
        log.Info("window");
        File.WriteAllText(LogPath, "another program's line\n");
        OwnerRecord.Write(LogPath, 777);

        await participant.AcquireAsync(HandoffAcquireReason.NotCommitted, CancellationToken.None).WaitAsync(Timeout);
        log.Info("after");
        _factory.Flush();

        Assert.Equal(["another program's line"], File.ReadAllLines(LogPath));
        Assert.Equal(["before", "window", "after"], File.ReadAllLines(ArchivePath));
        var kept = Assert.Single(_log.Named("LogFileKeptOnArchive"));
        Assert.Equal(151, kept.EventId.Id);
        Assert.Contains("created meanwhile (owner record: 777)", kept.Message, StringComparison.Ordinal);
        Assert.Contains(ArchivePath, kept.Message, StringComparison.Ordinal);
        Assert.Empty(_log.Named("LogFileTakenBack"));
        Assert.Equal(LogFileOwnership.Owning, handoff.State);

        // The next handoff commits: the name is not this process's to release, and the archive keeps its name.
        await participant.ReleaseAsync(CancellationToken.None).WaitAsync(Timeout);
        log.Info("after the next commit");
        _factory.Flush();
        Assert.Single(_log.Named("LogFileReleased"));
        Assert.Equal(["before", "window", "after", "after the next commit"], File.ReadAllLines(ArchivePath));
        Assert.Equal(["another program's line"], File.ReadAllLines(LogPath));
    }

    /// <summary>A participant before this one overran, so this one was never asked to release: nothing changes.</summary>
    [Fact]
    public async Task AcquireAsync_NotCommittedWithoutRelease_ChangesNothing()
    {
        var (handoff, participant, _) = Start(out var log);
        await participant.AcquireAsync(HandoffAcquireReason.FirstStart, CancellationToken.None).WaitAsync(Timeout);
        log.Info("one");

        await participant.AcquireAsync(HandoffAcquireReason.NotCommitted, CancellationToken.None).WaitAsync(Timeout);
        log.Info("two");
        _factory.Flush();

        Assert.Equal(["one", "two"], File.ReadAllLines(LogPath));
        Assert.Equal(LogFileOwnership.Owning, handoff.State);
        Assert.Single(_log.Named("LogFileAcquired"));
        Assert.Empty(_log.Named("LogFileTakenBack"));
        Assert.Empty(_log.Named("LogFileKeptOnArchive"));
        Assert.Empty(_log.Named("LogFilesStayArchived"));
    }

    /// <summary>After a take-back, the next handoff that commits releases the file again, to the same archive name.</summary>
    [Fact]
    public async Task ReleaseAsync_AfterTakeBack_ReleasesAgain_EveryLineInTheArchive()
    {
        var (handoff, participant, _) = Start(out var log);
        await participant.AcquireAsync(HandoffAcquireReason.FirstStart, CancellationToken.None).WaitAsync(Timeout);
        log.Info("1");
        await participant.ReleaseAsync(CancellationToken.None).WaitAsync(Timeout);
        log.Info("2");
        await participant.AcquireAsync(HandoffAcquireReason.NotCommitted, CancellationToken.None).WaitAsync(Timeout);
        log.Info("3");

        await participant.ReleaseAsync(CancellationToken.None).WaitAsync(Timeout);
        log.Info("4");
        _factory.Flush();

        Assert.Equal(LogFileOwnership.Released, handoff.State);
        Assert.False(File.Exists(LogPath));
        Assert.Equal(["1", "2", "3", "4"], File.ReadAllLines(ArchivePath));
        Assert.Equal(2, _log.Named("LogFileReleased").Count());
    }

    /// <summary>A configuration reload between the release and the take-back: the new file target goes back too.</summary>
    [Fact]
    public async Task AcquireAsync_NotCommitted_ConfigurationReloadedWhileReleased_NewTargetTakenBackToo()
    {
        var (_, participant, _) = Start(out var log);
        await participant.AcquireAsync(HandoffAcquireReason.FirstStart, CancellationToken.None).WaitAsync(Timeout);
        log.Info("1");
        await participant.ReleaseAsync(CancellationToken.None).WaitAsync(Timeout);
        log.Info("2");
        _factory.Flush();

        var reloaded = new LoggingConfiguration(_factory);
        reloaded.AddRuleForAllLevels(NewFileTarget());
        _factory.Configuration = reloaded;
        log = _factory.GetLogger("test");
        log.Info("3");

        await participant.AcquireAsync(HandoffAcquireReason.NotCommitted, CancellationToken.None).WaitAsync(Timeout);
        log.Info("4");
        _factory.Flush();

        Assert.Equal(["1", "2", "3", "4"], File.ReadAllLines(LogPath));
        Assert.False(File.Exists(ArchivePath));
    }

    [Fact]
    public void TryMove_NewNameTaken_ReturnsFalseAndChangesNothing()
    {
        string from = Path.Combine(_scope.Directory, "a");
        string to = Path.Combine(_scope.Directory, "b");
        File.WriteAllText(from, "a");
        File.WriteAllText(to, "b");

        Assert.False(NoReplaceRename.TryMove(from, to));
        Assert.Equal("a", File.ReadAllText(from));
        Assert.Equal("b", File.ReadAllText(to));
    }

    [Fact]
    public void TryMove_NewNameFree_Renames()
    {
        string from = Path.Combine(_scope.Directory, "a");
        string to = Path.Combine(_scope.Directory, "b");
        File.WriteAllText(from, "a");

        Assert.True(NoReplaceRename.TryMove(from, to));
        Assert.False(File.Exists(from));
        Assert.Equal("a", File.ReadAllText(to));
    }

    private (LogFileHandoff Handoff, LogFileHandoffParticipant Participant, FileTarget File) Start(out Logger logger, bool wrapAsync = false)
    {
        var file = NewFileTarget();
        var config = new LoggingConfiguration(_factory);
        // Block, not NLog's default Discard: a queue overflow must not drop lines behind the test's back.
        config.AddRuleForAllLevels(wrapAsync ? new AsyncTargetWrapper("async", file) { OverflowAction = AsyncTargetWrapperOverflowAction.Block } : file);
        var handoff = new LogFileHandoff(new LogFileHandoffOptions(), new FixedTime(), Pid);
        _handoffs.Add(handoff);
        handoff.Attach(_factory);
        _factory.Configuration = config;
        Assert.Equal(1, handoff.FileCount);
        logger = _factory.GetLogger("test");
        return (handoff, new LogFileHandoffParticipant(handoff, _log), file);
    }

    private FileTarget NewFileTarget() =>
        new("file") { FileName = Layout.FromString(LogPath), Layout = "${message}", LineEnding = LineEndingMode.LF };

    private sealed class FixedTime : TimeProvider
    {
        public override DateTimeOffset GetUtcNow() => new(2024, 5, 1, 10, 0, 0, TimeSpan.Zero);
    }
}
