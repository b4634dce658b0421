using System.Globalization;
using System.Net;
using System.Net.Sockets;
using ZeroDowntime.Hosting.Interop;
using ZeroDowntime.Hosting.Listeners;

namespace ZeroDowntime.Hosting.Systemd;

/// <summary>
/// Listening sockets passed at start the way systemd passes them (sd_listen_fds(3)): <c>LISTEN_PID</c> names this
/// process, <c>LISTEN_FDS</c> says how many descriptors from fd 3 on, <c>LISTEN_FDNAMES</c> names them (colon-separated).
/// They come from systemd's fd store after a restart, from a <c>.socket</c> unit, from <c>systemd-socket-activate</c>,
/// or from <c>zerodowntime run</c> restarting a crashed app. Each listening stream socket is adopted like a listener a
/// predecessor handed over, under the key its name encodes (<see cref="ListenerFdName"/>) or else the key of the
/// address it is bound to, so that Kestrel's matching endpoint serves it; one no endpoint asks for is closed once
/// the app has started. Each gets close-on-exec (systemd leaves it off), and the variables are removed, so that no
/// process started from this one takes them for its own.
/// </summary>
internal static class SocketActivation
{
    /// <summary>SD_LISTEN_FDS_START.</summary>
    public const int FirstFd = 3;

    private const int SolSocket = 1;
    private const int SoAcceptConn = 30;
    private const int SoType = 3;
    private const int FSetFd = 2;
    private const int FdCloExec = 1;

    /// <summary>A descriptor passed at start: its key, the descriptor, where it is bound (for logs), and its name.</summary>
    internal readonly record struct ActivatedListener(ListenerKey Key, int Fd, string Description, string Name);

    /// <summary>
    /// Reads and removes the variables. Returns the listeners, and the passed descriptors that are not listening stream
    /// sockets (left open and untouched: they may be the app's own).
    /// </summary>
    public static (IReadOnlyList<ActivatedListener> Listeners, IReadOnlyList<int> Others) TakeFromEnvironment()
    {
        string? pid = Environment.GetEnvironmentVariable("LISTEN_PID");
        string? count = Environment.GetEnvironmentVariable("LISTEN_FDS");
        string? names = Environment.GetEnvironmentVariable("LISTEN_FDNAMES");
        Environment.SetEnvironmentVariable("LISTEN_PID", null);
        Environment.SetEnvironmentVariable("LISTEN_FDS", null);
        Environment.SetEnvironmentVariable("LISTEN_FDNAMES", null);
        if (!int.TryParse(pid, NumberStyles.None, CultureInfo.InvariantCulture, out int listenPid) || listenPid != Environment.ProcessId
            || !int.TryParse(count, NumberStyles.None, CultureInfo.InvariantCulture, out int n) || n <= 0)
        {
            return ([], []);
        }

        return Adopt(n, names?.Split(':') ?? []);
    }

    /// <summary>Adopts descriptors <see cref="FirstFd"/> to <see cref="FirstFd"/> + <paramref name="count"/> - 1 (the test seam).</summary>
    internal static (IReadOnlyList<ActivatedListener> Listeners, IReadOnlyList<int> Others) Adopt(int count, IReadOnlyList<string> names)
    {
        var listeners = new List<ActivatedListener>();
        var others = new List<int>();
        for (int i = 0; i < count; i++)
        {
            int fd = FirstFd + i;
            string name = i < names.Count ? names[i] : "";
            EndPoint? bound = ListeningStreamSocketAddress(fd);
            if (bound is null)
            {
                others.Add(fd);
                continue;
            }

            Libc.fcntl(fd, FSetFd, FdCloExec);
            var key = ListenerFdName.Decode(name) ?? ListenerKey.For(bound);
            if (key is null)
            {
                // Bound to an abstract or unnamed Unix address: no configured endpoint can be it.
                Libc.close(fd);
                continue;
            }

            // The same address twice (systemd can pass two sockets for one port, e.g. with different options): the
            // second is the endpoint's second occurrence, as Kestrel would number it.
            for (int occurrence = 2; key.Transport == ListenerTransport.Tcp && listeners.Any(l => l.Key == key); occurrence++)
            {
                key = key.WithOccurrence(occurrence);
            }

            if (listeners.Any(l => l.Key == key))
            {
                Libc.close(fd); // one Unix path twice: the kernel cannot have bound that, but a name can say it
                continue;
            }

            listeners.Add(new ActivatedListener(key, fd, ListenerKey.Describe(bound), name));
        }

        return (listeners, others);
    }

    /// <summary>The bound address of a listening stream socket, or null when the descriptor is anything else.</summary>
    internal static EndPoint? ListeningStreamSocketAddress(int fd)
    {
        try
        {
            // A non-owning view: disposing it touches nothing.
            using var view = new Socket(new SafeSocketHandle(fd, ownsHandle: false));
            Span<byte> value = stackalloc byte[sizeof(int)];
            if (view.GetRawSocketOption(SolSocket, SoType, value) != sizeof(int) || BitConverter.ToInt32(value) != (int)SocketType.Stream
                || view.GetRawSocketOption(SolSocket, SoAcceptConn, value) != sizeof(int) || BitConverter.ToInt32(value) == 0)
            {
                return null;
            }

            return view.LocalEndPoint;
        }
        catch (SocketException)
        {
            return null; // not a socket, or not open
        }
    }
}
