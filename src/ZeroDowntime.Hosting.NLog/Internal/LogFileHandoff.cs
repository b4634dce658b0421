using global::NLog;
using global::NLog.Config;
using global::NLog.Targets;

namespace ZeroDowntime.Hosting.NLog.Internal;

/// <summary>
/// The ownership state machine of the app's NLog file targets (<see cref="LogFileOwnership"/>): it wraps each
/// target (<see cref="FileTargetWalker"/>, following configuration reloads) and moves them all from holding to
/// acquire (write the held lines, then let the target open the configured name), release (flush, rename to the
/// archive name, retarget to it) or abandon (write the held lines to an archive of this process), and from released
/// back to owning when the handoff did not commit (<see cref="TakeBack"/>). The file work is
/// <see cref="LogFileMoves"/>'s; lines of wrappers that NLog closed while holding wait in
/// <see cref="HeldLineCarryOver"/>.
/// </summary>
/// <remarks>
/// One lock discipline, two levels. <c>_sync</c> guards everything here (state, wrappers, carried lines, archive
/// names): changes of ownership and (re)wraps run one at a time. Each wrapper's <see cref="HoldingFileTarget.Gate"/>
/// is NLog's own <c>Target.SyncRoot</c>, under which NLog serializes <c>Write</c> and <c>Close</c>: a wrapper's held
/// lines and its target's file name change only under it, so no event crosses a change of ownership. The order is
/// always <c>_sync</c> then a gate. NLog itself enters a target holding only its gate (writes, and closing a target
/// on a reload or at shutdown), so nothing on that path may take <c>_sync</c>: a reload closing a target while
/// <see cref="Acquire"/> holds <c>_sync</c> and waits for that gate would deadlock. That path only hands held lines
/// to <see cref="HeldLineCarryOver.Add"/>, which takes no lock.
/// </remarks>
internal sealed class LogFileHandoff : IDisposable
{
    private static readonly TimeSpan FlushTimeout = TimeSpan.FromSeconds(2);

    private readonly LogFileHandoffOptions _options;
    private readonly LogFileMoves _moves;
    private readonly int _processId;
    private readonly HeldLineCarryOver _carried = new();
    private readonly Lock _sync = new();
    private List<HoldingFileTarget> _targets = [];
    private LogFactory? _factory;
    private LogFileOwnership _state = LogFileOwnership.Holding;

    public LogFileHandoff(LogFileHandoffOptions options, TimeProvider? time = null, int? processId = null)
    {
        _options = options;
        _processId = processId ?? Environment.ProcessId;
        _moves = new LogFileMoves(new ArchiveFileNamer(options.ArchiveFileName), time ?? TimeProvider.System, _processId);
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
    public void Install(LoggingConfiguration configuration)
    {
        bool changed;
        lock (_sync)
        {
            _targets = FileTargetWalker.WrapAll(configuration, Create, out changed);
        }

        if (changed)
        {
            configuration.LogFactory.ReconfigExistingLoggers();
        }
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

            // Two wrappers of one path (two targets naming one file): the first takes the file, the next appends.
            var done = new HashSet<string>(StringComparer.Ordinal);
            foreach (var target in _targets)
            {
                lock (target.Gate)
                {
                    string path = target.CurrentPath();
                    outcomes.Add(done.Add(path) ? _moves.Acquire(path, target.Held) : LogFileMoves.WriteHeld(path, target.Held, path));
                    target.Held = null;
                }
            }

            foreach (var (path, held) in _carried.TakeAll())
            {
                outcomes.Add(done.Add(path) ? _moves.Acquire(path, held) : LogFileMoves.WriteHeld(path, held, path));
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
                    string path = target.CurrentPath();
                    if (_moves.IsKeptArchive(path))
                    {
                        // Kept on its archive when the name was taken (TakeBack): the name is not this process's to give.
                        continue;
                    }

                    target.FlushFile(FlushTimeout);
                    var outcome = _moves.Release(path);
                    target.Retarget(outcome.WrittenTo!);
                    outcomes.Add(outcome);
                }
            }

            _state = LogFileOwnership.Released;
        }

