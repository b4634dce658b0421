using ZeroDowntime.Hosting.Interop;
using ZeroDowntime.Hosting.Protocol;

namespace ZeroDowntime.Hosting.Listeners;

/// <summary>Where a listener of this process is in its life. Only the registry moves it, under its lock.</summary>
internal enum ListenerState
{
    /// <summary>Received from the predecessor; Kestrel has not asked for it (yet). The descriptor is open.</summary>
    Waiting,

    /// <summary>Kestrel accepts on it (through a non-owning wrapper). The descriptor is open and listening.</summary>
    Serving,

    /// <summary>
    /// The sole server's shutdown drain closed it: the descriptor number is an unconnected placeholder socket (see
    /// <see cref="ListenerRegistry.StopListening"/>), still held by Kestrel's wrapper until it unbinds.
    /// </summary>
    Refusing,

    /// <summary>Kestrel unbound it (shutdown, or a reload that dropped the endpoint); the descriptor is closed.</summary>
    Released,

    /// <summary>
    /// Inherited, but the current configuration never asked for it (found at ApplicationStarted). The descriptor stays
    /// open while the predecessor may still serve it: if this process takes over, the socket is shut down (nobody will
    /// serve it, so the kernel must refuse at once, even though the draining predecessor still holds a copy) and it
    /// becomes <see cref="Unused"/>; if this process withdraws, it is merely closed.
    /// </summary>
    Dropped,

    /// <summary>
    /// Inherited, but the current configuration never asked for it, and this process took over: the socket was shut
    /// down and the descriptor is closed. Its Unix socket file is removed then, and never again after that.
    /// </summary>
    Unused,

    /// <summary>Closed by the registry at the end (or, never served, at the start of a shutdown drain).</summary>
    Closed,
}

/// <summary>One listening socket of this process, as a raw descriptor that only the registry closes.</summary>
internal sealed class ListenerEntry
{
    internal ListenerEntry(ListenerKey identity, int fd, bool inherited, string description, ListenerState state, UnixFileIdentity? unixFile = null)
    {
        Key = identity;
        Fd = fd;
        Inherited = inherited;
        Description = description;
        State = state;
        UnixFile = unixFile;
    }

    /// <summary>The endpoint this listener serves, as configured.</summary>
    public ListenerKey Key { get; }

    /// <summary>The wire form of <see cref="Key"/>, as <see cref="ListenerDescriptor.Key"/> carries it.</summary>
    public string WireKey => Key.ToString();

    /// <summary>The descriptor while <see cref="HasDescriptor"/>, else -1.</summary>
    public int Fd { get; private set; }

    /// <summary>Received from a predecessor (else bound by this process).</summary>
    public bool Inherited { get; }

    /// <summary>The endpoint as the kernel bound it (the actual port of <c>:0</c>), for logs and status.</summary>
    public string Description { get; }

    public ListenerState State { get; private set; }

    private int _generation;

    /// <summary>
    /// For a Unix endpoint, the socket file this listener is bound to: read right after this process bound it, or when
    /// it received the listener (the path then names the file its predecessor bound, which still serves it). Null when
    /// the path named nothing then. Only that file is ever removed, never whatever the path names later.
    /// </summary>
    public UnixFileIdentity? UnixFile { get; internal set; }

    /// <summary>The descriptor number is open (a listening socket, or the placeholder of a refusing one).</summary>
    public bool HasDescriptor => State is ListenerState.Waiting or ListenerState.Serving or ListenerState.Refusing or ListenerState.Dropped;

    /// <summary>
    /// How many times the socket behind <see cref="Fd"/> was replaced by a fresh one (<see cref="ListenerRegistry.ReviveDeadListeners"/>):
    /// a listener whose wrapper was made for an older one makes a new wrapper.
    /// </summary>
    public int Generation => Volatile.Read(ref _generation);

    /// <summary>
    /// Where the socket is bound (the actual port of a <c>:0</c> endpoint) and the transport options Kestrel gave, set
    /// when Kestrel acquires it: what <see cref="ListenerRegistry.ReviveDeadListeners"/> binds anew.
    /// </summary>
    internal (System.Net.EndPoint EndPoint, Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets.SocketTransportOptions Transport)? Binding { get; set; }

    /// <summary>Kestrel holds a non-owning wrapper of the descriptor number.</summary>
    public bool HeldByKestrel => State is ListenerState.Serving or ListenerState.Refusing;

    /// <summary>What the Welcome and Status frames say about this listener.</summary>
    public ListenerDescriptor Describe() => new(WireKey, Description);

    /// <summary>
    /// Puts the fresh listening socket <paramref name="freshFd"/> behind this entry's descriptor number (<c>dup3</c>,
    /// then the fresh number is closed), so that the number Kestrel's wrapper was given stays valid.
    /// </summary>
    internal bool Replace(int freshFd)
    {
        bool replaced = Interop.Libc.dup3(freshFd, Fd, Interop.Libc.O_CLOEXEC) >= 0;
        Interop.Libc.close(freshFd);
        if (replaced)
        {
            Interlocked.Increment(ref _generation);
        }

        return replaced;
    }

    /// <summary>Moves to a state; leaving the descriptor's states closes the descriptor, exactly once.</summary>
    internal void MoveTo(ListenerState state)
    {
        State = state;
        if (!HasDescriptor && Fd >= 0)
        {
            Libc.close(Fd);
            Fd = -1;
        }
    }
}
