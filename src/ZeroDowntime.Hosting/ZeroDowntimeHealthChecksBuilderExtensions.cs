using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using ZeroDowntime.Hosting.Diagnostics;
using ZeroDowntime.Hosting.Handoff;
using ZeroDowntime.Hosting.Listeners;

namespace ZeroDowntime.Hosting;

/// <summary>Adds the readiness check that follows handoffs and plain shutdowns.</summary>
public static class ZeroDowntimeHealthChecksBuilderExtensions
{
    /// <summary>The name of the check that <see cref="AddZeroDowntime"/> adds.</summary>
    public const string CheckName = "zerodowntime";

    /// <summary>
    /// The tag of the app's health checks that must be Healthy before this process takes over: a successor tells its
    /// predecessor Ready (and a first start accepts) only once every check with this tag reports Healthy, checked
    /// again every 250 ms. A check still not Healthy shortly before <see cref="ZeroDowntimeOptions.HandoffTimeout"/>
    /// gives the handoff up: the successor stops with exit code <see cref="ZeroDowntimeExitCodes.HandoffAbandoned"/>,
    /// and its log, the running process's log and the result of <c>zerodowntime upgrade</c> name the check. A first
    /// start waits as long, then accepts and logs the check. For example
    /// <c>services.AddHealthChecks().AddCheck&lt;DatabaseCheck&gt;("db", tags: [ZeroDowntimeHealthChecksBuilderExtensions.ReadyForHandoffTag])</c>.
    /// </summary>
    public const string ReadyForHandoffTag = "zerodowntime-ready";

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