        return outcomes;
    }

    /// <summary>
    /// The release was for a handoff that never committed (no successor heard Committed, so none acquired the files):
    /// take every file back exactly as it was released. Under each target's lock: flush what went to the archive, rename
    /// the archive back to the original name (the same file, so the lines written since the release stay in it, in
    /// order), and give the target its configured file name again. A name that was created meanwhile is not replaced:
    /// that file stays on its archive (the outcome says why). Nothing happens unless this process has released.
    /// </summary>
    public IReadOnlyList<LogFileOutcome> TakeBack()
    {
        var outcomes = new List<LogFileOutcome>();
        lock (_sync)
        {
            if (_state != LogFileOwnership.Released)
            {
                return outcomes;
            }

            // Two wrappers of one path share its archive: the first moves it, the next follows the outcome.
            var done = new Dictionary<string, LogFileOutcome>(StringComparer.Ordinal);
            foreach (var target in _targets)
            {
                lock (target.Gate)
                {
                    string archive = target.CurrentPath();
                    if (_moves.ReleasedFrom(archive) is null && !done.ContainsKey(archive))
                    {
                        continue; // not released by this process (kept on its archive before)
                    }

                    target.FlushFile(FlushTimeout);
                    if (!done.TryGetValue(archive, out var outcome))
                    {
                        outcome = _moves.TakeBack(archive);
                        done[archive] = outcome;
                        outcomes.Add(outcome);
                    }

                    if (outcome.TakenBackFrom is not null)
                    {
                        target.RestoreFileName();
                    }
                }
            }

            _state = LogFileOwnership.Owning;
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

    /// <summary>
    /// A wrapper is closed while it holds lines (configuration reload, NLog shutdown): keep them. NLog calls this
    /// under the wrapper's gate: it must not take <c>_sync</c>.
    /// </summary>
    internal void CarryOver(HoldingFileTarget target, HeldLines held) => _carried.Add(target.OriginalPath(), held);

    private List<LogFileOutcome> AbandonLocked()
    {
        var outcomes = new List<LogFileOutcome>();
        foreach (var target in _targets)
        {
            lock (target.Gate)
            {
                string path = target.CurrentPath();
                string archive = _moves.ArchiveFor(path);
                outcomes.Add(LogFileMoves.WriteHeld(path, target.Held, archive));
                target.Held = null;
                target.Retarget(archive);
            }
        }

        foreach (var (path, held) in _carried.TakeAll())
        {
            outcomes.Add(LogFileMoves.WriteHeld(path, held, _moves.ArchiveFor(path)));
        }

        _state = LogFileOwnership.Abandoned;
        return outcomes;
    }

    /// <summary>A wrapper for a file target found by a (re)wrap, in the state of the others. Under <c>_sync</c>.</summary>
    private HoldingFileTarget Create(FileTarget file)
    {
        var wrapper = new HoldingFileTarget(this, file);
        string path = wrapper.OriginalPath();
        switch (_state)
        {
            case LogFileOwnership.Holding:
                wrapper.Held = _carried.Take(path) ?? new HeldLines(
                    _options.MaxHeldLines,
                    Path.Combine(Path.GetDirectoryName(path) ?? ".", $".{Path.GetFileName(path)}.{_processId}.held"),
                    file.Encoding);
                break;
            case LogFileOwnership.Released:
                wrapper.Retarget(_moves.ReleasedArchiveFor(path));
                break;
            case LogFileOwnership.Abandoned:
                wrapper.Retarget(_moves.ArchiveFor(path));
                break;
            case LogFileOwnership.Owning when _moves.KeptArchiveFor(path) is { } kept:
                wrapper.Retarget(kept);
                break;
        }

        return wrapper;
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
