using System.Globalization;

namespace ZeroDowntime.Cli;

/// <summary>
/// A process as /proc/PID/stat names it: its pid and its start time (clock ticks after boot). A pid alone is not a
/// process: once a process is reaped its number is free, and in a small PID namespace (a container) the next process
/// may get it at once. A later holder of the number has a later start time.
/// </summary>
internal readonly record struct ProcessIdentity(int Pid, ulong StartTime)
{
    /// <summary>
    /// The process that has <paramref name="pid"/> now, with its state letter (R, S, Z for a zombie...) and its parent
    /// pid; false when there is none.
    /// </summary>
    public static bool TryRead(int pid, out ProcessIdentity identity, out char state, out int parent)
    {
        identity = default;
        state = '\0';
        parent = 0;
        string stat;
        try
        {
            stat = File.ReadAllText($"/proc/{pid}/stat");
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return false; // No such process (any more).
        }

        // pid (comm) state ppid ... starttime (field 22): comm may contain spaces and parentheses, so parse after the last ')'.
        int end = stat.LastIndexOf(')');
        if (end < 0 || end + 2 >= stat.Length)
        {
            return false;
        }

        string[] fields = stat[(end + 2)..].Split(' ');
        if (fields.Length < 20
            || !int.TryParse(fields[1], NumberStyles.None, CultureInfo.InvariantCulture, out parent)
            || !ulong.TryParse(fields[19], NumberStyles.None, CultureInfo.InvariantCulture, out ulong startTime))
        {
            parent = 0;
            return false;
        }

        state = fields[0][0];
        identity = new ProcessIdentity(pid, startTime);
        return true;
    }

    /// <summary>True while this very process exists and has not exited (a zombie has exited).</summary>
    public bool IsRunning() => TryRead(Pid, out var now, out char state, out _) && now == this && state is not ('Z' or 'X');
}
