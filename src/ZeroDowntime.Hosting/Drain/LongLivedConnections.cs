using System.Collections.Concurrent;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.Extensions.Logging;
using ZeroDowntime.Hosting.Logging;

namespace ZeroDowntime.Hosting.Drain;

/// <summary>
/// The long-lived exchanges that the drain ends by itself (<see cref="ZeroDowntimeOptions.CloseLongLivedConnections"/>):
/// WebSockets accepted through ASP.NET Core, server-sent event responses and SignalR connections. Without it they hold
/// a draining process until <see cref="ZeroDowntimeOptions.DrainTimeout"/> and are then aborted (WebSocket 1006).
/// </summary>
/// <remarks>
/// Two steps, because SignalR clients must not reconnect over a keep-alive connection that still leads here: at the
/// start of the drain, WebSockets get a close frame with 1001 Going Away and event streams end (their clients open new
/// connections, which only the successor accepts); with the idle connections after
/// <see cref="ZeroDowntimeOptions.IdleConnectionGracePeriod"/>, SignalR connections are asked to close, the way SignalR
/// itself asks (<see cref="IConnectionLifetimeNotificationFeature.RequestClose"/>: a close message that allows a
/// reconnect). Otherwise a client's reconnect could negotiate with this process over its pooled HTTP connection and
/// then fail to find that connection id on the successor.
/// </remarks>
internal sealed class LongLivedConnections(ILogger logger)
{
    private readonly ConcurrentDictionary<DrainingWebSocketStream, byte> _webSockets = new();
    private readonly ConcurrentDictionary<CancellationTokenSource, byte> _eventStreams = new();
    private readonly ConcurrentDictionary<string, IConnectionLifetimeNotificationFeature> _signalR = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, byte> _upgraded = new(StringComparer.Ordinal);
    private volatile bool _closing;
    private volatile bool _closingSignalR;

    /// <summary>How long a WebSocket's peer has to answer the drain's close frame before the request is aborted (5 s; tests set less).</summary>
    public TimeSpan WebSocketCloseTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>True once <see cref="CloseWebSocketsAndEventStreams"/> ran: one accepted after it is closed at once.</summary>
    public bool IsClosing => _closing;

    /// <summary>True once <see cref="CloseSignalR"/> ran: a SignalR connection made after it is asked to close at once.</summary>
    public bool IsClosingSignalR => _closingSignalR;

    public int WebSocketCount => _webSockets.Count;

    public int EventStreamCount => _eventStreams.Count;

    public int SignalRCount => _signalR.Count;

    public void Add(DrainingWebSocketStream webSocket)
    {
        _webSockets[webSocket] = 0;
        if (_closing)
        {
            _ = webSocket.CloseForDrainAsync();
        }
    }

    /// <summary>
    /// A connection that was upgraded (a WebSocket, SignalR's included): asking Kestrel to close it would only cancel
    /// the read under the WebSocket, losing what the peer sent meanwhile; its WebSocket is closed instead.
    /// </summary>
    public void MarkUpgraded(string connectionId) => _upgraded[connectionId] = 0;

    public bool IsUpgraded(string connectionId) => _upgraded.ContainsKey(connectionId);

    /// <summary>The connection closed.</summary>
    public void Forget(string connectionId) => _upgraded.TryRemove(connectionId, out _);

    public void Remove(DrainingWebSocketStream webSocket) => _webSockets.TryRemove(webSocket, out _);

    /// <summary>An event stream whose <paramref name="ended"/> is cancelled by the drain (the response then ends cleanly).</summary>
    public void Add(CancellationTokenSource ended)
    {
        _eventStreams[ended] = 0;
        if (_closing)
        {
            ended.Cancel();
        }
    }

    public void Remove(CancellationTokenSource ended) => _eventStreams.TryRemove(ended, out _);

    public void AddSignalR(string connectionId, IConnectionLifetimeNotificationFeature lifetime) => _signalR[connectionId] = lifetime;

    public void RemoveSignalR(string connectionId) => _signalR.TryRemove(connectionId, out _);

    /// <summary>This process serves again (its successor was lost after the commit): new exchanges are left open.</summary>
    public void Resume()
    {
        _closing = false;
        _closingSignalR = false;
    }

    /// <summary>Sends every WebSocket a close frame with 1001 and ends every event stream; returns how many of each.</summary>
    public (int WebSockets, int EventStreams) CloseWebSocketsAndEventStreams()
    {
        _closing = true;
        int webSockets = 0;
        foreach (var webSocket in _webSockets.Keys)
        {
            _ = webSocket.CloseForDrainAsync();
            webSockets++;
        }

        int eventStreams = 0;
        foreach (var ended in _eventStreams.Keys)
        {
            try
            {
                ended.Cancel();
                eventStreams++;
            }
            catch (ObjectDisposedException)
            {
                // The stream ended meanwhile.
            }
            catch (AggregateException ex)
            {
                logger.EventStreamCallbackFailed(ex);
            }
        }

        logger.LongLivedClosing(webSockets, eventStreams);
        return (webSockets, eventStreams);
    }

    /// <summary>Asks every SignalR connection to close with a reconnect allowed; returns how many.</summary>
    public int CloseSignalR()
    {
        _closingSignalR = true;
        int count = 0;
        foreach (var lifetime in _signalR.Values)
        {
            lifetime.RequestClose();
            count++;
        }

        if (count > 0)
        {
            logger.SignalRClosing(count);
        }

        return count;
    }
}
