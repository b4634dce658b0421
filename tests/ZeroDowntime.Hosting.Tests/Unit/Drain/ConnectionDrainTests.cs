using System.Diagnostics.Metrics;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using ZeroDowntime.Hosting.Diagnostics;
using ZeroDowntime.Hosting.Drain;
using ZeroDowntime.Hosting.Listeners;
using ZeroDowntime.Hosting.Tests.Infrastructure;

namespace ZeroDowntime.Hosting.Tests.Unit;

/// <summary>
/// The order in which the drain ends long-lived exchanges, on a fake clock: event streams (and WebSockets) at its
/// start, SignalR only once the idle grace has closed keep-alive connections (a reconnect must not negotiate over a
/// pooled connection to the old process), and nothing of it with <c>CloseLongLivedConnections</c> off.
/// </summary>
public sealed class ConnectionDrainTests : IDisposable
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(20);
    private static readonly TimeSpan Grace = TimeSpan.FromSeconds(2);

    private readonly ServiceProvider _services = new ServiceCollection().AddMetrics().BuildServiceProvider();
    private readonly AcceptGate _gate = new();
    private readonly ZeroDowntimeMetrics _metrics;
    private readonly ConnectionTracker _tracker = new(NullLogger<ConnectionTracker>.Instance);
    private readonly SignallingTimeProvider _time = new();
    private readonly CancellationTokenSource _hubConnectionClosed = new();
    private readonly CancellationTokenSource _streamConnectionClosed = new();
    private readonly CancellationTokenSource _streamEnded = new();
    private readonly RecordingLifetime _hub = new();

    public ConnectionDrainTests()
    {
        var registry = new ListenerRegistry(NullLogger<ListenerRegistry>.Instance, Options.Create(new ZeroDowntimeOptions { SocketPath = "/tmp/x.sock" }));
        _metrics = new ZeroDowntimeMetrics(_services.GetRequiredService<IMeterFactory>(), registry, _gate);
        _tracker.Track(new DefaultConnectionContext("hub") { ConnectionClosed = _hubConnectionClosed.Token });
        _tracker.Track(new DefaultConnectionContext("stream") { ConnectionClosed = _streamConnectionClosed.Token });
        _tracker.LongLived.AddSignalR("hub-connection", _hub);
        _tracker.LongLived.Add(_streamEnded);
    }

    [Fact]
    public async Task RunAsync_EventStreamEndsAtOnce_SignalRAskedOnlyAfterTheGrace_NoneAborted()
    {
        var drain = new ConnectionDrain(_tracker, NullLogger.Instance, _metrics, _time);

        var running = drain.RunAsync(new ZeroDowntimeOptions { IdleConnectionGracePeriod = Grace }, CancellationToken.None);
        Assert.True(_streamEnded.IsCancellationRequested, "the event stream ends when the drain starts");
        _streamConnectionClosed.Cancel();

        await _time.WaitForTimerAsync(Grace, Limit);
        Assert.False(_hub.Requested.Task.IsCompleted, "SignalR was asked to close before the idle grace was over");
        _time.Advance(Grace);
        await _hub.Requested.Task.WaitAsync(Limit);

        _hubConnectionClosed.Cancel();
        Assert.True(await running.WaitAsync(Limit));
        Assert.Equal(0, _tracker.Count);
    }

    [Fact]
    public async Task RunAsync_CloseLongLivedConnectionsOff_NeitherEndedNorAsked_LeftToTheDeadline()
    {
        var drain = new ConnectionDrain(_tracker, NullLogger.Instance, _metrics, _time);
        var options = new ZeroDowntimeOptions { IdleConnectionGracePeriod = Grace, DrainTimeout = TimeSpan.FromSeconds(3), CloseLongLivedConnections = false };

        var running = drain.RunAsync(options, CancellationToken.None);
        await _time.WaitForTimerAsync(Grace, Limit);
        _time.Advance(Grace);
        await _time.WaitForTimerAsync(TimeSpan.FromSeconds(1), Limit);
        _time.Advance(TimeSpan.FromSeconds(1));

        Assert.True(await running.WaitAsync(Limit));
        Assert.False(_streamEnded.IsCancellationRequested);
        Assert.False(_hub.Requested.Task.IsCompleted);
        Assert.Equal(2, _tracker.Count); // both still open at the deadline (then aborted)
    }

    public void Dispose()
    {
        _metrics.Dispose();
        _gate.Dispose();
        _services.Dispose();
        _hubConnectionClosed.Dispose();
        _streamConnectionClosed.Dispose();
        _streamEnded.Dispose();
    }

    private sealed class RecordingLifetime : IConnectionLifetimeNotificationFeature
    {
        public TaskCompletionSource Requested { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public CancellationToken ConnectionClosedRequested { get; set; }

        public void RequestClose() => Requested.TrySetResult();
    }
}
