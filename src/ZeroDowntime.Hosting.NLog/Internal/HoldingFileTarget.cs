using global::NLog;
using global::NLog.Common;
using global::NLog.Layouts;
using global::NLog.Targets;
using global::NLog.Targets.Wrappers;

namespace ZeroDowntime.Hosting.NLog.Internal;

/// <summary>
/// Sits directly above one of the app's <see cref="FileTarget"/>s. While the process does not own the file it renders
/// each event with the file target's layout and holds the line (<see cref="HeldLines"/>) instead of letting the
/// target open the file; otherwise it passes every event straight through. NLog serializes <c>Write</c> calls under
/// <see cref="Target.SyncRoot"/>; every change of state takes the same lock, so no event crosses one.
/// </summary>
internal sealed class HoldingFileTarget : WrapperTargetBase
{
    private readonly LogFileHandoff _handoff;
    private HeldLines? _held;

    public HoldingFileTarget(LogFileHandoff handoff, FileTarget file)
    {
        _handoff = handoff;
        File = file;
        OriginalFileName = file.FileName;
        Name = (file.Name ?? "file") + "_zerodowntime";
        WrappedTarget = file;
    }

    public FileTarget File { get; }

    /// <summary>The file name layout as the app configured it, before any retargeting.</summary>
    public Layout OriginalFileName { get; }

    /// <summary>The lock that orders writes and changes of state.</summary>
    public object Gate => SyncRoot;

    /// <summary>The held lines, or null when events pass through. Read and change under <see cref="Gate"/>.</summary>
    public HeldLines? Held
    {
        get => _held;
        set => _held = value;
    }

    /// <summary>The full path that the configured file name renders to now.</summary>
    public string OriginalPath() => ResolvePath(OriginalFileName.Render(LogEventInfo.CreateNullEvent()));

    /// <summary>The full path that the file target writes to now.</summary>
    public string CurrentPath() => ResolvePath(File.FileName.Render(LogEventInfo.CreateNullEvent()));

    /// <summary>Points the file target at <paramref name="path"/> (taken literally). Call under <see cref="Gate"/>.</summary>
    public void Retarget(string path)
    {
        if (!string.Equals(CurrentPath(), path, StringComparison.Ordinal))
        {
            File.FileName = Layout.FromLiteral(path);
        }
    }

    /// <summary>
    /// Gives the file target back the file name layout that the app configured (after a release that did not commit).
    /// Call under <see cref="Gate"/>.
    /// </summary>
    public void RestoreFileName()
    {
        if (!ReferenceEquals(File.FileName, OriginalFileName))
        {
            File.FileName = OriginalFileName;
        }
    }

    /// <summary>Writes what the file target has buffered. Call under <see cref="Gate"/>.</summary>
    public void FlushFile(TimeSpan timeout)
    {
        using var done = new ManualResetEventSlim();
        File.Flush(_ => done.Set());
        done.Wait(timeout);
    }

    protected override void Write(AsyncLogEventInfo logEvent)
    {
        if (_held is { } held)
        {
            try
            {
                held.Add(Render(logEvent.LogEvent));
                logEvent.Continuation(null);
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                logEvent.Continuation(ex);
            }

            return;
        }

        WrappedTarget!.WriteAsyncLogEvent(logEvent);
    }

    protected override void Write(IList<AsyncLogEventInfo> logEvents)
    {
        if (_held is null)
        {
            WrappedTarget!.WriteAsyncLogEvents(logEvents);
            return;
        }

        base.Write(logEvents);
    }

    protected override void CloseTarget()
    {
        // The configuration is being replaced or NLog shuts down while lines are held: they must not be lost.
        if (_held is { } held)
        {
            _held = null;
            _handoff.CarryOver(this, held);
        }

        base.CloseTarget();
    }

    private string Render(LogEventInfo logEvent) =>
        File.Layout.Render(logEvent) + File.LineEnding.NewLineCharacters;

    private static string ResolvePath(string rendered) =>
        Path.GetFullPath(rendered, AppContext.BaseDirectory);
}
