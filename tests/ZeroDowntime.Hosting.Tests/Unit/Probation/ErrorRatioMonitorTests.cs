using ZeroDowntime.Hosting.Probation;
using ZeroDowntime.Hosting.Tests.Infrastructure;

namespace ZeroDowntime.Hosting.Tests.Unit.Probation;

/// <summary>
/// The sliding-window 5xx ratio of a release on probation (issue 20 item 3), on the fake clock: what is counted, the
/// thresholds, the window sliding (old buckets leave it, the ring is reused), thread safety and no allocation per response.
/// </summary>
public sealed class ErrorRatioMonitorTests
{
    /// <summary>20 s: one bucket per second.</summary>
    private static readonly TimeSpan Window = TimeSpan.FromSeconds(20);

    private static readonly TimeSpan Bucket = Window / ErrorRatioMonitor.BucketCount;

    private readonly SignallingTimeProvider _time = new();

    [Fact]
    public void Record_WarmupRequests_AreNotCounted()
    {
        using var monitor = new ErrorRatioMonitor(Window, 0.05, 1, _time);

        Record(monitor, 500, 50, isWarmup: true);
        Record(monitor, 200, 3);

        var reading = monitor.Evaluate();
        Assert.Equal(3, reading.Requests);
        Assert.Equal(0, reading.Errors);
        Assert.False(reading.IsAboveLimit);
    }

    [Theory]
    [InlineData(499, false)]
    [InlineData(500, true)]
    [InlineData(503, true)]
    [InlineData(599, true)]
    [InlineData(600, false)]
    [InlineData(200, false)]
    [InlineData(404, false)]
    public void Record_OnlyStatus500To599_CountsAsError(int status, bool error)
    {
        using var monitor = new ErrorRatioMonitor(Window, 0.05, 1, _time);

        monitor.Record(status, isWarmup: false);

        var reading = monitor.Evaluate();
        Assert.Equal(1, reading.Requests);
        Assert.Equal(error ? 1 : 0, reading.Errors);
    }

    [Fact]
    public void Evaluate_FewerThanMinRequests_NotAboveLimitEvenWhenAllFailed()
    {
        using var monitor = new ErrorRatioMonitor(Window, 0.05, 20, _time);
        Record(monitor, 500, 19);

        var below = monitor.Evaluate();
        Assert.Equal(1.0, below.Ratio);
        Assert.False(below.IsAboveLimit);
        Assert.Equal("5xx ratio not judged: 19 responses in the last 00:00:20, fewer than MinRequests 20 (19 of them 5xx)", below.Reason);

        Record(monitor, 500, 1);
        Assert.True(monitor.Evaluate().IsAboveLimit);
    }

    [Fact]
    public void Evaluate_RatioEqualToTheLimit_IsNotAbove_OneMoreErrorIs()
    {
        using var monitor = new ErrorRatioMonitor(Window, 0.05, 20, _time);
        Record(monitor, 200, 95);
        Record(monitor, 500, 5);

        var at = monitor.Evaluate();
        Assert.Equal(0.05, at.Ratio);
        Assert.False(at.IsAboveLimit);
        Assert.Equal("5xx ratio 0.050 (5 of 100 responses in the last 00:00:20) is within MaxErrorRatio 0.05", at.Reason);

        Record(monitor, 503, 1);
        var above = monitor.Evaluate();
        Assert.True(above.IsAboveLimit);
        Assert.Equal(101, above.Requests);
        Assert.Equal(6, above.Errors);
        Assert.Equal("5xx ratio 0.059 (6 of 101 responses in the last 00:00:20) is above MaxErrorRatio 0.05", above.Reason);
    }

    [Fact]
    public void Evaluate_ResponseCountsUntilItsBucketLeavesTheWindow()
    {
        using var monitor = new ErrorRatioMonitor(Window, 0.05, 1, _time);
        Record(monitor, 500, 1);

        _time.Advance(Window - TimeSpan.FromTicks(1));
        Assert.Equal(1, monitor.Evaluate().Errors);

        _time.Advance(TimeSpan.FromTicks(1));
        var reading = monitor.Evaluate();
        Assert.Equal(0, reading.Requests);
        Assert.Equal(0, reading.Errors);
    }

    [Fact]
    public void Evaluate_HealthyBucketsLeaveTheWindow_TheRatioRisesWithoutANewResponse()
    {
        using var monitor = new ErrorRatioMonitor(Window, 0.05, 10, _time);
        Record(monitor, 200, 190);
        _time.Advance(Window / 2);
        Record(monitor, 500, 10);
        Assert.False(monitor.Evaluate().IsAboveLimit); // 10 of 200: exactly 0.05

        _time.Advance(Window / 2); // the 190 successes are older than the window now

        var reading = monitor.Evaluate();
        Assert.True(reading.IsAboveLimit);
        Assert.Equal(10, reading.Requests);
        Assert.Equal(10, reading.Errors);
    }

