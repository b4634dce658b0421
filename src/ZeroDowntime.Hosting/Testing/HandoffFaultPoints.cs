using Microsoft.Extensions.Logging;
using ZeroDowntime.Hosting.Logging;

namespace ZeroDowntime.Hosting.Testing;

/// <summary>
/// The fault-injection seam of the process-level tests: named steps of the handoff where a process can be held, so that
/// a test kills or freezes it at a known point instead of racing it. Steps: <c>after-connect</c>, <c>after-receive</c>,
/// <c>before-ready</c>, <c>after-ready</c> (a successor between Ready and Committed), and <c>in-release</c> (a
/// predecessor whose last participant hangs in <see cref="IHandoffParticipant.ReleaseAsync"/>). The library never
/// pauses by itself: only an app that registers the keyed service <see cref="ServiceKey"/> (a
/// <c>Func&lt;string, Func&lt;CancellationToken, Task&gt;?&gt;</c>: for a step, null to go on, or the pause) is held,
/// and only the test build of the sample does (samples/WebApi/Testing). Without it each step costs one null check.
/// </summary>
internal sealed class HandoffFaultPoints(Func<string, Func<CancellationToken, Task>?>? seam)
{
    /// <summary>The key of the seam in the app's services (internal: no public API, no configuration key).</summary>
    public const string ServiceKey = "ZeroDowntime.Hosting.FaultPoints";

    /// <summary>No seam: nothing ever pauses.</summary>
    public static readonly HandoffFaultPoints None = new(null);

    /// <summary>True when the app holds this process at <paramref name="step"/>.</summary>
    public bool Pauses(string step) => seam?.Invoke(step) is not null;

    /// <summary>Holds this process at <paramref name="step"/> when the app asks for it, and logs so (event 90) once the hold is in place.</summary>
    public async Task PauseAsync(string step, ILogger logger, CancellationToken cancellationToken)
    {
        if (seam?.Invoke(step) is not { } pause)
        {
            return;
        }

        var held = pause(cancellationToken);
        logger.FaultInjectionPause(step);
        await held;
    }
}
