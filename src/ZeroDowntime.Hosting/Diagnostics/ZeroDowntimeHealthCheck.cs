using Microsoft.Extensions.Diagnostics.HealthChecks;
using ZeroDowntime.Hosting.Handoff;
using ZeroDowntime.Hosting.Listeners;

namespace ZeroDowntime.Hosting.Diagnostics;

/// <summary>
/// Ready wherever this process accepts connections, a successor that has opened its gate included: during an in-place
/// handoff a probe's new connection lands on either process, and a 503 there would take the node out of its load
/// balancer at every deploy. For the same reason a predecessor that drains after a handoff stays Healthy (a probe on a
/// connection it accepted just before the commit, or on a kept-alive one, speaks for a node whose successor serves).
/// Unhealthy from the start of a plain shutdown (its delay and its drain: the node leaves) and before the gate first
/// opens. (Between closing the gate at the commit and beginning the drain the old process is still Healthy: a probe on
/// a connection it accepted just before speaks for a node that serves.)
/// </summary>
internal sealed class ZeroDowntimeHealthCheck(ZeroDowntimeLifetime lifetime, AcceptGate? gate = null) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var result = lifetime.IsShuttingDown ? HealthCheckResult.Unhealthy("Shutting down: leaving the load balancer before the drain.")
            : lifetime.HasHandedOver ? HealthCheckResult.Healthy("Handed over: the successor serves; this process drains.")
            : gate is { HasOpened: false } ? HealthCheckResult.Unhealthy("Not accepting connections yet.")
            : HealthCheckResult.Healthy("Accepting connections.");
        return Task.FromResult(result);
    }
}
