using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using ZeroDowntime.Hosting.Logging;

namespace ZeroDowntime.Hosting.Testing;

/// <summary>
/// A test seam for the fault-injection tests: with <c>ZERODOWNTIME_FAULT_PAUSE=step[,step]</c> in its
/// environment a successor stops at that step of the handoff, logs it (event 90) and waits there until it
/// receives SIGCONT, so that a test can kill or freeze (SIGSTOP, later SIGCONT) it at a known point instead of
/// racing it. Steps: <c>after-connect</c>,
/// <c>after-receive</c>, <c>before-ready</c>, <c>after-ready</c> (a successor between Ready and Committed), and
/// <c>in-release</c> (a predecessor whose participant hangs in <see cref="IHandoffParticipant.ReleaseAsync"/>). Unset (always, in production) it costs one string comparison.
/// </summary>
internal static class FaultInjection
{
    public const string EnvironmentVariable = "ZERODOWNTIME_FAULT_PAUSE";

    private static readonly string[] s_steps =
        (Environment.GetEnvironmentVariable(EnvironmentVariable) ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    public static bool IsRequested(string step) => s_steps.Contains(step, StringComparer.Ordinal);

    public static async Task PauseIfRequestedAsync(string step, ILogger logger, CancellationToken cancellationToken)
    {
        if (s_steps.Length == 0 || !s_steps.Contains(step, StringComparer.Ordinal) || !OperatingSystem.IsLinux())
        {
            return;
        }

        var resumed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var registration = PosixSignalRegistration.Create(PosixSignal.SIGCONT, _ => resumed.TrySetResult());
        logger.FaultInjectionPause(step, EnvironmentVariable);
        await resumed.Task.WaitAsync(cancellationToken);
    }
}

/// <summary>The participant of the <c>in-release</c> step: its release hangs until SIGCONT, as a slow log flush would.</summary>
internal sealed class FaultInjectionParticipant(ILoggerFactory loggerFactory) : IHandoffParticipant
{
    public Task AcquireAsync(HandoffAcquireReason reason, CancellationToken cancellationToken) => Task.CompletedTask;

    public Task ReleaseAsync(CancellationToken cancellationToken) =>
        FaultInjection.PauseIfRequestedAsync("in-release", loggerFactory.CreateLogger(LogCategories.Handoff), cancellationToken);

    public Task AbandonAsync(string reason, CancellationToken cancellationToken) => Task.CompletedTask;
}
