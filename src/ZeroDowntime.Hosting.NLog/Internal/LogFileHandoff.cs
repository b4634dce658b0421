using global::NLog;
using global::NLog.Config;
using global::NLog.Targets;
using global::NLog.Targets.Wrappers;

namespace ZeroDowntime.Hosting.NLog.Internal;

/// <summary>Who may write to the configured log file names.</summary>
internal enum LogFileOwnership
{
    /// <summary>Not yet: lines are held (start-up, and a successor until its predecessor released the files).</summary>
    Holding,

    /// <summary>This process writes the configured file names.</summary>
    Owning,

    /// <summary>This process renamed its files at the commit point and writes to the archives.</summary>
    Released,

    /// <summary>This process never owned the files (its handoff failed); it wrote its lines to archives of its own.</summary>
    Abandoned,
}

/// <summary>What happened to one log file at a change of ownership.</summary>
internal sealed record LogFileOutcome(string Path, string? WrittenTo, int HeldLines, int SpilledLines, TimeSpan HeldFor)
{
    /// <summary>The archive a dead owner's file was moved to before this process took the name.</summary>
    public string? OrphanArchivedTo { get; init; }

    /// <summary>The pid recorded for that file, or "unknown".</summary>
    public string? OrphanOwner { get; init; }

    /// <summary>Why this file could not be handled, if it could not.</summary>
    public string? Error { get; init; }
}

/// <summary>
/// Finds the app's NLog <see cref="FileTarget"/>s (in every rule, through wrappers and compound targets), puts a
/// <see cref="HoldingFileTarget"/> above each, and moves them through <see cref="LogFileOwnership"/>: acquire
/// (write the held lines, then let the target open the configured name), release (flush, rename to the archive name,
/// retarget to it) or abandon (write the held lines to an archive of this process). Follows configuration reloads.
/// </summary>
internal sealed class LogFileHandoff : IDisposable
{
    private static readonly TimeSpan FlushTimeout = TimeSpan.FromSeconds(2);

    private readonly LogFileHandoffOptions _options;
    private readonly ArchiveFileNamer _namer;
    private readonly TimeProvider _time;
    private readonly int _processId;
    private readonly Lock _sync = new();
    private readonly Lock _carryLock = new();
    private readonly Dictionary<string, string> _archives = new(StringComparer.Ordinal);
    private readonly List<(string Path, HeldLines Held)> _carried = [];
    private List<HoldingFileTarget> _targets = [];
    private LogFactory? _factory;
    private LogFileOwnership _state = LogFileOwnership.Holding;
    private int _maxHeld;
    private TimeSpan _longestHold;

    public LogFileHandoff(LogFileHandoffOptions options, TimeProvider? time = null, int? processId = null)
    {
        _options = options;
        _namer = new ArchiveFileNamer(options.ArchiveFileName);
        _time = time ?? TimeProvider.System;
        _processId = processId ?? Environment.ProcessId;
    }

    public LogFileOwnership State
    {
        get
        {
            lock (_sync)
            {
                return _state;
            }
        }
    }

    /// <summary>The log files found in the active configuration.</summary>
    public int FileCount
    {
        get
        {
            lock (_sync)
            {
                return _targets.Count;
            }
        }
    }

    /// <summary>The most lines held for one file, and the longest hold, over this process's life.</summary>
    public (int MaxHeldLines, TimeSpan LongestHold) Statistics
    {
        get
        {
            lock (_sync)
            {
                return (_maxHeld, _longestHold);
            }
        }
    }

    /// <summary>
    /// Follows <paramref name="factory"/>'s configuration: every configuration it activates from now on gets its
    /// file targets wrapped. Does not load a configuration (reading <c>LogFactory.Configuration</c> would).
    /// </summary>
    public void Attach(LogFactory factory)
    {
        lock (_sync)
        {
            if (_factory is not null)
            {
                return;
            }

            _factory = factory;
        }

        factory.ConfigurationChanged += OnConfigurationChanged;
        AppDomain.CurrentDomain.ProcessExit += OnProcessExit;
    }

    /// <summary>Wraps the file targets of the configuration that is active now, if that was missed.</summary>
    public void InstallActive()
    {
        if (_factory?.Configuration is { } configuration)
        {
            Install(configuration);
        }
    }

