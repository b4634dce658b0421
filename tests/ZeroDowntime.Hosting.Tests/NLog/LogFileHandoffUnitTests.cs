using System.Text;
using NLog;
using NLog.Config;
using NLog.Targets;
using NLog.Targets.Wrappers;
using ZeroDowntime.Hosting.NLog;
using ZeroDowntime.Hosting.NLog.Internal;
using ZeroDowntime.Hosting.Tests.Infrastructure;

namespace ZeroDowntime.Hosting.Tests.NLog;

/// <summary>The NLog integration in one process: discovery, hold, acquire, release, abandon, archive names.</summary>
public sealed class LogFileHandoffUnitTests : IDisposable
{
    private const int Pid = 4242;
    private static readonly DateTime Now = new(2024, 5, 1, 10, 0, 0, DateTimeKind.Utc);
    private readonly TestScope _scope = new();
    private readonly LogFactory _factory = new();
    private readonly List<LogFileHandoff> _handoffs = [];

    private string LogPath => Path.Combine(_scope.Directory, "app.log");

    /// <summary>The side file for held lines past MaxHeldLines, as docs/logging.md names it.</summary>
    private string SidePath => Path.Combine(_scope.Directory, $".app.log.{Pid}.held");

    public void Dispose()
    {
        _handoffs.ForEach(h => h.Dispose());
        _factory.Dispose();
        _scope.Dispose();
    }

    [Fact]
    public void For_DefaultPattern_NamesTimeAndPid()
    {
        var namer = new ArchiveFileNamer(LogFileHandoffOptions.DefaultArchiveFileName);
        Assert.Equal(Path.Combine(_scope.Directory, "app.2024-05-01T10-00-00.4242.log"), namer.For(LogPath, "4242", Now));
    }

    [Fact]
    public void For_NameTaken_InsertsCounterBeforeExtension()
    {
        var namer = new ArchiveFileNamer("{name}-{pid}{ext}");
        File.WriteAllText(Path.Combine(_scope.Directory, "app-1.log"), "x");
        Assert.Equal(Path.Combine(_scope.Directory, "app-1.1.log"), namer.For(LogPath, "1", Now));
    }

