using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Logging;
using ZeroDowntime.Hosting.Logging;

namespace ZeroDowntime.Hosting.Warmup;

/// <summary>
/// Holds Ready (and a first start's gate) until every health check tagged
/// <see cref="ZeroDowntimeHealthChecksBuilderExtensions.ReadyForHandoffTag"/> reports Healthy, checking again every
/// <see cref="PollInterval"/>, at most until the deadline; then it names the checks that are not Healthy.
/// </summary>
internal sealed class ReadinessGate
{
    /// <summary>How often the tagged checks run while one of them is not Healthy.</summary>
    internal static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(250);

    private readonly HealthCheckService? _healthChecks;
    private readonly int _taggedChecks;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;

    public ReadinessGate(HealthCheckService? healthChecks, int taggedChecks, ILogger logger, TimeProvider time)
    {
        _healthChecks = healthChecks;
        _taggedChecks = taggedChecks;
        _logger = logger;
        _time = time;
    }

    /// <summary>Whether the app tagged any check: without one there is nothing to wait for.</summary>
    public bool HasChecks => _healthChecks is not null && _taggedChecks > 0;

    /// <summary>Null once every tagged check is Healthy; else, at <paramref name="budget"/>, why not (naming the checks).</summary>
    public async Task<string?> WaitAsync(TimeSpan budget, CancellationToken cancellationToken)
    {
        if (!HasChecks)
        {
            return null;
        }

        const string Tag = ZeroDowntimeHealthChecksBuilderExtensions.ReadyForHandoffTag;
        long start = _time.GetTimestamp();
        string? lastWaitingFor = null;
        while (true)
        {
            var report = await _healthChecks!.CheckHealthAsync(r => r.Tags.Contains(Tag), cancellationToken);
            if (report.Status == HealthStatus.Healthy)
            {
                _logger.ReadinessHealthy(report.Entries.Count, Tag, _time.GetElapsedTime(start).TotalMilliseconds);
                return null;
            }

            string waitingFor = string.Join("; ", report.Entries.Where(e => e.Value.Status != HealthStatus.Healthy)
                .Select(e => $"'{e.Key}' is {e.Value.Status}{(e.Value.Description is { Length: > 0 } d ? ": " + d : "")}{(e.Value.Exception is { } ex ? " (" + ex.Message + ")" : "")}"));
            if (waitingFor != lastWaitingFor)
            {
                _logger.ReadinessWaiting(Tag, waitingFor);
                lastWaitingFor = waitingFor;
            }

            var remaining = budget - _time.GetElapsedTime(start);
            if (remaining <= TimeSpan.Zero)
            {
                return $"readiness check {waitingFor} (still after {budget})";
            }

            await Task.Delay(remaining < PollInterval ? remaining : PollInterval, _time, cancellationToken);
        }
    }
}