    /// <summary>Wraps every file target of <paramref name="configuration"/> that is not wrapped yet; idempotent.</summary>
    public int Install(LoggingConfiguration configuration)
    {
        var wrappers = new Dictionary<FileTarget, HoldingFileTarget>(ReferenceEqualityComparer.Instance);
        bool changed = false;
        lock (_sync)
        {
            foreach (var rule in AllRules(configuration.LoggingRules))
            {
                for (int i = 0; i < rule.Targets.Count; i++)
                {
                    var wrapped = Wrap(rule.Targets[i], wrappers, ref changed);
                    if (!ReferenceEquals(wrapped, rule.Targets[i]))
                    {
                        rule.Targets[i] = wrapped;
                    }
                }
            }

            _targets = [.. wrappers.Values];
        }

        if (changed)
        {
            configuration.LogFactory.ReconfigExistingLoggers();
        }

        return wrappers.Count;
    }

    /// <summary>This process now owns the configured file names: write what was held, then write there.</summary>
    public IReadOnlyList<LogFileOutcome> Acquire()
    {
        var outcomes = new List<LogFileOutcome>();
        lock (_sync)
        {
            if (_state != LogFileOwnership.Holding)
            {
                return outcomes;
            }

            var done = new HashSet<string>(StringComparer.Ordinal);
            foreach (var target in _targets)
            {
                lock (target.Gate)
                {
                    string path = target.CurrentPath();
                    outcomes.Add(done.Add(path) ? AcquireOne(path, target.Held) : WriteHeld(path, target.Held, path));
                    target.Held = null;
                }
            }

            foreach (var (path, held) in TakeCarried())
            {
                outcomes.Add(done.Add(path) ? AcquireOne(path, held) : WriteHeld(path, held, path));
            }

            _state = LogFileOwnership.Owning;
        }

        return outcomes;
    }

    /// <summary>
    /// The commit point of a handoff: flush, rename every file to its archive name and write the remaining lines there.
    /// A process still holding (it never owned its files) abandons instead.
    /// </summary>
    public IReadOnlyList<LogFileOutcome> Release()
    {
        var outcomes = new List<LogFileOutcome>();
        lock (_sync)
        {
            if (_state == LogFileOwnership.Holding)
            {
                return AbandonLocked();
            }

            if (_state != LogFileOwnership.Owning)
            {
                return outcomes;
            }

            foreach (var target in _targets)
            {
                lock (target.Gate)
                {
                    target.FlushFile(FlushTimeout);
                    string path = target.CurrentPath();
                    string archive = ArchiveFor(path);
                    string? error = null;
                    try
                    {
                        if (File.Exists(path))
                        {
                            File.Move(path, archive);
                        }

                        OwnerRecord.Delete(path, _processId);
                    }
                    catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
                    {
                        error = ex.Message;
                    }

                    target.Retarget(archive);
                    outcomes.Add(new LogFileOutcome(path, archive, 0, 0, TimeSpan.Zero) { Error = error });
                }
            }

            _state = LogFileOwnership.Released;
        }

        return outcomes;
    }

    /// <summary>This process will never own the files: write the held lines to archives of its own, and later lines too.</summary>
    public IReadOnlyList<LogFileOutcome> Abandon()
    {
        lock (_sync)
        {
            return _state == LogFileOwnership.Holding ? AbandonLocked() : [];
        }
    }

    public void Dispose()
    {
        AppDomain.CurrentDomain.ProcessExit -= OnProcessExit;
        if (_factory is { } factory)
        {
            factory.ConfigurationChanged -= OnConfigurationChanged;
        }
    }

    /// <summary>A wrapper is closed while it holds lines (configuration reload, NLog shutdown): keep them.</summary>
    internal void CarryOver(HoldingFileTarget target, HeldLines held)
    {
        string path = target.OriginalPath();
        lock (_carryLock)
        {
            _carried.Add((path, held));
        }
    }

    private List<LogFileOutcome> AbandonLocked()
    {
        var outcomes = new List<LogFileOutcome>();
        foreach (var target in _targets)
        {
            lock (target.Gate)
            {
                string path = target.CurrentPath();
                string archive = ArchiveFor(path);
                outcomes.Add(WriteHeld(path, target.Held, archive));
                target.Held = null;
                target.Retarget(archive);
            }
        }

        foreach (var (path, held) in TakeCarried())
        {
            outcomes.Add(WriteHeld(path, held, ArchiveFor(path)));
        }

        _state = LogFileOwnership.Abandoned;
        return outcomes;
    }

