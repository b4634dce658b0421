using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using ZeroDowntime.Hosting.Interop;
using ZeroDowntime.Hosting.Logging;
using ZeroDowntime.Hosting.Protocol;

namespace ZeroDowntime.Hosting.Listeners;

/// <summary>
/// Owns every listening socket of the process as a raw descriptor, closed only with <c>close(2)</c>. Nothing
/// here is an owning <see cref="Socket"/>: one that is disposed or finalized (any GC after the host is gone) closes
/// abortively, setting linger 0 on the socket it shares with another process or even shutting it down, and
/// unlinks its Unix socket path. Kestrel only ever sees non-owning wrappers.
/// </summary>
internal sealed class ListenerRegistry(ILogger<ListenerRegistry> logger, IOptions<ZeroDowntimeOptions> options)
{
    private const string UnixPrefix = "unix:";
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
                _entries.Add(new ListenerEntry(descriptors[i].Key, fds[i], inherited: true, descriptors[i].BoundEndPoint));
            }
        }
    }

    /// <summary>
    /// Returns the listener for <paramref name="endPoint"/>: the inherited one with the same key if there is one,
    /// else a socket bound now.
    /// </summary>
    public ListenerEntry Acquire(EndPoint endPoint, string baseKey, int backlog)
    {
        lock (_lock)
        {
            // The same key twice (two "127.0.0.1:0" endpoints) is told apart by its order of binding.
            string key = baseKey;
            for (int n = 2; _entries.Any(e => e.Key == key && e.InUse); n++)
            {
                key = $"{baseKey}#{n}";
            }

            var inherited = _entries.FirstOrDefault(e => e.Key == key && !e.InUse && e.Fd >= 0);
            if (inherited is not null)
            {
                inherited.InUse = true;
                logger.ListenerInherited(key, inherited.Description, inherited.Fd);
                return inherited;
            }

            var (fd, bound) = BindFresh(endPoint, key, backlog);
            var entry = new ListenerEntry(key, fd, inherited: false, ListenerKey.Describe(bound)) { InUse = true };
            _entries.Add(entry);
            logger.ListenerBound(key, entry.Description);
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
        lock (_lock)
        {
            entry.InUse = false;
            CloseFd(entry);
        }
    }

    /// <summary>
    /// Runs <paramref name="send"/> with the listeners a successor gets, under the registry's lock: no descriptor can
    /// be closed (and its number reused by another file) between choosing it and passing it on.
    /// </summary>
    public int SendActiveListeners(Action<IReadOnlyList<ListenerEntry>> send)
    {
        lock (_lock)
        {
            var listeners = _entries.Where(e => e.InUse && e.Fd >= 0 && !e.Refusing).ToArray();
            send(listeners);
            return listeners.Length;
        }
    }

    /// <summary>The listeners a successor gets: those Kestrel serves in this process now.</summary>
    public IReadOnlyList<ListenerEntry> ActiveListeners()
    {
        lock (_lock)
        {
            return _entries.Where(e => e.InUse && e.Fd >= 0).ToArray();
        }
    }

    /// <summary>How many listeners this process serves, inherited and bound here (the <c>zerodowntime.listeners</c> gauge).</summary>
    public IReadOnlyList<(bool Inherited, int Count)> CountByOrigin()
    {
        lock (_lock)
        {
            var serving = _entries.Where(e => e.InUse && e.Fd >= 0 && !e.Refusing).ToArray();
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
            foreach (var entry in _entries.Where(e => e.Fd >= 0 && !e.Refusing))
            {
                int placeholder = Libc.socket(Libc.AF_UNIX, Libc.SOCK_STREAM | Libc.SOCK_CLOEXEC, 0);
                if (placeholder < 0)
                {
                    continue;
                }

                if (Libc.dup3(placeholder, entry.Fd, Libc.O_CLOEXEC) >= 0)
                {
                    entry.Refusing = true;
                }

                Libc.close(placeholder);
            }
        }
    }

    /// <summary>
    /// Closes inherited sockets that the current configuration did not bind, so no client connects into a queue
    /// that nobody serves once the predecessor is gone.
    /// </summary>
    public void CloseUnusedInherited()
    {
        lock (_lock)
        {
            foreach (var entry in _entries.Where(e => e.Inherited && !e.InUse && e.Fd >= 0))
            {
                CloseFd(entry);
                entry.Unused = true;
                logger.InheritedListenerUnused(entry.Key, entry.Description);
            }
        }
    }

    /// <summary>Once this process is the server, Unix socket files of endpoints it dropped go too.</summary>
    public void RemoveUnusedInheritedUnixFiles()
    {
        lock (_lock)
        {
            foreach (var entry in _entries.Where(e => e.Unused))
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
                CloseFd(entry);
                if (removeUnixFiles && !entry.Unused)
                {
                    TryDeleteUnixFile(entry);
                }
            }
        }
    }

    private static void CloseFd(ListenerEntry entry)
    {
        if (entry.Fd >= 0)
        {
            Libc.close(entry.Fd);
            entry.Fd = -1;
        }
    }

    private (int Fd, EndPoint Bound) BindFresh(EndPoint endPoint, string key, int backlog)
    {
        Socket socket;
        switch (endPoint)
        {
            case IPEndPoint ip:
                socket = new Socket(ip.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
                if (ip.Address.Equals(IPAddress.IPv6Any))
                {
                    socket.DualMode = true;
                }

                break;
            case UnixDomainSocketEndPoint unix:
                RemoveStaleUnixSocket(ListenerKey.UnixPath(unix));
                socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                break;
            default:
                throw new NotSupportedException($"Cannot bind {endPoint}.");
        }

        try
        {
            socket.Bind(endPoint);
            socket.Listen(backlog);
        }
        catch (SocketException ex) when (ex.SocketErrorCode == SocketError.AddressAlreadyInUse)
        {
            // Translated here, where we know why it matters: another process holds the address and did not hand it
            // over. Kestrel wraps an AddressInUseException in its own IOException; the exit hook finds the reason inside.
            socket.Dispose();
            string socketPath = options.Value.SocketPath!;
            string detail = _predecessorPid is { } pid
                ? $"Cannot listen on {key}: the address is in use by another process, and the predecessor (pid {pid}, at {socketPath}) did not hand it over. Free it, or remove the endpoint from the configuration."
                : $"Cannot listen on {key}: the address is in use by another process, and no predecessor answers at {socketPath}. A copy of this app may run without handoffs (no UseZeroDowntime, ZeroDowntime:Enabled=false, or another ZeroDowntime:SocketPath), or another program holds the port: stop it, or give both the same SocketPath.";
            logger.AddressInUse(detail);
            throw new AddressInUseException(detail, new ZeroDowntimeStartupException(ZeroDowntimeExitCodes.AddressInUse, detail, ex));
        }
        catch
        {
            socket.Dispose();
            throw;
        }

        // Take the descriptor away from the Socket for good: with its handle invalid and its finalizer suppressed,
        // neither a GC nor a Dispose can ever close it abortively or unlink the Unix path.
        var bound = socket.LocalEndPoint!;
        int fd = (int)socket.SafeHandle.DangerousGetHandle();
        socket.SafeHandle.SetHandleAsInvalid();
#pragma warning disable CA1816 // Deliberate: this Socket must never run its finalizer (see above).
        GC.SuppressFinalize(socket);
#pragma warning restore CA1816
        return (fd, bound);
    }

    /// <summary>A Unix socket file left by a process killed with SIGKILL refuses connections: replace it.</summary>
    private void RemoveStaleUnixSocket(string path)
    {
        var stat = Libc.TryStat(path);
        if (stat is null || (stat.Value.Mode & Libc.S_IFMT) != Libc.S_IFSOCK)
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
            File.Delete(path);
            logger.StaleUnixEndpointReplaced(path);
        }
        catch (SocketException)
        {
            // Anything else (permission, path gone): let bind report it.
        }
    }

    private static void TryDeleteUnixFile(ListenerEntry entry)
    {
        if (!entry.Key.StartsWith(UnixPrefix, StringComparison.Ordinal))
        {
            return;
        }

        try
        {
            File.Delete(entry.Key[UnixPrefix.Length..]);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }
}

internal sealed class ListenerEntry(string key, int fd, bool inherited, string description)
{
    public string Key { get; } = key;

    /// <summary>The descriptor, or -1 once closed.</summary>
    public int Fd { get; set; } = fd;

    public bool Inherited { get; } = inherited;

    public string Description { get; } = description;

    public bool InUse { get; set; }

    /// <summary>Inherited, but the current configuration does not use it.</summary>
    public bool Unused { get; set; }

    /// <summary>Closed for the shutdown drain: the descriptor is a placeholder (see <see cref="ListenerRegistry.StopListening"/>).</summary>
    public bool Refusing { get; set; }
}
