using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using ZeroDowntime.Hosting.Interop;
using ZeroDowntime.Hosting.Logging;
using ZeroDowntime.Hosting.Protocol;
using ZeroDowntime.Hosting.Systemd;

namespace ZeroDowntime.Hosting.Listeners;

/// <summary>
/// Owns every listening socket of the process as a raw descriptor, closed only with <c>close(2)</c>. Nothing
/// here is an owning <see cref="Socket"/>: one that is disposed or finalized (any GC after the host is gone) closes
/// abortively, setting linger 0 on the socket it shares with another process or even shutting it down, and
/// unlinks its Unix socket path. Kestrel only ever sees non-owning wrappers.
/// </summary>
internal sealed class ListenerRegistry(ILogger logger, IOptions<ZeroDowntimeOptions> options)
{
    // SOL_SOCKET/SO_REUSEPORT on Linux (asm-generic/socket.h). Read raw: .NET's ReuseAddress option maps to both
    // SO_REUSEADDR and SO_REUSEPORT when set, but reads back only SO_REUSEADDR.
    private const int SolSocket = 1;
    private const int SoReusePort = 15;
    private const int SoAcceptConn = 30;

    private readonly Lock _lock = new();
    private readonly List<ListenerEntry> _entries = [];

    private int? _predecessorPid;

    /// <summary>Adopts descriptors received from a predecessor; they wait here until Kestrel asks for their key.</summary>
    public void AddInherited(int predecessorPid, IReadOnlyList<ListenerDescriptor> descriptors, IReadOnlyList<int> fds)
    {
        lock (_lock)
        {
            _predecessorPid = predecessorPid;
            for (int i = 0; i < descriptors.Count; i++)
            {
                // A Unix endpoint's file as it is now: the one the predecessor bound, which serves this very socket. Only
                // that file is this process's to remove later (a plain shutdown, or an endpoint it drops).
                var key = ListenerKey.Parse(descriptors[i].Key);
                var file = key.UnixPath is { } path ? UnixFileIdentity.Of(path) : null;
                _entries.Add(new ListenerEntry(key, fds[i], inherited: true, descriptors[i].BoundEndPoint, ListenerState.Waiting, file));
            }
        }
    }

    /// <summary>
    /// Adopts listening sockets passed at start (<see cref="SocketActivation"/>): they wait here like inherited ones
    /// until Kestrel asks for their key. One whose key a predecessor handed over already is the same endpoint twice:
    /// closed (this process's copy only).
    /// </summary>
    public void AddActivated(IReadOnlyList<SocketActivation.ActivatedListener> listeners)
    {
        lock (_lock)
        {
            foreach (var listener in listeners)
            {
                if (_entries.Any(e => e.Key == listener.Key))
                {
                    Libc.close(listener.Fd);
                    continue;
                }

                var file = listener.Key.UnixPath is { } path ? UnixFileIdentity.Of(path) : null;
                _entries.Add(new ListenerEntry(listener.Key, listener.Fd, inherited: true, listener.Description, ListenerState.Waiting, file));
                logger.ListenerActivated(listener.Key.ToString(), listener.Description, listener.Fd, listener.Name);
            }
        }
    }

    /// <summary>
    /// First start: listeners passed at start that no endpoint asked for are closed, plainly: the service manager's
    /// own copy (a <c>.socket</c> unit) must keep listening, and its fd store is told separately. Returns their keys.
    /// </summary>
    public IReadOnlyList<ListenerKey> CloseDropped()
    {
        lock (_lock)
        {
            var dropped = _entries.Where(e => e.State == ListenerState.Dropped).ToArray();
            foreach (var entry in dropped)
            {
                entry.MoveTo(ListenerState.Unused);
            }

            return dropped.Select(e => e.Key).ToArray();
        }
    }

