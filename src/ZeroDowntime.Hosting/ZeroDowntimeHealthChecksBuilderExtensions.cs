using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using ZeroDowntime.Hosting.Diagnostics;
using ZeroDowntime.Hosting.Lifecycle;
using ZeroDowntime.Hosting.Listeners;

namespace ZeroDowntime.Hosting;

/// <summary>Adds the readiness check that follows handoffs and plain shutdowns.</summary>
public static class ZeroDowntimeHealthChecksBuilderExtensions
{
    /// <summary>The name of the check that <see cref="AddZeroDowntime"/> adds.</summary>
    public const string CheckName = "zerodowntime";

    /// <summary>
    /// Adds a health check named <c>zerodowntime</c>, tagged <c>ready</c>: Healthy wherever this process accepts
    /// connections (a successor that has started accepting included, and an old process draining after a handoff: the
    /// node serves through its successor), Unhealthy during <see cref="ZeroDowntimeOptions.ShutdownDelay"/> and the
    /// drain of a plain shutdown. Map it as a readiness endpoint,
    /// for example <c>app.MapHealthChecks("/health/ready", new() { Predicate = c =&gt; c.Tags.Contains("ready") })</c>.
    /// Without <c>UseZeroDowntime</c> (or off Linux) it reports Healthy.
    /// </summary>
    /// <param name="builder">The health checks builder of <c>AddHealthChecks()</c>.</param>
    /// <returns>The same builder.</returns>
    public static IHealthChecksBuilder AddZeroDowntime(this IHealthChecksBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Services.TryAddSingleton<ZeroDowntimeLifetime>();
        builder.Add(new HealthCheckRegistration(CheckName,
            sp => new ZeroDowntimeHealthCheck(sp.GetRequiredService<ZeroDowntimeLifetime>(), sp.GetService<AcceptGate>()),
            failureStatus: HealthStatus.Unhealthy, tags: ["ready"]));
        return builder;
    }
}