    [Fact]
    public void Record_AfterManyWindows_ReusesTheRingWithEmptyBuckets()
    {
        using var monitor = new ErrorRatioMonitor(Window, 0.05, 1, _time);
        for (int second = 0; second < 3 * ErrorRatioMonitor.BucketCount; second++)
        {
            Record(monitor, 500, 7);
            _time.Advance(Bucket);
        }

        // Each slot of the ring has held three buckets; only the last window's are counted, and a new bucket starts empty.
        Assert.Equal(7 * (ErrorRatioMonitor.BucketCount - 1), monitor.Evaluate().Errors);
        _time.Advance(Window);
        Record(monitor, 200, 1);

        var reading = monitor.Evaluate();
        Assert.Equal(1, reading.Requests);
        Assert.Equal(0, reading.Errors);
    }

    [Fact]
    public void Record_AfterTheTimerMovedTheRing_CountsInTheBucketOfItsTime()
    {
        using var monitor = new ErrorRatioMonitor(Window, 0.05, 1, _time);
        Record(monitor, 500, 5);
        _time.Advance(Window - Bucket); // the ring's timer moves it to the last bucket of the window

        Record(monitor, 200, 1);
        _time.Advance(Bucket); // the first bucket leaves the window, and its slot is emptied for the new one

        // Had the success been counted in the first bucket's slot, it would have left with the errors.
        var reading = monitor.Evaluate();
        Assert.Equal(1, reading.Requests);
        Assert.Equal(0, reading.Errors);
    }

    [Fact]
    public async Task Record_FromFourThreadsWhileTheRingMovesOn_CountsEveryResponseOnce()
    {
        using var monitor = new ErrorRatioMonitor(Window, 0.05, 1, _time);
        const int PerThread = 100_000;
        using var start = new Barrier(5);

        var recorders = Task.WhenAll(Enumerable.Range(0, 4).Select(_ => Task.Factory.StartNew(() =>
        {
            start.SignalAndWait();
            for (int i = 0; i < PerThread; i++)
            {
                monitor.Record(i % 10 == 0 ? 500 : 200, isWarmup: false);
            }
        }, TaskCreationOptions.LongRunning)));

        // Half a window of new buckets while they count: each slot is emptied before its bucket starts, none is in use.
        start.SignalAndWait();
        for (int i = 0; i < ErrorRatioMonitor.BucketCount / 2; i++)
        {
            _time.Advance(Bucket);
        }

        await recorders.WaitAsync(TimeSpan.FromSeconds(30));
        var reading = monitor.Evaluate();
        Assert.Equal(4 * PerThread, reading.Requests);
        Assert.Equal(4 * PerThread / 10, reading.Errors);
    }

    [Fact]
    public void Record_OnTheSystemClockAndTheFakeOne_AllocatesNothing()
    {
        foreach (TimeProvider clock in new TimeProvider[] { TimeProvider.System, _time })
        {
            using var monitor = new ErrorRatioMonitor(Window, 0.05, 1, clock);
            monitor.Record(200, isWarmup: false);

            long allocated = 0;
            for (int round = 0; round < 2 * ErrorRatioMonitor.BucketCount; round++)
            {
                long before = GC.GetAllocatedBytesForCurrentThread();
                for (int i = 0; i < 1_000; i++)
                {
                    monitor.Record(i % 7 == 0 ? 500 : 200, isWarmup: i % 100 == 0);
                }

                allocated += GC.GetAllocatedBytesForCurrentThread() - before;
                _time.Advance(Bucket); // a new bucket each round on the fake clock (the ring moves on in the timer, not here)
            }

            Assert.Equal(0, allocated);
        }
    }

    [Fact]
    public void Constructor_FromSettings_TakesTheThresholds()
    {
        var settings = ProbationSettings.Default with { ErrorWindow = TimeSpan.FromMinutes(2), MaxErrorRatio = 0.2, MinRequests = 7 };

        using var monitor = new ErrorRatioMonitor(settings, _time);

        Assert.Equal(TimeSpan.FromMinutes(2), monitor.Window);
        Assert.Equal(0.2, monitor.MaxErrorRatio);
        Assert.Equal(7, monitor.MinRequests);
        Assert.Equal(TimeSpan.FromSeconds(6), monitor.BucketLength);
    }

    [Theory]
    [InlineData(0, 0.05, 1)]
    [InlineData(20_000, -0.01, 1)]
    [InlineData(20_000, 1.01, 1)]
    [InlineData(20_000, 0.05, 0)]
    public void Constructor_OutOfRange_Throws(int windowMs, double ratio, int minRequests) =>
        Assert.Throws<ArgumentOutOfRangeException>(() => new ErrorRatioMonitor(TimeSpan.FromMilliseconds(windowMs), ratio, minRequests, _time));

    private static void Record(ErrorRatioMonitor monitor, int status, int count, bool isWarmup = false)
    {
        for (int i = 0; i < count; i++)
        {
            monitor.Record(status, isWarmup);
        }
    }
}