    /// <summary>
    /// Returns the listener for <paramref name="endPoint"/>: the inherited one with the same key if there is one,
    /// else a socket bound now by the app's <see cref="SocketTransportOptions.CreateBoundListenSocket"/>, as Kestrel
    /// would bind it, so that socket options set there are on the listener (and on every successor's, which
    /// inherits the same socket).
    /// </summary>
    /// <remarks>
    /// The hook's <see cref="Socket"/> is detached right after <c>listen()</c>, as any socket bound here. Its
    /// descriptor then belongs to the registry, and the object must be dropped, never disposed: .NET does not return
    /// from <c>Dispose</c> on a socket whose handle was marked invalid (found by
    /// <c>Acquire_HookSocketCollected_ListenerAndUnixFileSurvive</c>'s first version). Kestrel's own transport disposes
    /// that socket itself, so a hook has no reason to keep it.
    /// </remarks>
    public ListenerEntry Acquire(EndPoint endPoint, ListenerKey key, SocketTransportOptions transport)
    {
        lock (_lock)
        {
            // The same TCP endpoint twice (two "127.0.0.1:0") is told apart by its order of binding. A Unix path
            // cannot be bound twice: its second bind fails below and says so.
            for (int n = 2; key.Transport == ListenerTransport.Tcp && _entries.Any(e => e.Key == key && e.HeldByKestrel); n++)
            {
                key = key.WithOccurrence(n);
            }

            var inherited = _entries.FirstOrDefault(e => e.Key == key && e.State == ListenerState.Waiting);
            if (inherited is not null)
            {
                inherited.MoveTo(ListenerState.Serving);
                inherited.Binding = (LocalEndPoint(inherited.Fd) ?? endPoint, transport);
                logger.ListenerInherited(inherited.WireKey, inherited.Description, inherited.Fd);
                return inherited;
            }

            var (fd, bound, file) = BindFresh(endPoint, key, transport);
            var entry = new ListenerEntry(key, fd, inherited: false, ListenerKey.Describe(bound), ListenerState.Serving, file) { Binding = (bound, transport) };
            _entries.Add(entry);
            logger.ListenerBound(entry.WireKey, entry.Description);
            return entry;
        }
    }

    /// <summary>
    /// Kestrel unbound this listener (shutdown, or a configuration reload that dropped the endpoint). This process's
    /// reference is closed now: a plain <c>close(2)</c> never disturbs another process's copy, and a listener nobody
    /// serves any more must refuse connections rather than queue them.
    /// </summary>
    public void Release(ListenerEntry entry)
    {
        bool released = false;
        lock (_lock)
        {
            if (entry.HeldByKestrel)
            {
                entry.MoveTo(ListenerState.Released);
                released = true;
            }
        }

        if (released)
        {
            ListenerReleased?.Invoke(entry.Key);
        }
    }

    /// <summary>
    /// Told (outside the lock) about every listener <see cref="Release"/> closed: the coordinator takes an endpoint that
    /// a configuration reload dropped out of the service manager's fd store, whose copy would otherwise queue
    /// connections for nobody.
    /// </summary>
    public Action<ListenerKey>? ListenerReleased { get; set; }

    /// <summary>
    /// Runs <paramref name="send"/> with the listeners a successor gets, under the registry's lock: no descriptor can
    /// be closed (and its number reused by another file) between choosing it and passing it on.
    /// </summary>
    public int SendActiveListeners(Action<IReadOnlyList<ListenerEntry>> send)
    {
        lock (_lock)
        {
            var listeners = _entries.Where(e => e.State == ListenerState.Serving).ToArray();
            send(listeners);
            return listeners.Length;
        }
    }

    /// <summary>The listeners Kestrel holds in this process now (refusing ones included: they are still its endpoints).</summary>
    public IReadOnlyList<ListenerEntry> ActiveListeners()
    {
        lock (_lock)
        {
            return _entries.Where(e => e.HeldByKestrel).ToArray();
        }
    }

    /// <summary>What the Status frame lists: <see cref="ActiveListeners"/> in their wire form.</summary>
    public ListenerDescriptor[] DescribeActive()
    {
        lock (_lock)
        {
            return _entries.Where(e => e.HeldByKestrel).Select(e => e.Describe()).ToArray();
        }
    }

    /// <summary>Every listener this process has had, whatever its state (for tests and diagnostics).</summary>
    internal IReadOnlyList<ListenerEntry> Snapshot()
    {
        lock (_lock)
        {
            return _entries.ToArray();
        }
    }

    /// <summary>How many listeners this process serves, inherited and bound here (the <c>zerodowntime.listeners</c> gauge).</summary>
    public IReadOnlyList<(bool Inherited, int Count)> CountByOrigin()
    {
        lock (_lock)
        {
            var serving = _entries.Where(e => e.State == ListenerState.Serving).ToArray();
            return [(true, serving.Count(e => e.Inherited)), (false, serving.Count(e => !e.Inherited))];
        }
    }

