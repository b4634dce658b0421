using System.Globalization;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace ZeroDowntime.Sample;

/// <summary>
/// For the process-level proof "an Unhealthy tagged check during probation rolls back" (issue 20), not part of the
/// sample's contract: with <c>ZERODOWNTIME_TEST_PROBATION_UNHEALTHY_AFTER_MS=N</c> in its environment this build adds
/// a health check <c>test-probation</c> tagged <c>zerodowntime-probation</c> that is Healthy until N ms after the
/// process took over (<see cref="TakeoverClock"/>) and Unhealthy from then on. Without the variable nothing is added.
/// </summary>
internal static partial class TestSeams
{
    private const string ProbationUnhealthyAfterVariable = "ZERODOWNTIME_TEST_PROBATION_UNHEALTHY_AFTER_MS";

    /// <summary>The tag that the library watches during probation (design section 7).</summary>
    private const string ProbationTag = "zerodowntime-probation";

    static partial void RegisterProbationCheck(IServiceCollection services)
    {
        if (!int.TryParse(Environment.GetEnvironmentVariable(ProbationUnhealthyAfterVariable), NumberStyles.None, CultureInfo.InvariantCulture, out int afterMs))
        {
            return;
        }

        TakeoverClock.Register(services);
        services.AddHealthChecks().Add(new HealthCheckRegistration("test-probation",
            sp => new UnhealthyAfterTakeoverCheck(sp.GetRequiredService<TakeoverClock>(), TimeSpan.FromMilliseconds(afterMs)),
            failureStatus: null, tags: [ProbationTag]));
    }

    private sealed class UnhealthyAfterTakeoverCheck(TakeoverClock clock, TimeSpan after) : IHealthCheck
    {
        public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken) =>
            Task.FromResult(clock.SinceTakeover is { } since && since >= after
                ? HealthCheckResult.Unhealthy($"unhealthy on purpose {after.TotalMilliseconds:0} ms after taking over ({ProbationUnhealthyAfterVariable})")
                : HealthCheckResult.Healthy(clock.SinceTakeover is null ? "not taken over yet" : "healthy until the planned failure"));
    }
}