    [Fact]
    public void Validate_BadPattern_ReportsEveryProblem()
    {
        var errors = ArchiveFileNamer.Validate("logs/{name}.{when}{ext}");
        Assert.Equal(3, errors.Count);
        Assert.Contains(errors, e => e.Contains("{pid}", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Contains("without directories", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Contains("{when}", StringComparison.Ordinal));
        Assert.Empty(ArchiveFileNamer.Validate(LogFileHandoffOptions.DefaultArchiveFileName));
    }

    [Fact]
    public void WriteTo_PastTheBound_SpillsAndKeepsOrder()
    {
        string spill = Path.Combine(_scope.Directory, ".app.log.held");
        using var held = new HeldLines(2, spill, new UTF8Encoding(false));
        for (int i = 1; i <= 5; i++)
        {
            held.Add($"line {i}\n");
        }

        Assert.Equal(5, held.Count);
        Assert.Equal(3, held.Spilled);
        Assert.True(File.Exists(spill));
        held.WriteTo(LogPath);
        Assert.Equal(["line 1", "line 2", "line 3", "line 4", "line 5"], File.ReadAllLines(LogPath));
        Assert.False(File.Exists(spill), "the side file is removed once written");
    }

    [Fact]
    public void Acquire_AfterHolding_WritesHeldLinesFirstThenLive()
    {
        var handoff = Start(out var log, wrapAsync: true);
        log.Info("held 1");
        log.Info("held 2");
        _factory.Flush();
        Assert.False(File.Exists(LogPath), "nothing may reach the file before the process owns it");

        var outcome = Assert.Single(handoff.Acquire());
        log.Info("live 3");
        _factory.Flush();

        Assert.Equal(2, outcome.HeldLines);
        Assert.Equal(["held 1", "held 2", "live 3"], File.ReadAllLines(LogPath));
        Assert.Equal(LogFileOwnership.Owning, handoff.State);
    }

    [Fact]
    public async Task Release_RenamesAndWritesTheRestToTheArchive_OriginalNotRecreated()
    {
        var handoff = Start(out var log);
        handoff.Acquire();
        log.Info("before");

        var outcome = Assert.Single(handoff.Release());
        string archive = Path.Combine(_scope.Directory, "app.2024-05-01T10-00-00.4242.log");
        Assert.Equal(archive, outcome.WrittenTo);

        // NLog checks about once a second whether its file still exists and recreates it: write for longer than that.
        var until = DateTime.UtcNow.AddMilliseconds(1500);
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(100));
        while (DateTime.UtcNow < until && await timer.WaitForNextTickAsync())
        {
            log.Info("after");
        }

        _factory.Flush();
        Assert.False(File.Exists(LogPath), "the original name belongs to the successor now");
        var lines = File.ReadAllLines(archive);
        Assert.Equal("before", lines[0]);
        Assert.True(lines.Length > 5 && lines.Skip(1).All(l => l == "after"), string.Join("|", lines));
        Assert.False(File.Exists(OwnerRecord.PathFor(LogPath)), "a released file has no owner record");
    }

    [Fact]
    public void Abandon_WhileHolding_WritesHeldLinesToOwnArchiveAndLaterLinesToo()
    {
        var handoff = Start(out var log);
        log.Info("held");
        var outcome = Assert.Single(handoff.Abandon());
        log.Error("crash");
        _factory.Flush();

        Assert.Equal(1, outcome.HeldLines);
        Assert.False(File.Exists(LogPath));
        Assert.Equal(["held", "crash"], File.ReadAllLines(outcome.WrittenTo!));
        Assert.Equal(LogFileOwnership.Abandoned, handoff.State);
    }

    [Fact]
    public void Acquire_FileLeftByDeadOwner_ArchivesItUnderTheRecordedPid()
    {
        File.WriteAllText(LogPath, "old line\n");
        OwnerRecord.Write(LogPath, 777);
        var handoff = Start(out var log);

        var outcome = Assert.Single(handoff.Acquire());
        log.Info("new line");
        _factory.Flush();

        Assert.Equal("777", outcome.OrphanOwner);
        Assert.Equal(Path.Combine(_scope.Directory, "app.2024-05-01T10-00-00.777.log"), outcome.OrphanArchivedTo);
        Assert.Equal(["old line"], File.ReadAllLines(outcome.OrphanArchivedTo!));
        Assert.Equal(["new line"], File.ReadAllLines(LogPath));
        Assert.Equal("4242", OwnerRecord.Read(LogPath));
    }

    [Fact]
    public void Install_ConsoleOnlyConfiguration_ChangesNothing()
    {
        var memory = new MemoryTarget("memory") { Layout = "${message}" };
        var config = new LoggingConfiguration(_factory);
        config.AddRuleForAllLevels(memory);
        var handoff = new LogFileHandoff(new LogFileHandoffOptions(), new FixedTime(), Pid);
        handoff.Attach(_factory);
        _factory.Configuration = config;

        _factory.GetLogger("test").Info("straight through");
        Assert.Equal(0, handoff.FileCount);
        Assert.Same(memory, config.LoggingRules[0].Targets[0]);
        Assert.Equal(["straight through"], memory.Logs);
        Assert.Empty(handoff.Acquire());
        handoff.Dispose();
    }

    [Fact]
    public void Acquire_MaxHeldLinesZero_EveryLineThroughTheSideFile_InOrder_SideFileRemoved()
    {
        var handoff = Start(out var log, options: new LogFileHandoffOptions { MaxHeldLines = 0 });
        for (int i = 1; i <= 5; i++)
        {
            log.Info($"held {i}");
        }

        _factory.Flush();
        Assert.True(File.Exists(SidePath), "with MaxHeldLines=0 the first held line already goes to the side file");
        var outcome = Assert.Single(handoff.Acquire());
        log.Info("live 6");
        _factory.Flush();

        Assert.Equal(5, outcome.HeldLines);
        Assert.Equal(5, outcome.SpilledLines);
        Assert.Equal(["held 1", "held 2", "held 3", "held 4", "held 5", "live 6"], File.ReadAllLines(LogPath));
        Assert.False(File.Exists(SidePath), "the side file is removed once written");
    }

    [Fact]
    public void Acquire_SideFileCannotBeWritten_LinesStayInMemory_NoneLostOrReordered()
    {
        // A directory where the side file would go: creating the file fails (for root too, unlike a mode).
        Directory.CreateDirectory(SidePath);
        var handoff = Start(out var log, options: new LogFileHandoffOptions { MaxHeldLines = 2 });
        for (int i = 1; i <= 6; i++)
        {
            log.Info($"held {i}");
        }

        _factory.Flush();
        var outcome = Assert.Single(handoff.Acquire());
        log.Info("live 7");
        _factory.Flush();

        Assert.Equal(6, outcome.HeldLines);
        Assert.Equal(0, outcome.SpilledLines);
        Assert.Equal(["held 1", "held 2", "held 3", "held 4", "held 5", "held 6", "live 7"], File.ReadAllLines(LogPath));
    }

    [Fact]
    public void Acquire_ConfigurationReloadedWhileHolding_HeldLinesKeptAndNewTargetHoldsToo()
    {
        var handoff = Start(out var log, options: new LogFileHandoffOptions { MaxHeldLines = 2 });
        log.Info("held 1");
        log.Info("held 2");
        log.Info("held 3"); // past the bound: in the side file
        _factory.Flush();

        // A reload (as NLog does on a changed nlog.config or appsettings): a new target for the same file.
        var file = new FileTarget("file") { FileName = LogPath, Layout = "${message}", LineEnding = LineEndingMode.LF };
        var reloaded = new LoggingConfiguration(_factory);
        reloaded.AddRuleForAllLevels(file);
        _factory.Configuration = reloaded;
        log = _factory.GetLogger("test");
        log.Info("held 4");
        _factory.Flush();
        Assert.False(File.Exists(LogPath), "nothing may reach the file before the process owns it, reload or not");

        handoff.Acquire();
        log.Info("live 5");
        _factory.Flush();
        Assert.Equal(["held 1", "held 2", "held 3", "held 4", "live 5"], File.ReadAllLines(LogPath));
        Assert.False(File.Exists(SidePath));
    }

    private LogFileHandoff Start(out Logger logger, bool wrapAsync = false, LogFileHandoffOptions? options = null)
    {
        var file = new FileTarget("file") { FileName = LogPath, Layout = "${message}", LineEnding = LineEndingMode.LF };
        var config = new LoggingConfiguration(_factory);
        config.AddRuleForAllLevels(wrapAsync ? new AsyncTargetWrapper("async", file) : file);
        var handoff = new LogFileHandoff(options ?? new LogFileHandoffOptions(), new FixedTime(), Pid);
        _handoffs.Add(handoff);
        handoff.Attach(_factory);
        _factory.Configuration = config;
        Assert.Equal(1, handoff.FileCount);
        logger = _factory.GetLogger("test");
        return handoff;
    }

    private sealed class FixedTime : TimeProvider
    {
        public override DateTimeOffset GetUtcNow() => Now;
    }
}