    /// <summary>
    /// The sole server begins its shutdown drain: each listening socket is closed, so that the kernel refuses new
    /// connections at once instead of queueing them for nobody (they would be reset at exit). The descriptor number
    /// stays valid, pointing at an unconnected socket (<c>dup3</c> over it), because Kestrel's non-owning wrapper still
    /// holds the number until it unbinds: a plain close would let the number be reused by another file meanwhile.
    /// </summary>
    public void StopListening()
    {
        lock (_lock)
        {
            foreach (var entry in _entries)
            {
                switch (entry.State)
                {
                    case ListenerState.Serving:
                        int placeholder = Libc.socket(Libc.AF_UNIX, Libc.SOCK_STREAM | Libc.SOCK_CLOEXEC, 0);
                        if (placeholder < 0)
                        {
                            continue;
                        }

                        if (Libc.dup3(placeholder, entry.Fd, Libc.O_CLOEXEC) >= 0)
                        {
                            entry.MoveTo(ListenerState.Refusing);
                        }

                        Libc.close(placeholder);
                        break;
                    case ListenerState.Waiting:
                        // No wrapper holds its number, so a plain close refuses just as well. Not Unused: as the sole
                        // server this process removes its Unix file with the others at the end.
                        entry.MoveTo(ListenerState.Closed);
                        break;
                }
            }
        }
    }

    /// <summary>
    /// At ApplicationStarted: inherited sockets that the current configuration did not bind are dropped. They stay
    /// open (the predecessor may still serve them, if this process withdraws) until <see cref="ShutDownDropped"/>.
    /// </summary>
    public void DropUnusedInherited()
    {
        lock (_lock)
        {
            foreach (var entry in _entries.Where(e => e.State == ListenerState.Waiting))
            {
                entry.MoveTo(ListenerState.Dropped);
                logger.InheritedListenerUnused(entry.WireKey, entry.Description);
            }
        }
    }

    /// <summary>
    /// This process took over: the dropped sockets are shut down, so that the kernel refuses their connections at once
    /// although the draining predecessor still holds a copy (it closed its gate at the commit: without this, they
    /// would queue for nobody until it exits), then closed. Returns their keys (for the service manager's fd store).
    /// </summary>
    public IReadOnlyList<ListenerKey> ShutDownDropped()
    {
        lock (_lock)
        {
            var dropped = _entries.Where(e => e.State == ListenerState.Dropped).ToArray();
            foreach (var entry in dropped)
            {
                Libc.shutdown(entry.Fd, Libc.SHUT_RDWR);
                entry.MoveTo(ListenerState.Unused);
                logger.DroppedListenerShutDown(entry.WireKey, entry.Description);
            }

            return dropped.Select(e => e.Key).ToArray();
        }
    }

    /// <summary>
    /// Serving again after a successor was lost: a listener that the successor dropped was shut down by it and listens
    /// no more (<c>SO_ACCEPTCONN</c> 0). It is bound anew, as Kestrel asked for it, behind the same descriptor number;
    /// its <see cref="HandoffConnectionListener"/> makes a new wrapper before it accepts again. Runs before the gate
    /// reopens. Returns how many were revived.
    /// </summary>
    public int ReviveDeadListeners()
    {
        int revived = 0;
        lock (_lock)
        {
            foreach (var entry in _entries.Where(e => e.State == ListenerState.Serving && e.Binding is not null && !IsListening(e.Fd)))
            {
                var (endPoint, transport) = entry.Binding!.Value;
                try
                {
                    var (fd, _, file) = BindFresh(endPoint, entry.Key, transport);
                    if (entry.Replace(fd))
                    {
                        entry.UnixFile = file; // the file bound now is this process's to remove at the end
                        revived++;
                        logger.ListenerRevived(entry.WireKey, entry.Description);
                    }
                }
                catch (Exception ex) when (ex is IOException or SocketException or InvalidOperationException)
                {
                    logger.ListenerReviveFailed(entry.WireKey, ex);
                }
            }
        }

        return revived;
    }

    /// <summary>The address the socket is bound to (the actual port of a <c>:0</c> endpoint), or null.</summary>
    private static EndPoint? LocalEndPoint(int fd)
    {
        try
        {
            using var view = new Socket(new SafeSocketHandle(fd, ownsHandle: false));
            return view.LocalEndPoint;
        }
        catch (SocketException)
        {
            return null;
        }
    }

