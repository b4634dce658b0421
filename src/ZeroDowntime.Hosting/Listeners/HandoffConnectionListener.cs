using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using ZeroDowntime.Hosting.Lifecycle;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;

namespace ZeroDowntime.Hosting.Listeners;

/// <summary>
/// One listening socket as Kestrel sees it. It accepts only while the <see cref="AcceptGate"/> is open, through
/// a <see cref="Socket"/> that does not own the descriptor: unbinding or disposing it cancels the pending accept
/// and never closes, lingers or shuts down the socket that another process may be accepting on.
/// </summary>
internal sealed class HandoffConnectionListener : IConnectionListener
{
    private readonly ListenerEntry _entry;
    private readonly ListenerRegistry _registry;
    private readonly AcceptGate _gate;
    private readonly ConnectionTracker _tracker;
    private readonly SocketConnectionContextFactory _contextFactory;
    private readonly bool _noDelay;
    private readonly CancellationTokenSource _unbound = new();
    private readonly Lock _lock = new();
    private Socket _socket;
    private int _generation;

    public HandoffConnectionListener(
        ListenerEntry entry,
        ListenerRegistry registry,
        AcceptGate gate,
        ConnectionTracker tracker,
        SocketConnectionContextFactory contextFactory,
        bool noDelay)
    {
        _entry = entry;
        _registry = registry;
        _gate = gate;
        _tracker = tracker;
        _contextFactory = contextFactory;
        _socket = new Socket(new SafeSocketHandle(entry.Fd, ownsHandle: false));
        _generation = entry.Generation;
        _noDelay = noDelay && _socket.AddressFamily is AddressFamily.InterNetwork or AddressFamily.InterNetworkV6;
        EndPoint = _socket.LocalEndPoint!;
    }

    public EndPoint EndPoint { get; }

    public async ValueTask<ConnectionContext?> AcceptAsync(CancellationToken cancellationToken = default)
    {
        while (true)
        {
            var (opened, closed) = _gate.Current;
            if (!opened.IsCompleted)
            {
                try
                {
                    await opened.WaitAsync(_unbound.Token);
                }
                catch (OperationCanceledException)
                {
                    return null;
                }

                continue;
            }

            Socket accepted;
            try
            {
                accepted = await CurrentSocket().AcceptAsync(closed);
            }
            catch (OperationCanceledException) when (!_unbound.IsCancellationRequested)
            {
                // The gate closed: a successor took over. Park until it opens again (if the successor is lost)
                // or Kestrel unbinds; returning null now would end Kestrel's accept loop for good.
                continue;
            }
            catch (Exception ex) when (ex is ObjectDisposedException or OperationCanceledException
                || ex is SocketException { SocketErrorCode: SocketError.OperationAborted or SocketError.Interrupted })
            {
                return null;
            }
            catch (SocketException ex) when (ex.SocketErrorCode == SocketError.InvalidArgument)
            {
                // EINVAL: the socket listens no more (another process that held it shut it down, and it could not be
                // bound anew). Retrying would spin: this listener is done, as if Kestrel had unbound it.
                return null;
            }
            catch (SocketException)
            {
                // The client reset the connection before we accepted it; accept the next one.
                continue;
            }

            if (_noDelay)
            {
                accepted.NoDelay = true;
            }

            var connection = _contextFactory.Create(accepted);
            _tracker.Track(connection);
            return connection;
        }
    }

    public ValueTask UnbindAsync(CancellationToken cancellationToken = default)
    {
        _unbound.Cancel();
        DisposeSocket();
        _registry.Release(_entry);
        return ValueTask.CompletedTask;
    }

    public ValueTask DisposeAsync()
    {
        _unbound.Cancel();
        DisposeSocket();
        _unbound.Dispose();
        return ValueTask.CompletedTask;
    }

    /// <summary>
    /// The wrapper for the socket now behind the descriptor number. When the registry has bound it anew
    /// (<see cref="ListenerEntry.Generation"/>), the old wrapper's registration with the runtime's event loop belongs
    /// to the old socket, whose readiness never comes again: a new non-owning wrapper registers the new one.
    /// </summary>
    private Socket CurrentSocket()
    {
        lock (_lock)
        {
            int generation = _entry.Generation;
            if (generation != _generation && !_unbound.IsCancellationRequested)
            {
                _socket.Dispose(); // non-owning: cancels nothing pending (the gate was closed) and closes nothing
                _socket = new Socket(new SafeSocketHandle(_entry.Fd, ownsHandle: false));
                _generation = generation;
            }

            return _socket;
        }
    }

    private void DisposeSocket()
    {
        lock (_lock)
        {
            _socket.Dispose();
        }
    }
}
