using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging.Abstractions;
using ZeroDowntime.Hosting.Drain;
using ZeroDowntime.Hosting.Warmup;

namespace ZeroDowntime.Hosting.Tests.Unit;

/// <summary>The count of open connections that the drain waits on, fed with Kestrel's connection contexts.</summary>
public sealed class ConnectionTrackerTests
{
    // Item 9: closes outside a drain leave nothing behind, so the drain's wait does not spin through every close
    // since the process started (one semaphore permit per close, which overflowed at 2^31 inside Kestrel's callback).
    [Fact]
    public async Task WaitUntilEmpty_AfterManyClosesOutsideADrain_WaitsWithoutSpinningThroughThem()
    {
        var tracker = new ConnectionTracker(NullLogger<ConnectionTracker>.Instance);
        for (int i = 0; i < 10_000; i++)
        {
            using var closed = new CancellationTokenSource();
            tracker.Track(new DefaultConnectionContext($"c{i}") { ConnectionClosed = closed.Token });
            closed.Cancel();
        }

        using var lastClosed = new CancellationTokenSource();
        tracker.Track(new DefaultConnectionContext("last") { ConnectionClosed = lastClosed.Token });
        var time = new CountingTimeProvider();

        var wait = tracker.WaitUntilEmptyAsync(TimeSpan.FromSeconds(30), time, CancellationToken.None);
        Assert.False(wait.IsCompleted);
        lastClosed.Cancel();

        Assert.True(await wait.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Equal(0, tracker.Count);
        Assert.True(time.Calls < 10, $"the wait read the clock {time.Calls} times: it woke once per earlier close");
    }

    // Item 9: the wait completes exactly when the count reaches zero, whatever the order of tracking and closing.
    [Fact]
    public async Task WaitUntilEmpty_ConcurrentClosesOnManyThreads_CompletesWhenTheLastCloses()
    {
        var tracker = new ConnectionTracker(NullLogger<ConnectionTracker>.Instance);
        var closers = Enumerable.Range(0, 64).Select(_ => new CancellationTokenSource()).ToArray();
        for (int i = 0; i < closers.Length; i++)
        {
            tracker.Track(new DefaultConnectionContext($"c{i}") { ConnectionClosed = closers[i].Token });
        }

        var wait = tracker.WaitUntilEmptyAsync(TimeSpan.FromSeconds(30), TimeProvider.System, CancellationToken.None);
        await Task.WhenAll(closers[..^1].Select(c => Task.Run(c.Cancel)));
        Assert.False(wait.IsCompleted);
        Assert.Equal(1, tracker.Count);

        closers[^1].Cancel();
        Assert.True(await wait.WaitAsync(TimeSpan.FromSeconds(10)));
        foreach (var closer in closers)
        {
            closer.Dispose();
        }
    }

    private sealed class CountingTimeProvider : TimeProvider
    {
        private int _calls;

        public int Calls => _calls;

        public override long GetTimestamp()
        {
            Interlocked.Increment(ref _calls);
            return base.GetTimestamp();
        }
    }
}
