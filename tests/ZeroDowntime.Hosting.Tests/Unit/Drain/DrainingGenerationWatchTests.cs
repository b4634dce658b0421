using System.Diagnostics.Metrics;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using ZeroDowntime.Hosting.Diagnostics;
using ZeroDowntime.Hosting.Drain;
using ZeroDowntime.Hosting.Listeners;
using ZeroDowntime.Hosting.Tests.Infrastructure;

namespace ZeroDowntime.Hosting.Tests.Unit;

/// <summary>
/// The bound on draining generations (<c>MaxDrainingGenerations</c>, issue 23 item 2): the rule, the state files beside
/// the handoff socket, the watch on a fake clock, and the drain that it cuts short (aborted and counted).
/// </summary>
public sealed class DrainingGenerationWatchTests : IDisposable
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(20);

    private readonly string _directory = Directory.CreateTempSubdirectory("zd-draining-").FullName;
    private readonly SignallingTimeProvider _time = new();
    private readonly ServiceProvider _services = new ServiceCollection().AddMetrics().BuildServiceProvider();

    private string SocketPath => Path.Combine(_directory, "app.sock");

    [Theory]
    [InlineData(2, new long[] { 2, 3 }, true)]     // two newer generations drain: the bound of 2 is reached, the oldest ends
    [InlineData(2, new long[] { 2 }, false)]       // one newer: within the bound
    [InlineData(2, new long[] { 3 }, false)]       // generation 2 has finished already: only one newer drains
    [InlineData(1, new long[] { 2 }, true)]
    [InlineData(0, new long[] { 2, 3, 4, 5 }, false)] // 0: no bound
    public void NewerBeyondBound_CountsOnlyNewerDrainingGenerations(int max, long[] others, bool ends)
    {
        var self = Generation(1001, 1);
        var draining = others.Select((g, i) => Generation(2000 + i, g)).Append(self).Append(Generation(999, 0));

        var newer = DrainingGenerationWatch.NewerBeyondBound(self, draining, max);

        Assert.Equal(ends, newer is not null);
        if (newer is not null)
        {
            Assert.All(newer, g => Assert.True(g.Generation > self.Generation));
        }
    }

    [Fact]
    public void ReadAll_ListsLiveGenerationsOldestFirst_IgnoresAndRemovesStaleAndForeignOnes()
    {
        var started = ProcessClock.StartedAt(Environment.ProcessId)!.Value.ToUnixTimeMilliseconds();
        DrainingGenerationFiles.Write(SocketPath, new DrainingGeneration(Environment.ProcessId, 3, started, 7, 123));
        // The same pid with another start time: a process that has exited and whose pid was reused.
        var stale = new DrainingGeneration(Environment.ProcessId + 1, 2, started - 60_000, 1, 1);
        DrainingGenerationFiles.Write(SocketPath, stale);
        File.WriteAllText(DrainingGenerationFiles.PathFor(SocketPath, 42), "garbage\n");
        File.WriteAllText(DrainingGenerationFiles.PathFor(Path.Combine(_directory, "other.sock"), Environment.ProcessId), "zerodowntime-draining-v1 1 1 1 1 1\n");

        var listed = DrainingGenerationFiles.ReadAll(SocketPath, removeStale: true);

        var only = Assert.Single(listed);
        Assert.Equal((Environment.ProcessId, 3L, 7), (only.ProcessId, only.Generation, only.OpenConnections));
        Assert.False(File.Exists(DrainingGenerationFiles.PathFor(SocketPath, stale.ProcessId)), "the stale file is removed");

        DrainingGenerationFiles.Remove(SocketPath, Environment.ProcessId);
        Assert.Empty(DrainingGenerationFiles.ReadAll(SocketPath));
    }

    [Fact]
    public async Task Watch_OneNewerGeneration_KeepsDraining_SecondNewer_EndsAtOnce()
    {
        var logger = new RecordingLogger<DrainingGenerationWatchTests>();
        int open = 2;
        var self = Generation(5001, 1);
        var watch = new DrainingGenerationWatch(SocketPath, self, 2, () => Volatile.Read(ref open), logger, _time, isLive: _ => true);
        watch.Start();
        try
        {
            Assert.Equal(2, Assert.Single(DrainingGenerationFiles.ReadAll(SocketPath, _ => true)).OpenConnections);

            DrainingGenerationFiles.Write(SocketPath, Generation(5002, 2));
            Volatile.Write(ref open, 1);
            await NextLookAsync();
            await NextLookAsync();
            Assert.False(watch.EndNow.IsCancellationRequested, "one newer generation is within a bound of 2");
            Assert.Equal(1, DrainingGenerationFiles.ReadAll(SocketPath, _ => true).Single(g => g.ProcessId == 5001).OpenConnections);

            DrainingGenerationFiles.Write(SocketPath, Generation(5003, 3));
            var ended = Task.Delay(Timeout.Infinite, watch.EndNow).ContinueWith(_ => { }, TaskScheduler.Default);
            // The watcher sees the new file at once; should it miss it, the fallback look a second later finds it.
            if (await Task.WhenAny(ended, _time.WaitForTimerAsync(DrainingGenerationWatch.Interval, Limit)) != ended)
            {
                _time.Advance(DrainingGenerationWatch.Interval);
            }

            await ended.WaitAsync(Limit);
            Assert.Contains(logger.Entries, e => e.EventId.Name == "DrainingGenerationsExceeded");
        }
        finally
        {
            await watch.DisposeAsync();
        }

        Assert.DoesNotContain(DrainingGenerationFiles.ReadAll(SocketPath, _ => true), g => g.ProcessId == 5001);
    }

    [Fact]
    public async Task RunAsync_EndNow_AbortsWhatIsOpenAtOnce_CountedAsAborted()
    {
        using var gate = new AcceptGate();
        var registry = new ListenerRegistry(NullLogger<ListenerRegistry>.Instance, Options.Create(new ZeroDowntimeOptions { SocketPath = SocketPath }));
        var factory = _services.GetRequiredService<IMeterFactory>();
        using var metrics = new ZeroDowntimeMetrics(factory, registry, gate);
        using var recorder = new MeasurementRecorder(factory);
        var tracker = new ConnectionTracker(NullLogger<ConnectionTracker>.Instance);
        using var closed = new CancellationTokenSource();
        var connection = new DefaultConnectionContext("long") { ConnectionClosed = closed.Token };
        tracker.Track(connection);
        var logger = new RecordingLogger<DrainingGenerationWatchTests>();
        var drain = new ConnectionDrain(tracker, logger, metrics, _time);
        using var endNow = new CancellationTokenSource();
        var options = new ZeroDowntimeOptions { IdleConnectionGracePeriod = TimeSpan.FromSeconds(2), DrainTimeout = TimeSpan.FromSeconds(30) };

        var running = drain.RunAsync(options, CancellationToken.None, endNow.Token);
        await _time.WaitForTimerAsync(TimeSpan.FromSeconds(2), Limit);
        _time.Advance(TimeSpan.FromSeconds(2));
        await _time.WaitForTimerAsync(TimeSpan.FromSeconds(1), Limit);
        Assert.False(running.IsCompleted, "the long connection holds the drain until its deadline");

        endNow.Cancel(); // no further time passes on this clock: the drain ends at 2 s, not at 30 s
        Assert.True(await running.WaitAsync(Limit));
        Assert.Equal(1, Assert.Single(recorder.Of("zerodowntime.drain.aborted_connections")).Value);
        Assert.Contains(logger.Entries, e => e.EventId.Name == "DrainEndedByLimit");
        Assert.DoesNotContain(logger.Entries, e => e.EventId.Name == "DrainCompleted");
    }

    public void Dispose()
    {
        _services.Dispose();
        Directory.Delete(_directory, recursive: true);
    }

    private static DrainingGeneration Generation(int pid, long generation) => new(pid, generation, 1_000, 0, 2_000);

    /// <summary>Lets the watch's fallback timer fire and waits until it has looked again (its next timer is pending).</summary>
    private async Task NextLookAsync()
    {
        await _time.WaitForTimerAsync(DrainingGenerationWatch.Interval, Limit);
        _time.Advance(DrainingGenerationWatch.Interval);
        await _time.WaitForTimerAsync(DrainingGenerationWatch.Interval, Limit);
    }
}