    private static bool IsListening(int fd)
    {
        // A non-owning view: disposing it touches nothing.
        using var view = new Socket(new SafeSocketHandle(fd, ownsHandle: false));
        Span<byte> value = stackalloc byte[sizeof(int)];
        return view.GetRawSocketOption(SolSocket, SoAcceptConn, value) == sizeof(int) && BitConverter.ToInt32(value) != 0;
    }

    /// <summary>Once this process is the server, Unix socket files of endpoints it dropped go too.</summary>
    public void RemoveUnusedInheritedUnixFiles()
    {
        lock (_lock)
        {
            foreach (var entry in _entries.Where(e => e.State == ListenerState.Unused))
            {
                TryDeleteUnixFile(entry);
            }
        }
    }

    /// <summary>
    /// Closes every descriptor left. <paramref name="removeUnixFiles"/> when this process is the only server of them
    /// (a plain shutdown, as Kestrel would); never after a handoff, when a successor serves the same files.
    /// </summary>
    public void CloseAll(bool removeUnixFiles)
    {
        lock (_lock)
        {
            foreach (var entry in _entries)
            {
                // An unused one's file was the successor-server's to remove (RemoveUnusedInheritedUnixFiles); by now
                // the path may name someone else's socket.
                bool wasUnused = entry.State is ListenerState.Unused or ListenerState.Dropped;
                if (entry.HasDescriptor)
                {
                    entry.MoveTo(ListenerState.Closed);
                }

                if (removeUnixFiles && !wasUnused)
                {
                    TryDeleteUnixFile(entry);
                }
            }
        }
    }

    private (int Fd, EndPoint Bound, UnixFileIdentity? File) BindFresh(EndPoint endPoint, ListenerKey key, SocketTransportOptions transport)
    {
        if (key.UnixPath is { } path)
        {
            RemoveStaleUnixSocket(path);
        }

        Socket socket;
        try
        {
            // The app's hook, as Kestrel's own transport calls it: it creates and binds the socket, with whatever
            // options the app sets there (TCP_DEFER_ACCEPT, buffer sizes, IPV6_V6ONLY).
            socket = transport.CreateBoundListenSocket(endPoint);
        }
        catch (SocketException ex) when (ex.SocketErrorCode == SocketError.AddressAlreadyInUse)
        {
            throw AddressInUse(key, ex);
        }

        try
        {
            RefuseReusePort(socket, key);
            if (!socket.IsBound)
            {
                // listen(2) on an unbound TCP socket would pick a random port on every address: never what was asked.
                throw new InvalidOperationException($"SocketTransportOptions.CreateBoundListenSocket returned a socket that is not bound, for {key}: it must call Bind (CreateDefaultBoundListenSocket does).");
            }

            socket.Listen(transport.Backlog);
        }
        catch (SocketException ex) when (ex.SocketErrorCode == SocketError.AddressAlreadyInUse)
        {
            socket.Dispose();
            throw AddressInUse(key, ex);
        }
        catch
        {
            // Not shared with anyone yet and no accept pending: this close is an ordinary one.
            socket.Dispose();
            throw;
        }

        // The file the socket was bound to, read right after bind() and listen(): from here on the path can only be
        // replaced by a process that found it stale, and only this file is ever removed by this process.
        var file = key.UnixPath is { } unixPath ? UnixFileIdentity.Of(unixPath) : null;

        // Take the descriptor away from the Socket for good, right after listen() and before anyone else sees it: with
        // its handle invalid and its finalizer suppressed, neither a GC nor a Dispose can ever close it abortively or
        // unlink the Unix path. The same for a socket the app's hook made: the hook's Socket object is dead from here.
        var bound = socket.LocalEndPoint!;
        int fd = (int)socket.SafeHandle.DangerousGetHandle();
        socket.SafeHandle.SetHandleAsInvalid();
#pragma warning disable CA1816 // Deliberate: this Socket must never run its finalizer (see above).
        GC.SuppressFinalize(socket);
#pragma warning restore CA1816
        return (fd, bound, file);
    }

