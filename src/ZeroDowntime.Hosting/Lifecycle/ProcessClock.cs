using System.Diagnostics;

namespace ZeroDowntime.Hosting.Lifecycle;

/// <summary>Time since the OS started this process: the clock of "takeover took N ms" in the logs.</summary>
internal static class ProcessClock
{
    private static readonly DateTime s_started = ReadStartTime();

    public static TimeSpan Age => DateTime.UtcNow - s_started;

    private static DateTime ReadStartTime()
    {
        using var process = Process.GetCurrentProcess();
        return process.StartTime.ToUniversalTime();
    }
}
