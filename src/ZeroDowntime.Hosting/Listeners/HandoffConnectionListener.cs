using System.Net;
using System.Net.Sockets;
using System.Threading.Channels;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using ZeroDowntime.Hosting.Drain;

namespace ZeroDowntime.Hosting.Listeners;

/// <summary>
/// One listening socket as Kestrel sees it. It accepts only while the <see cref="AcceptGate"/> is open, through
/// a <see cref="Socket"/> that does not own the descriptor: unbinding or disposing it cancels the pending accept
/// and never closes, lingers or shuts down the socket that another process may be accepting on. It also returns the
/// warm-up's connections (<see cref="Inject"/>), made inside this process, so that Kestrel serves them as it serves
/// this endpoint's clients: its connection middleware (TLS, protocol selection) included.
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
    private readonly Channel<(Socket Socket, IZeroDowntimeWarmupFeature Feature)> _injected =
        Channel.CreateUnbounded<(Socket, IZeroDowntimeWarmupFeature)>(new UnboundedChannelOptions { SingleReader = false });
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
            if (_injected.Reader.TryRead(out var injected))
            {
                var warmup = _contextFactory.Create(injected.Socket);
                warmup.Features.Set(injected.Feature);
                _tracker.Track(warmup);
                return warmup;
            }

            var (opened, closed) = _gate.Current;
            if (!opened.IsCompleted)
            {
                // Closed: wait for the gate, or for a warm-up connection (they come before the gate opens).
                var arrived = _injected.Reader.WaitToReadAsync(_unbound.Token).AsTask();
                await Task.WhenAny(opened, arrived);
                if (_unbound.IsCancellationRequested)
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

    /// <summary>
    /// Hands Kestrel one end of a connection made inside this process, marked with <paramref name="feature"/>. It is
    /// returned by the next accept: at once while the gate is closed (when the warm-up runs); while the gate is open,
    /// after the accept in progress. False once Kestrel has unbound this listener (the socket is then not taken).
    /// </summary>
    public bool Inject(Socket socket, IZeroDowntimeWarmupFeature feature) =>
        !_unbound.IsCancellationRequested && _injected.Writer.TryWrite((socket, feature));

    public ValueTask UnbindAsync(CancellationToken cancellationToken = default)
    {
        _unbound.Cancel();
        DisposeInjected();
        DisposeSocket();
        _registry.Release(_entry);
        return ValueTask.CompletedTask;
    }

    public ValueTask DisposeAsync()
    {
        _unbound.Cancel();
        DisposeInjected();
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

    /// <summary>Warm-up connections that Kestrel will never accept now: the warm-up's client sees them close.</summary>
    private void DisposeInjected()
    {
        _injected.Writer.TryComplete();
        while (_injected.Reader.TryRead(out var injected))
        {
            injected.Socket.Dispose();
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
