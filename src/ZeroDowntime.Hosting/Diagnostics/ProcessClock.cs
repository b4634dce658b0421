using System.Diagnostics;

namespace ZeroDowntime.Hosting.Diagnostics;

/// <summary>Time since the OS started this process: the clock of "takeover took N ms" in the logs.</summary>
internal static class ProcessClock
{
    private static readonly DateTime s_started = ReadStartTime();

    public static TimeSpan Age => DateTime.UtcNow - s_started;

    /// <summary>When another process started, or null when it is gone or cannot be read.</summary>
    public static DateTimeOffset? StartedAt(int processId)
    {
        try
        {
            using var process = Process.GetProcessById(processId);
            return new DateTimeOffset(process.StartTime.ToUniversalTime(), TimeSpan.Zero);
        }
        catch (Exception ex) when (ex is ArgumentException or InvalidOperationException or System.ComponentModel.Win32Exception)
        {
            return null;
        }
    }

    private static DateTime ReadStartTime()
    {
        using var process = Process.GetCurrentProcess();
        return process.StartTime.ToUniversalTime();
    }
}
