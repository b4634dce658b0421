using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;

namespace ZeroDowntime.Hosting.Probation;

/// <summary>
/// What a release on probation watches in itself, shared between the handoff (which starts and stops the watch) and
/// the request pipeline (which records every response while it runs). Outside probation the pipeline pays one
/// volatile read per request.
/// </summary>
internal sealed class ProbationWatch(IServiceProvider services)
{
    private ErrorRatioMonitor? _errorRatio;

    /// <summary>The 5xx ratio of the probation in course; null outside probation.</summary>
    public ErrorRatioMonitor? ErrorRatio
    {
        get => Volatile.Read(ref _errorRatio);
        set => Volatile.Write(ref _errorRatio, value);
    }

    /// <summary>The health checks tagged <see cref="ProbationSettings.CheckTag"/>'s service, or null when the app registers none (then nothing is polled).</summary>
    public HealthCheckService? TaggedChecks()
    {
        var registrations = (services.GetService(typeof(IOptions<HealthCheckServiceOptions>)) as IOptions<HealthCheckServiceOptions>)?.Value.Registrations;
        return registrations is not null && registrations.Any(r => r.Tags.Contains(ProbationSettings.CheckTag))
            ? services.GetService(typeof(HealthCheckService)) as HealthCheckService
            : null;
    }
}
