using System.Globalization;

namespace ZeroDowntime.Hosting.NLog.Internal;

/// <summary>
/// The file work of a change of ownership, one log file at a time: move a dead owner's file away, write held lines,
/// rename a released file to its archive (and back, when the handoff did not commit), keep the owner record. A failed
/// rename or write does not throw: it is reported in the outcome (event 67) and the other files go on. Called under
/// the handoff's lock, which also guards the names remembered here (one archive per path for this process's life, and
/// which archives hold a released file).
/// </summary>
internal sealed class LogFileMoves(ArchiveFileNamer namer, TimeProvider time, int processId)
{
    private readonly Dictionary<string, string> _archives = new(StringComparer.Ordinal);

    /// <summary>Archive -> the name it was released from, while this process writes the archive.</summary>
    private readonly Dictionary<string, string> _released = new(StringComparer.Ordinal);

    /// <summary>Name -> the archive this process kept writing because the name was taken when it tried to take it back.</summary>
    private readonly Dictionary<string, string> _kept = new(StringComparer.Ordinal);

    /// <summary>The archive of this process for <paramref name="path"/>: named at first use, the same ever after.</summary>
    public string ArchiveFor(string path)
    {
        if (!_archives.TryGetValue(path, out string? archive))
        {
            archive = namer.For(path, processId.ToString(CultureInfo.InvariantCulture), time.GetUtcNow().UtcDateTime);
            _archives[path] = archive;
        }

        return archive;
    }

    /// <summary>
    /// Takes <paramref name="path"/>: moves whatever is there to the archive of the process that left it, writes the
    /// held lines, and records this process as the owner.
    /// </summary>
    public LogFileOutcome Acquire(string path, HeldLines? held)
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
                orphanTo = namer.For(path, orphanOwner, time.GetUtcNow().UtcDateTime);
                File.Move(path, orphanTo);
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return WriteHeld(path, held, path) with { Error = $"could not move the existing file away: {ex.Message}" };
        }

        var outcome = WriteHeld(path, held, path) with { OrphanArchivedTo = orphanTo, OrphanOwner = orphanOwner };
        OwnerRecord.Write(path, processId);
        return outcome;
    }

    /// <summary>Renames <paramref name="path"/> to this process's archive and drops the owner record; the outcome names the archive.</summary>
    public LogFileOutcome Release(string path)
    {
        string archive = ArchiveFor(path);
        string? error = null;
        try
        {
            if (File.Exists(path))
            {
                File.Move(path, archive);
            }

            OwnerRecord.Delete(path, processId);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            error = ex.Message;
        }

        _released[archive] = path;
        return new LogFileOutcome(path, archive, 0, 0, TimeSpan.Zero) { Error = error };
    }

    /// <summary>
    /// The archive where a file target of <paramref name="path"/> that appears after the release (a configuration
    /// reload) writes: released like the others, so that a take-back moves it back too.
    /// </summary>
    public string ReleasedArchiveFor(string path)
    {
        string archive = ArchiveFor(path);
        if (!_kept.ContainsKey(path))
        {
            _released[archive] = path;
        }

        return archive;
    }

    /// <summary>The name that <paramref name="archive"/> was released from, or null when it is no released file of this process.</summary>
    public string? ReleasedFrom(string archive) => _released.GetValueOrDefault(archive);

    /// <summary>
    /// The handoff that <paramref name="archive"/> was released for never committed: renames it back to the name it was
    /// released from, unless that name was created meanwhile (then the archive stays, and the outcome says why), and
    /// records this process as the owner again. The outcome's <see cref="LogFileOutcome.WrittenTo"/> is where the file
    /// is now.
    /// </summary>
    public LogFileOutcome TakeBack(string archive)
    {
        string path = _released[archive];
        try
        {
            // The rename refuses to replace. No successor ever heard Committed, so none acquired the name: a file
            // there now is another program's or an operator's, and its lines must not be lost.
            // Without an archive (nothing written since a release that found no file, or whose rename failed) the name
            // is free when nothing is there or the file there is still this process's.
            bool free = File.Exists(archive)
                ? NoReplaceRename.TryMove(archive, path)
                : !File.Exists(path) || OwnerRecord.Read(path) == processId.ToString(CultureInfo.InvariantCulture);
            if (!free)
            {
                return Kept(path, archive, $"{path} was created meanwhile (owner record: {OwnerRecord.Read(path)}), and it is not this process's to replace");
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return Kept(path, archive, "the rename back failed") with { Error = $"could not rename {archive} back: {ex.Message}" };
        }

        _released.Remove(archive);
        OwnerRecord.Write(path, processId);
        return new LogFileOutcome(path, path, 0, 0, TimeSpan.Zero) { TakenBackFrom = archive };
    }

    /// <summary>
    /// The archive that this process kept writing for <paramref name="path"/> when the name was taken (see
    /// <see cref="TakeBack"/>), or null.
    /// </summary>
    public string? KeptArchiveFor(string path) => _kept.GetValueOrDefault(path);

    /// <summary>Whether <paramref name="currentPath"/> is an archive that this process keeps for good.</summary>
    public bool IsKeptArchive(string currentPath) => _kept.ContainsValue(currentPath);

    /// <summary>
    /// The file stays on its archive for good (this process writes there for the rest of its life): the name is not
    /// this process's, so no later handoff releases it.
    /// </summary>
    private LogFileOutcome Kept(string path, string archive, string because)
    {
        _released.Remove(archive);
        _kept[path] = archive;
        return new LogFileOutcome(path, archive, 0, 0, TimeSpan.Zero) { KeptOnArchiveBecause = because };
    }

    /// <summary>Appends the held lines of <paramref name="path"/> to <paramref name="destination"/> and forgets them.</summary>
    public static LogFileOutcome WriteHeld(string path, HeldLines? held, string destination)
    {
        if (held is null)
        {
            return new LogFileOutcome(path, destination, 0, 0, TimeSpan.Zero);
        }

        int count = held.Count;
        int spilled = held.Spilled;
        var age = held.Age;
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
}
