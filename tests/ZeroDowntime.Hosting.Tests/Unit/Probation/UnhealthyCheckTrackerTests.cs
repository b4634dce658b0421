using Microsoft.Extensions.Diagnostics.HealthChecks;
using ZeroDowntime.Hosting.Probation;
using ZeroDowntime.Hosting.Tests.Infrastructure;

namespace ZeroDowntime.Hosting.Tests.Unit.Probation;

/// <summary>
/// The checks tagged <c>zerodowntime-probation</c> (issue 20 item 3): Unhealthy continuously for the configured time
/// trips, with the check's name and description; anything else in between starts over. Reports every second on the fake clock.
/// </summary>
public sealed class UnhealthyCheckTrackerTests
{
    private static readonly TimeSpan UnhealthyFor = TimeSpan.FromSeconds(10);
    private static readonly TimeSpan Poll = TimeSpan.FromSeconds(1);

    private readonly SignallingTimeProvider _time = new();

    [Fact]
    public void Observe_UnhealthyInEveryReport_TripsWhenUnhealthyForHasPassed()
    {
        var tracker = new UnhealthyCheckTracker(UnhealthyFor, _time);

        for (int second = 0; second < 10; second++)
        {
            Assert.Null(tracker.Observe(Report(("db", HealthStatus.Unhealthy, "no connection to the database"))));
            _time.Advance(Poll);
        }

        var trip = tracker.Observe(Report(("db", HealthStatus.Unhealthy, "no connection to the database")));

        Assert.NotNull(trip);
        Assert.Equal("db", trip.CheckName);
        Assert.Equal("no connection to the database", trip.Description);
        Assert.Equal(UnhealthyFor, trip.Lasted);
        Assert.Equal("health check 'db' (tagged zerodowntime-probation) has been Unhealthy for 00:00:10 (UnhealthyFor 00:00:10): no connection to the database", trip.Reason);
    }

    [Theory]
    [InlineData(HealthStatus.Healthy)]
    [InlineData(HealthStatus.Degraded)]
    public void Observe_AnotherStatusInBetween_StartsOver(HealthStatus between)
    {
        var tracker = new UnhealthyCheckTracker(UnhealthyFor, _time);
        for (int second = 0; second < 9; second++)
        {
            Assert.Null(tracker.Observe(Report(("db", HealthStatus.Unhealthy, null))));
            _time.Advance(Poll);
        }

        Assert.Null(tracker.Observe(Report(("db", between, null))));
        _time.Advance(Poll);

        // Unhealthy again from second 10: it trips 10 s later, not at second 10.
        for (int second = 10; second < 20; second++)
        {
            Assert.Null(tracker.Observe(Report(("db", HealthStatus.Unhealthy, null))));
            _time.Advance(Poll);
        }

        Assert.Equal(UnhealthyFor, tracker.Observe(Report(("db", HealthStatus.Unhealthy, null)))?.Lasted);
    }

    [Fact]
    public void Observe_CheckMissingFromAReport_StartsOver()
    {
        var tracker = new UnhealthyCheckTracker(UnhealthyFor, _time);
        Assert.Null(tracker.Observe(Report(("db", HealthStatus.Unhealthy, null))));
        _time.Advance(UnhealthyFor / 2);
        Assert.Null(tracker.Observe(Report(("cache", HealthStatus.Healthy, null))));
        _time.Advance(UnhealthyFor / 2);

        Assert.Null(tracker.Observe(Report(("db", HealthStatus.Unhealthy, null))));
        _time.Advance(UnhealthyFor);
        Assert.NotNull(tracker.Observe(Report(("db", HealthStatus.Unhealthy, null))));
    }

    [Fact]
    public void Observe_TwoChecksPastTheTime_NamesTheOneUnhealthyLongest()
    {
        var tracker = new UnhealthyCheckTracker(UnhealthyFor, _time);
        tracker.Observe(Report(("queue", HealthStatus.Unhealthy, "backlog 10,000"), ("db", HealthStatus.Healthy, null)));
        _time.Advance(TimeSpan.FromSeconds(3));
        tracker.Observe(Report(("queue", HealthStatus.Unhealthy, "backlog 10,000"), ("db", HealthStatus.Unhealthy, "timeout")));
        _time.Advance(TimeSpan.FromSeconds(12));

        var trip = tracker.Observe(Report(("queue", HealthStatus.Unhealthy, "backlog 20,000"), ("db", HealthStatus.Unhealthy, "timeout")));

        Assert.NotNull(trip);
        Assert.Equal("queue", trip.CheckName);
        Assert.Equal("backlog 20,000", trip.Description);
        Assert.Equal(TimeSpan.FromSeconds(15), trip.Lasted);
    }

    [Fact]
    public void Observe_TwoChecksUnhealthyEquallyLong_NamesTheFirstByName()
    {
        var tracker = new UnhealthyCheckTracker(UnhealthyFor, _time);
        tracker.Observe(Report(("queue", HealthStatus.Unhealthy, null), ("db", HealthStatus.Unhealthy, null)));
        _time.Advance(UnhealthyFor);

        Assert.Equal("db", tracker.Observe(Report(("queue", HealthStatus.Unhealthy, null), ("db", HealthStatus.Unhealthy, null)))?.CheckName);
    }

    [Fact]
    public void Observe_CheckThatThrew_ReasonCarriesTheExceptionMessage()
    {
        var tracker = new UnhealthyCheckTracker(UnhealthyFor, _time);
        var failing = new HealthReport(new Dictionary<string, HealthReportEntry>
        {
            ["payments"] = new(HealthStatus.Unhealthy, null, TimeSpan.FromMilliseconds(3), new TimeoutException("no answer in 2 s"), null),
        }, TimeSpan.FromMilliseconds(3));
        tracker.Observe(failing);
        _time.Advance(UnhealthyFor);

        var trip = tracker.Observe(failing);

        Assert.NotNull(trip);
        Assert.Equal("no answer in 2 s", trip.ExceptionMessage);
        Assert.Equal("health check 'payments' (tagged zerodowntime-probation) has been Unhealthy for 00:00:10 (UnhealthyFor 00:00:10) (no answer in 2 s)", trip.Reason);
    }

    [Fact]
    public void Observe_AlwaysHealthyOrNoChecks_NeverTrips()
    {
        var tracker = new UnhealthyCheckTracker(UnhealthyFor, _time);
        for (int second = 0; second < 60; second++)
        {
            Assert.Null(tracker.Observe(Report(("db", HealthStatus.Healthy, null))));
            Assert.Null(tracker.Observe(Report()));
            _time.Advance(Poll);
        }
    }

    [Fact]
    public void Constructor_ZeroTime_Throws() =>
        Assert.Throws<ArgumentOutOfRangeException>(() => new UnhealthyCheckTracker(TimeSpan.Zero, _time));

    private static HealthReport Report(params (string Name, HealthStatus Status, string? Description)[] checks) =>
        new(checks.ToDictionary(c => c.Name, c => new HealthReportEntry(c.Status, c.Description, TimeSpan.FromMilliseconds(1), null, null)),
            TimeSpan.FromMilliseconds(1));
}
