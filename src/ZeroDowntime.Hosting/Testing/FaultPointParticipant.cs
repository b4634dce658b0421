using Microsoft.Extensions.Logging;

namespace ZeroDowntime.Hosting.Testing;

/// <summary>The participant of the <c>in-release</c> step, last of all: its release hangs as a slow log flush would.</summary>
internal sealed class FaultPointParticipant(HandoffFaultPoints points, ILogger logger) : IHandoffParticipant
{
    public Task AcquireAsync(HandoffAcquireReason reason, CancellationToken cancellationToken) => Task.CompletedTask;

    public Task ReleaseAsync(CancellationToken cancellationToken) => points.PauseAsync("in-release", logger, cancellationToken);

    public Task AbandonAsync(string reason, CancellationToken cancellationToken) => Task.CompletedTask;
}
