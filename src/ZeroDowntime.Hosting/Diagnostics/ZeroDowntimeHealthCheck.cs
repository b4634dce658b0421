using Microsoft.Extensions.Diagnostics.HealthChecks;
using ZeroDowntime.Hosting.Lifecycle;
using ZeroDowntime.Hosting.Listeners;

namespace ZeroDowntime.Hosting.Diagnostics;

/// <summary>
/// Ready wherever this process accepts connections, a successor that has opened its gate included: during an in-place
/// handoff a probe's new connection lands on either process, and a 503 there would take the node out of its load
/// balancer at every deploy. Unhealthy from the start of a plain shutdown (its delay included) and while draining.
/// </summary>
internal sealed class ZeroDowntimeHealthCheck(ZeroDowntimeLifetime lifetime, AcceptGate? gate = null) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var result = lifetime.IsShuttingDown ? HealthCheckResult.Unhealthy("Shutting down: leaving the load balancer before the drain.")
            : lifetime.IsDraining ? HealthCheckResult.Unhealthy("Draining: a successor has taken over.")
            : gate is { IsOpen: false } ? HealthCheckResult.Unhealthy("Not accepting connections.")
            : HealthCheckResult.Healthy("Accepting connections.");
        return Task.FromResult(result);
    }
}