    /// <summary>
    /// <c>SO_REUSEPORT</c> would let a second copy of the app that missed the handoff socket bind the same port beside
    /// this one, where it must fail to bind (docs/architecture.md, step 10), and closing one of two reuseport sockets
    /// resets the connections queued on it. A handoff passes the one socket on instead, so it is refused here.
    /// </summary>
    private void RefuseReusePort(Socket socket, ListenerKey key)
    {
        if (socket.AddressFamily is not (AddressFamily.InterNetwork or AddressFamily.InterNetworkV6))
        {
            return;
        }

        Span<byte> value = stackalloc byte[sizeof(int)];
        if (socket.GetRawSocketOption(SolSocket, SoReusePort, value) == sizeof(int) && BitConverter.ToInt32(value) != 0)
        {
            string detail = $"Cannot listen on {key}: SocketTransportOptions.CreateBoundListenSocket set SO_REUSEPORT (ReuseAddress on Linux) on it. With UseZeroDowntime the next version takes this very socket over, and SO_REUSEPORT would instead let a copy that missed the handoff socket bind beside this one (and reset the connections queued on whichever closes first). Remove the option, or set ZeroDowntime:Enabled=false to run without handoffs.";
            logger.ReusePortRefused(key.ToString());

            // An IOException, as Kestrel's own bind failures are: Kestrel's "localhost" binding swallows anything else
            // from one of its two addresses and would serve on the other. The exit hook finds the code inside.
            throw new IOException(detail, new ZeroDowntimeStartupException(ZeroDowntimeExitCodes.InvalidConfiguration, detail));
        }
    }

    private AddressInUseException AddressInUse(ListenerKey key, SocketException ex)
    {
        // Translated here, where we know why it matters: another process holds the address and did not hand it
        // over. Kestrel wraps an AddressInUseException in its own IOException; the exit hook finds the reason inside.
        string socketPath = options.Value.SocketPath!;
        string detail = _predecessorPid is { } pid
            ? $"Cannot listen on {key}: the address is in use by another process, and the predecessor (pid {pid}, at {socketPath}) did not hand it over. Free it, or remove the endpoint from the configuration."
            : $"Cannot listen on {key}: the address is in use by another process, and no predecessor answers at {socketPath}. A copy of this app may run without handoffs (no UseZeroDowntime, ZeroDowntime:Enabled=false, or another ZeroDowntime:SocketPath), or another program holds the port: stop it, or give both the same SocketPath.";
        logger.AddressInUse(key.ToString(), _predecessorPid ?? 0, socketPath);
        return new AddressInUseException(detail, new ZeroDowntimeStartupException(ZeroDowntimeExitCodes.AddressInUse, detail, ex));
    }

    /// <summary>A Unix socket file left by a process killed with SIGKILL refuses connections: replace it.</summary>
    private void RemoveStaleUnixSocket(string path)
    {
        var stat = Libc.TryStat(path);
        if (stat is null || (stat.Value.Mode & Libc.S_IFMT) != Libc.S_IFSOCK || UnixFileIdentity.Of(path) is not { } stale)
        {
            return;
        }

        using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            probe.Connect(new UnixDomainSocketEndPoint(path));
        }
        catch (SocketException ex) when (ex.SocketErrorCode == SocketError.ConnectionRefused)
        {
            // Only the file that refused: another process starting at the same moment may have replaced it already.
            switch (UnixSocketFile.RemoveIfSame(path, stale))
            {
                case (UnixSocketFileRemoval.Removed, _):
                    logger.StaleUnixEndpointReplaced(path);
                    break;
                case (UnixSocketFileRemoval.Displaced or UnixSocketFileRemoval.Failed, var detail):
                    logger.UnixSocketFileNotRemoved(path, detail!);
                    break;
            }
        }
        catch (SocketException)
        {
            // Anything else (permission, path gone): let bind report it.
        }
    }

    /// <summary>
    /// Removes the Unix socket file of <paramref name="entry"/> only if the path still names the file this listener is
    /// bound to: once this process has stopped listening, a process that started since may have found the file stale,
    /// replaced it and be serving on its own (issue 18 item 2). Removing by name would leave it unreachable.
    /// </summary>
    private void TryDeleteUnixFile(ListenerEntry entry)
    {
        if (entry.Key.UnixPath is not { } path || entry.UnixFile is not { } file)
        {
            return;
        }

        switch (UnixSocketFile.RemoveIfSame(path, file))
        {
            case (UnixSocketFileRemoval.Kept, _):
                logger.UnixSocketFileKept(path);
                break;
            case (UnixSocketFileRemoval.Displaced or UnixSocketFileRemoval.Failed, var detail):
                logger.UnixSocketFileNotRemoved(path, detail!);
                break;
        }
    }
}
