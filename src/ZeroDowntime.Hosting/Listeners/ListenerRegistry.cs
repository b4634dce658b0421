using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;
using ZeroDowntime.Hosting.Interop;
using ZeroDowntime.Hosting.Logging;
using ZeroDowntime.Hosting.Protocol;

namespace ZeroDowntime.Hosting.Listeners;

/// <summary>
/// Owns every listening socket of the process as a raw descriptor. Kestrel only ever sees non-owning
/// <see cref="Socket"/> wrappers, because an owning socket that is disposed or finalized closes abortively
/// (linger 0, or even <c>shutdown()</c>) and would damage the listener for the process it is shared with.
/// </summary>
internal sealed class ListenerRegistry(ILogger<ListenerRegistry> logger)
{
    private readonly Lock _lock = new();
    private readonly List<ListenerEntry> _entries = [];

    /// <summary>Adopts descriptors received from a predecessor; they wait here until Kestrel asks for their key.</summary>
    public void AddInherited(IReadOnlyList<ListenerDescriptor> descriptors, IReadOnlyList<int> fds)
    {
        lock (_lock)
        {
            for (int i = 0; i < descriptors.Count; i++)
            {
                _entries.Add(new ListenerEntry(descriptors[i].Key, fds[i], owner: null, inherited: true, descriptors[i].BoundEndPoint));
            }
        }
    }

    public int InheritedCount
    {
        get
        {
            lock (_lock)
            {
                return _entries.Count(e => e.Inherited);
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

            var socket = BindFresh(endPoint, backlog);
            var entry = new ListenerEntry(key, (int)socket.Handle, socket, inherited: false, ListenerKey.Describe(socket.LocalEndPoint!))
            {
                InUse = true,
            };
            _entries.Add(entry);
            logger.ListenerBound(key, entry.Description);
            return entry;
        }
    }

    /// <summary>Kestrel no longer uses this listener in this process (it unbound it).</summary>
    public void Release(ListenerEntry entry)
    {
        lock (_lock)
        {
            entry.InUse = false;
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
                Libc.close(entry.Fd);
                entry.Fd = -1;
                logger.InheritedListenerUnused(entry.Key, entry.Description);
            }
        }
    }

    /// <summary>
    /// On a plain shutdown the sockets are closed and, as Kestrel would, the Unix socket files removed: those this
    /// process bound, and the inherited ones when <paramref name="removeInheritedUnixFiles"/> (this process was
    /// their only server; a successor that stops before its commit shares them with the running process).
    /// </summary>
    public void CloseAllOnShutdown(bool removeInheritedUnixFiles)
    {
        lock (_lock)
        {
            foreach (var entry in _entries.Where(e => e.Fd >= 0))
            {
                if (entry.Owner is not null)
                {
                    // No operation is pending on the owner (Kestrel accepted through its own wrapper), so this
                    // close is orderly; for a Unix socket it also removes the file.
                    entry.Owner.Dispose();
                }
                else
                {
                    Libc.close(entry.Fd);
                    if (removeInheritedUnixFiles && entry.Key.StartsWith("unix:", StringComparison.Ordinal))
                    {
                        TryDelete(entry.Key["unix:".Length..]);
                    }
                }

                entry.Fd = -1;
            }
        }
    }

    private Socket BindFresh(EndPoint endPoint, int backlog)
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
            return socket;
        }
        catch (SocketException ex) when (ex.SocketErrorCode == SocketError.AddressAlreadyInUse)
        {
            socket.Dispose();
            throw new AddressInUseException(ex.Message, ex);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
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
            TryDelete(path);
            logger.StaleUnixEndpointReplaced(path);
        }
        catch (SocketException)
        {
            // Anything else (permission, path gone): let bind report it.
        }
    }

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }
}

internal sealed class ListenerEntry(string key, int fd, Socket? owner, bool inherited, string description)
{
    public string Key { get; } = key;

    /// <summary>The descriptor, or -1 once closed.</summary>
    public int Fd { get; set; } = fd;

    /// <summary>The socket that bound the descriptor in this process; null for an inherited one.</summary>
    public Socket? Owner { get; } = owner;

    public bool Inherited { get; } = inherited;

    public string Description { get; } = description;

    public bool InUse { get; set; }
}
