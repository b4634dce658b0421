using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace ZeroDowntime.Hosting.Probation;

/// <summary>
/// Follows the health checks tagged <see cref="ProbationSettings.CheckTag"/> from one report to the next and trips when
/// one of them has been Unhealthy continuously for <see cref="UnhealthyFor"/>: Unhealthy in the report where it first
/// was, and in every report since, the latest at least <see cref="UnhealthyFor"/> later. Any other status (Healthy,
/// Degraded) or a report without the check starts it over. The caller runs the checks (once a second during probation)
/// and passes each report; the tracker keeps one timestamp per check that is Unhealthy now.
/// </summary>
internal sealed class UnhealthyCheckTracker
{
    private readonly Dictionary<string, long> _unhealthySince = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();
    private readonly TimeProvider _time;

    public UnhealthyCheckTracker(TimeSpan unhealthyFor, TimeProvider time)
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(unhealthyFor, TimeSpan.Zero);
        ArgumentNullException.ThrowIfNull(time);
        UnhealthyFor = unhealthyFor;
        _time = time;
    }

    public TimeSpan UnhealthyFor { get; }

    /// <summary>
    /// Takes the next report of the tagged checks. Returns the check that has been Unhealthy the longest once that is at
    /// least <see cref="UnhealthyFor"/> (ties: the first by name), or null.
    /// </summary>
    public UnhealthyCheckTrip? Observe(HealthReport report)
    {
        ArgumentNullException.ThrowIfNull(report);
        long now = _time.GetTimestamp();
        lock (_lock)
        {
            foreach (string name in _unhealthySince.Keys.ToArray())
            {
                if (!report.Entries.TryGetValue(name, out var entry) || entry.Status != HealthStatus.Unhealthy)
                {
                    _unhealthySince.Remove(name);
                }
            }

            UnhealthyCheckTrip? longest = null;
            foreach (var (name, entry) in report.Entries.OrderBy(e => e.Key, StringComparer.Ordinal))
            {
                if (entry.Status != HealthStatus.Unhealthy)
                {
                    continue;
                }

                if (!_unhealthySince.TryGetValue(name, out long since))
                {
                    _unhealthySince[name] = since = now;
                }

                var lasted = _time.GetElapsedTime(since, now);
                if (lasted >= UnhealthyFor && (longest is null || lasted > longest.Lasted))
                {
                    longest = new UnhealthyCheckTrip(name, entry.Description, entry.Exception?.Message, lasted, UnhealthyFor);
                }
            }

            return longest;
        }
    }
}
