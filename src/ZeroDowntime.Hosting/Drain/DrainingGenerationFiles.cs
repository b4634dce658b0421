using System.Globalization;
using ZeroDowntime.Hosting.Diagnostics;
using ZeroDowntime.Hosting.Interop;

namespace ZeroDowntime.Hosting.Drain;

/// <summary>One generation that drains after its handoff, as its state file beside the handoff socket says.</summary>
/// <param name="ProcessId">The draining process.</param>
/// <param name="Generation">Its generation (1 at a first start, plus 1 per handoff).</param>
/// <param name="StartedAtUnixMilliseconds">When that process started: with the pid, tells it from a later process that reuses the pid.</param>
/// <param name="OpenConnections">Connections it still held when it last wrote the file.</param>
/// <param name="DrainDeadlineUnixMilliseconds">When its drain aborts what is left (its start plus DrainTimeout).</param>
internal sealed record DrainingGeneration(int ProcessId, long Generation, long StartedAtUnixMilliseconds, int OpenConnections, long DrainDeadlineUnixMilliseconds);

/// <summary>
/// The state files of the draining generations of one handoff socket: <c>{socket path}.draining.{pid}</c>, one line,
/// written (to a temporary name, then renamed) by each process while it drains after a handoff and removed when its
/// drain ends. Since issue 18 a released predecessor has no connection to anyone, so these files are how the draining
/// processes count each other (<see cref="ZeroDowntimeOptions.MaxDrainingGenerations"/>) and how
/// <c>zerodowntime status</c> lists them, without a change to the protocol. A file is believed only when it belongs to
/// this user (the directory may be a sticky shared one such as <c>/tmp</c>) and its pid still runs the process that
/// started at the time it names; a crashed process's file is thus ignored, and removed by the next draining process.
/// </summary>
internal static class DrainingGenerationFiles
{
    private const string Marker = ".draining.";
    private const string Format = "zerodowntime-draining-v1";
    private const string TemporarySuffix = ".tmp";

    /// <summary>A process start time read twice differs by the clock-tick rounding of /proc; a reused pid differs by far more.</summary>
    private static readonly long StartTimeToleranceMilliseconds = 1000;

    public static string PathFor(string socketPath, int processId) =>
        socketPath + Marker + processId.ToString(CultureInfo.InvariantCulture);

    /// <summary>Writes (or rewrites) <paramref name="generation"/>'s file, atomically, readable by this user only.</summary>
    /// <exception cref="IOException">The directory cannot be written.</exception>
    /// <exception cref="UnauthorizedAccessException">The directory cannot be written.</exception>
    public static void Write(string socketPath, DrainingGeneration generation)
    {
        string path = PathFor(socketPath, generation.ProcessId);
        string temporary = path + TemporarySuffix;
        string line = string.Join(' ', Format,
            generation.ProcessId.ToString(CultureInfo.InvariantCulture),
            generation.Generation.ToString(CultureInfo.InvariantCulture),
            generation.StartedAtUnixMilliseconds.ToString(CultureInfo.InvariantCulture),
            generation.OpenConnections.ToString(CultureInfo.InvariantCulture),
            generation.DrainDeadlineUnixMilliseconds.ToString(CultureInfo.InvariantCulture));
        var options = new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        }

        using (var writer = new StreamWriter(temporary, System.Text.Encoding.UTF8, options))
        {
            writer.Write(line + "\n");
        }

        File.Move(temporary, path, overwrite: true);
    }

    /// <summary>Removes this process's file (nothing when it is gone already).</summary>
    public static void Remove(string socketPath, int processId)
    {
        try
        {
            File.Delete(PathFor(socketPath, processId));
            File.Delete(PathFor(socketPath, processId) + TemporarySuffix);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // Left behind, it is ignored by everyone once this process has exited (pid and start time).
        }
    }

    /// <summary>
    /// The generations that drain now, oldest first: files of this user whose process runs. <paramref name="isLive"/>
    /// decides the latter (default: the pid runs and started when the file says); <paramref name="removeStale"/>
    /// removes the files of processes that are gone.
    /// </summary>
    public static IReadOnlyList<DrainingGeneration> ReadAll(string socketPath, Func<DrainingGeneration, bool>? isLive = null, bool removeStale = false)
    {
        string? directory = Path.GetDirectoryName(socketPath);
        string prefix = Path.GetFileName(socketPath) + Marker;
        if (string.IsNullOrEmpty(directory) || !Directory.Exists(directory))
        {
            return [];
        }

        isLive ??= IsRunning;
        var found = new List<DrainingGeneration>();
        IEnumerable<string> files;
        try
        {
            files = Directory.EnumerateFiles(directory, prefix + "*").ToList();
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return [];
        }

        foreach (string file in files)
        {
            if (file.EndsWith(TemporarySuffix, StringComparison.Ordinal) || !IsOwnedByThisUser(file) || Parse(file) is not { } generation
                || !string.Equals(Path.GetFileName(file), prefix + generation.ProcessId.ToString(CultureInfo.InvariantCulture), StringComparison.Ordinal))
            {
                continue;
            }

            if (isLive(generation))
            {
                found.Add(generation);
            }
            else if (removeStale)
            {
                Remove(socketPath, generation.ProcessId);
            }
        }

        found.Sort((a, b) => a.Generation != b.Generation ? a.Generation.CompareTo(b.Generation) : a.ProcessId.CompareTo(b.ProcessId));
        return found;
    }

    /// <summary>True when <paramref name="generation"/>'s pid runs the process that started at the time its file names.</summary>
    public static bool IsRunning(DrainingGeneration generation) =>
        ProcessClock.StartedAt(generation.ProcessId) is { } started
        && Math.Abs(started.ToUnixTimeMilliseconds() - generation.StartedAtUnixMilliseconds) <= StartTimeToleranceMilliseconds;

    private static DrainingGeneration? Parse(string file)
    {
        string text;
        try
        {
            text = File.ReadAllText(file);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null; // removed meanwhile
        }

        string[] fields = text.Trim().Split(' ');
        return fields.Length == 6 && fields[0] == Format
            && int.TryParse(fields[1], NumberStyles.None, CultureInfo.InvariantCulture, out int pid) && pid > 0
            && long.TryParse(fields[2], NumberStyles.None, CultureInfo.InvariantCulture, out long generation)
            && long.TryParse(fields[3], NumberStyles.None, CultureInfo.InvariantCulture, out long started)
            && int.TryParse(fields[4], NumberStyles.None, CultureInfo.InvariantCulture, out int open)
            && long.TryParse(fields[5], NumberStyles.None, CultureInfo.InvariantCulture, out long deadline)
            ? new DrainingGeneration(pid, generation, started, open, deadline)
            : null;
    }

    private static unsafe bool IsOwnedByThisUser(string file)
    {
        if (OperatingSystem.IsWindows())
        {
            return false;
        }

        Libc.StatX buffer;
        return Libc.statx(Libc.AT_FDCWD, file, Libc.AT_SYMLINK_NOFOLLOW, Libc.STATX_BASIC_STATS, &buffer) == 0
            && buffer.Uid == Libc.geteuid()
            && (buffer.Mode & 0xF000) == 0x8000; // a regular file, not a symlink or a fifo planted at the name
    }
}
