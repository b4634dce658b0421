using System.Globalization;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Logging;
using ZeroDowntime.Hosting.Interop;
using ZeroDowntime.Hosting.Listeners;
using ZeroDowntime.Hosting.Logging;

namespace ZeroDowntime.Hosting.Systemd;

/// <summary>
/// The service manager's file descriptor store (sd_pid_notify_with_fds(3)): the process that serves gives systemd (or
/// <c>zerodowntime run</c>) a copy of each listening socket, <c>FDSTORE=1</c> and <c>FDNAME=&lt;key&gt;</c> with the
/// descriptor as <c>SCM_RIGHTS</c> on <c>NOTIFY_SOCKET</c>, and takes back what it stopped using with
/// <c>FDSTOREREMOVE=1</c>. The keeper holds the sockets while no process of the app runs, so a crash only delays
/// clients (they wait in the kernel's queue), and gives them back with <c>LISTEN_FDS</c> at the restart
/// (<see cref="SocketActivation"/>). Nothing is sent without <c>NOTIFY_SOCKET</c>, or when the keeper says that it
/// keeps nothing (<c>FDSTORE=0</c>: systemd 254 and later set <c>$FDSTORE</c> to <c>FileDescriptorStoreMax=</c>).
/// </summary>
internal sealed class ServiceManagerFdStore(string? notifySocket, string? storeLimit, ILogger logger, TimeProvider time)
{
    private static readonly TimeSpan SendTimeout = TimeSpan.FromSeconds(1);
    private readonly Lock _lock = new();
    private readonly HashSet<ListenerKey> _stored = [];

    public ServiceManagerFdStore(string? notifySocket, ILogger logger, TimeProvider time)
        : this(notifySocket, Environment.GetEnvironmentVariable("FDSTORE"), logger, time)
    {
    }

    /// <summary>The keeper takes descriptors: a <c>NOTIFY_SOCKET</c> and no <c>FDSTORE=0</c>.</summary>
    public bool Enabled => !string.IsNullOrEmpty(notifySocket)
        && (string.IsNullOrEmpty(storeLimit) || !int.TryParse(storeLimit, NumberStyles.None, CultureInfo.InvariantCulture, out int max) || max > 0);

    /// <summary>
    /// Stores a copy of each listener that this process serves and has not stored yet; the descriptors are read under
    /// the registry's lock (<see cref="ListenerRegistry.SendActiveListeners"/>), so none is closed and reused meanwhile.
    /// Storing the same socket twice is harmless: systemd and <c>zerodowntime run</c> keep one copy per socket.
    /// </summary>
    public void Store(ListenerRegistry registry)
    {
        if (!Enabled)
        {
            return;
        }

        registry.SendActiveListeners(listeners =>
        {
            foreach (var listener in listeners)
            {
                lock (_lock)
                {
                    if (_stored.Contains(listener.Key))
                    {
                        continue;
                    }
                }

                string name = ListenerFdName.Encode(listener.Key);
                if (Send($"FDSTORE=1\nFDNAME={name}", listener.Fd))
                {
                    lock (_lock)
                    {
                        _stored.Add(listener.Key);
                    }

                    logger.ListenerStored(listener.WireKey, name, listener.Fd);
                }
            }
        });
    }

    /// <summary>The keeper closes its copies of <paramref name="key"/>: nobody will serve that endpoint any more.</summary>
    public void Remove(ListenerKey key)
    {
        if (!Enabled)
        {
            return;
        }

        string name = ListenerFdName.Encode(key);
        if (Send($"FDSTOREREMOVE=1\nFDNAME={name}", fd: -1))
        {
            lock (_lock)
            {
                _stored.Remove(key);
            }

            logger.ListenerUnstored(key.ToString(), name);
        }
    }

    private bool Send(string state, int fd)
    {
        // An abstract socket is written with a leading '@' in the variable and a leading NUL on the wire.
        string path = notifySocket![0] == '@' ? "\0" + notifySocket[1..] : notifySocket;
        try
        {
            using var socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
            socket.Connect(new UnixDomainSocketEndPoint(path));
            FdPassing.Send(socket, Encoding.UTF8.GetBytes(state), fd >= 0 ? [fd] : [], SendTimeout, time);
            return true;
        }
        catch (Exception ex) when (ex is SocketException or System.ComponentModel.Win32Exception)
        {
            logger.FdStoreFailed(state.Replace('\n', ' '), ex.Message);
            return false;
        }
    }
}
