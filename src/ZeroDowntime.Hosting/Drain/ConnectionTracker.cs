using System.Collections.Concurrent;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.Extensions.Logging;
using ZeroDowntime.Hosting.Diagnostics;
using ZeroDowntime.Hosting.Logging;

namespace ZeroDowntime.Hosting.Drain;

/// <summary>
/// The connections this process accepted and has not closed yet, so that the drain can tell when it is done,
/// ask idle ones to close after the grace period, and abort stragglers at the deadline.
/// </summary>
internal sealed class ConnectionTracker(ILogger logger)
{
    private readonly ConcurrentDictionary<string, ConnectionContext> _connections = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();

    /// <summary>
    /// Completed when the last connection closes while a drain waits; null when nobody waits. A close outside a drain
    /// leaves nothing behind (unlike one semaphore permit per close, which a drain then spun through, and which
    /// overflowed after 2^31 closes inside Kestrel's callback).
    /// </summary>
    private TaskCompletionSource? _emptied;
    private int _firstAccepted;

    public int Count => _connections.Count;

    /// <summary>The WebSockets, event streams and SignalR connections among them, which the drain ends itself.</summary>
    public LongLivedConnections LongLived { get; } = new(logger);

    public void Track(ConnectionContext connection)
    {
        if (_firstAccepted == 0 && Interlocked.Exchange(ref _firstAccepted, 1) == 0)
        {
            logger.FirstConnectionAccepted(ProcessClock.Age.TotalMilliseconds);
        }

        _connections[connection.ConnectionId] = connection;
        connection.ConnectionClosed.Register(static state =>
        {
            var (tracker, connection) = ((ConnectionTracker, ConnectionContext))state!;
            tracker.OnClosed(connection.ConnectionId);
        }, (this, connection));
    }

    /// <summary>
    /// Asks every connection to close gracefully: Kestrel closes an idle HTTP/1.1 connection at once, answers an
    /// in-flight request with <c>Connection: close</c>, and sends GOAWAY on HTTP/2. Returns how many were asked.
    /// Upgraded connections (WebSockets) are left to <see cref="LongLived"/>.
    /// </summary>
    public int RequestCloseAll()
    {
        int count = 0;
        foreach (var connection in _connections.Values)
        {
            if (LongLived.IsUpgraded(connection.ConnectionId))
            {
                continue;
            }

            connection.Features.Get<IConnectionLifetimeNotificationFeature>()?.RequestClose();
            count++;
        }

        return count;
    }

    public int AbortAll(string reason = "The drain deadline after a handoff has passed.")
    {
        int count = 0;
        foreach (var connection in _connections.Values)
        {
            connection.Abort(new ConnectionAbortedException(reason));
            count++;
        }

        return count;
    }

    /// <summary>Waits until no connection is left or <paramref name="timeout"/> passes; true when none is left.</summary>
    public async Task<bool> WaitUntilEmptyAsync(TimeSpan timeout, TimeProvider time, CancellationToken cancellationToken)
    {
        long start = time.GetTimestamp();
        while (true)
        {
            Task emptied;
            lock (_lock)
            {
                if (_connections.IsEmpty)
                {
                    return true;
                }

                _emptied ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                emptied = _emptied.Task;
            }

            var remaining = timeout - time.GetElapsedTime(start);
            if (remaining <= TimeSpan.Zero)
            {
                return false;
            }

            try
            {
                await emptied.WaitAsync(remaining, time, cancellationToken);
            }
            catch (TimeoutException)
            {
                return _connections.IsEmpty;
            }

            // Emptied; a connection accepted just before the gate closed may have been tracked since: look again.
        }
    }

    private void OnClosed(string connectionId)
    {
        _connections.TryRemove(connectionId, out _);
        LongLived.Forget(connectionId);
        if (!_connections.IsEmpty)
        {
            return;
        }

        lock (_lock)
        {
            if (_connections.IsEmpty && _emptied is { } emptied)
            {
                _emptied = null;
                emptied.TrySetResult();
            }
        }
    }
}