    private LogFileOutcome AcquireOne(string path, HeldLines? held)
    {
        string? orphanTo = null;
        string? orphanOwner = null;
        try
        {
            if (File.Exists(path))
            {
                // Nobody else writes here any more (no predecessor, or it vanished, or it released): whatever is
                // here was left by a process that did not rename it. Keep one process per file.
                orphanOwner = OwnerRecord.Read(path);
                orphanTo = _namer.For(path, orphanOwner, _time.GetUtcNow().UtcDateTime);
                File.Move(path, orphanTo);
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return WriteHeld(path, held, path) with { Error = $"could not move the existing file away: {ex.Message}" };
        }

        var outcome = WriteHeld(path, held, path) with { OrphanArchivedTo = orphanTo, OrphanOwner = orphanOwner };
        OwnerRecord.Write(path, _processId);
        return outcome;
    }

    private LogFileOutcome WriteHeld(string path, HeldLines? held, string destination)
    {
        if (held is null)
        {
            return new LogFileOutcome(path, destination, 0, 0, TimeSpan.Zero);
        }

        int count = held.Count;
        int spilled = held.Spilled;
        var age = held.Age;
        _maxHeld = Math.Max(_maxHeld, count);
        _longestHold = age > _longestHold ? age : _longestHold;
        string? error = null;
        try
        {
            if (count > 0)
            {
                held.WriteTo(destination);
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            error = $"could not write {count} held line(s): {ex.Message}";
        }
        finally
        {
            held.Dispose();
        }

        return new LogFileOutcome(path, destination, count, spilled, age) { Error = error };
    }

    private string ArchiveFor(string path)
    {
        if (!_archives.TryGetValue(path, out string? archive))
        {
            archive = _namer.For(path, _processId.ToString(System.Globalization.CultureInfo.InvariantCulture), _time.GetUtcNow().UtcDateTime);
            _archives[path] = archive;
        }

        return archive;
    }

    private List<(string Path, HeldLines Held)> TakeCarried()
    {
        lock (_carryLock)
        {
            var carried = _carried.ToList();
            _carried.Clear();
            return carried;
        }
    }

    private HeldLines? TakeCarried(string path)
    {
        lock (_carryLock)
        {
            int index = _carried.FindIndex(c => string.Equals(c.Path, path, StringComparison.Ordinal));
            if (index < 0)
            {
                return null;
            }

            var held = _carried[index].Held;
            _carried.RemoveAt(index);
            return held;
        }
    }

    private Target Wrap(Target target, Dictionary<FileTarget, HoldingFileTarget> wrappers, ref bool changed)
    {
        switch (target)
        {
            case HoldingFileTarget existing:
                wrappers[existing.File] = existing;
                return existing;
            case FileTarget file:
                if (!wrappers.TryGetValue(file, out var wrapper))
                {
                    wrapper = Create(file);
                    wrappers[file] = wrapper;
                }

                changed = true;
                return wrapper;
            case WrapperTargetBase outer when outer.WrappedTarget is { } inner:
                var replacement = Wrap(inner, wrappers, ref changed);
                if (!ReferenceEquals(replacement, inner))
                {
                    outer.WrappedTarget = replacement;
                }

                return outer;
            case CompoundTargetBase compound:
                for (int i = 0; i < compound.Targets.Count; i++)
                {
                    var member = Wrap(compound.Targets[i], wrappers, ref changed);
                    if (!ReferenceEquals(member, compound.Targets[i]))
                    {
                        compound.Targets[i] = member;
                    }
                }

                return compound;
            default:
                return target;
        }
    }

    private HoldingFileTarget Create(FileTarget file)
    {
        var wrapper = new HoldingFileTarget(this, file);
        string path = wrapper.OriginalPath();
        switch (_state)
        {
            case LogFileOwnership.Holding:
                wrapper.Held = TakeCarried(path) ?? new HeldLines(
                    _options.MaxHeldLines,
                    Path.Combine(Path.GetDirectoryName(path) ?? ".", $".{Path.GetFileName(path)}.{_processId}.held"),
                    file.Encoding);
                break;
            case LogFileOwnership.Released or LogFileOwnership.Abandoned:
                wrapper.Retarget(ArchiveFor(path));
                break;
        }

        return wrapper;
    }

    private static IEnumerable<LoggingRule> AllRules(IEnumerable<LoggingRule> rules)
    {
        foreach (var rule in rules)
        {
            yield return rule;
#pragma warning disable CS0618 // Child rules are obsolete in NLog 5.3+, yet still honoured: their file targets change hands too.
            var children = rule.ChildRules;
#pragma warning restore CS0618
            foreach (var child in AllRules(children))
            {
                yield return child;
            }
        }
    }

    private void OnConfigurationChanged(object? sender, LoggingConfigurationChangedEventArgs e)
    {
        if (e.ActivatedConfiguration is { } configuration)
        {
            Install(configuration);
        }
    }

    private void OnProcessExit(object? sender, EventArgs e) => Abandon();
}
