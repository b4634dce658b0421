using System.Globalization;

namespace ZeroDowntime.Hosting.NLog.Internal;

/// <summary>
/// The file work of a change of ownership, one log file at a time: move a dead owner's file away, write held lines,
/// rename a released file to its archive, keep the owner record. A failed rename or write does not throw: it is
/// reported in the outcome (event 67) and the other files go on. Called under the handoff's lock, which also guards
/// the archive names remembered here (one archive per path for this process's life).
/// </summary>
internal sealed class LogFileMoves(ArchiveFileNamer namer, TimeProvider time, int processId)
{
    private readonly Dictionary<string, string> _archives = new(StringComparer.Ordinal);

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

        return new LogFileOutcome(path, archive, 0, 0, TimeSpan.Zero) { Error = error };
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
