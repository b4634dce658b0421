using System.Runtime.InteropServices;

namespace ZeroDowntime.Sample;

/// <summary>
/// The library's fault seam, for the process-level tests: with <c>ZERODOWNTIME_FAULT_PAUSE=step[,step]</c> in its
/// environment this build holds the handoff at those steps (after-connect, after-receive, before-ready, after-ready,
/// in-release) until it receives SIGCONT, so that a test can kill or freeze it at a known point. The library logs
/// event 90 once the hold is in place. The key is the library's internal <c>HandoffFaultPoints.ServiceKey</c>.
/// </summary>
internal static partial class TestSeams
{
    private const string FaultPointsKey = "ZeroDowntime.Hosting.FaultPoints";

    static partial void RegisterFaultPauses(IServiceCollection services)
    {
        var steps = (Environment.GetEnvironmentVariable("ZERODOWNTIME_FAULT_PAUSE") ?? "")
            .Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (steps.Length > 0)
        {
            services.AddKeyedSingleton<Func<string, Func<CancellationToken, Task>?>>(FaultPointsKey,
                (_, _) => step => steps.Contains(step, StringComparer.Ordinal) ? UntilSigcontAsync : null);
        }
    }

    /// <summary>Holds until SIGCONT; the signal's handler is in place when this returns its task (before the first await).</summary>
    private static async Task UntilSigcontAsync(CancellationToken cancellationToken)
    {
        if (!OperatingSystem.IsLinux())
        {
            return; // the library does nothing off Linux anyway
        }

        var resumed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var registration = PosixSignalRegistration.Create(PosixSignal.SIGCONT, _ => resumed.TrySetResult());
        await resumed.Task.WaitAsync(cancellationToken);
    }
}
