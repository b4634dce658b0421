using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using ZeroDowntime.Hosting.Drain;
using ZeroDowntime.Hosting.Interop;
using ZeroDowntime.Hosting.Listeners;
using ZeroDowntime.Hosting.Tests.Infrastructure;

namespace ZeroDowntime.Hosting.Tests.Unit;

/// <summary>Real sockets for the listener component tests: registries, listeners, descriptor probes.</summary>
internal static class ListenerTestKit
{
    public const int IpProtoTcp = 6;
    public const int TcpDeferAccept = 9;
    public const int SolSocket = 1;
    public const int SoReusePort = 15;
    public const int FDupFdCloexec = 1030;

    public static readonly TimeSpan Bounded = TimeSpan.FromSeconds(5);

    public static ListenerRegistry Registry(RecordingLogger<ListenerRegistry>? logger = null, string socketPath = "/tmp/zdt-unit-handoff.sock") =>
        new(logger ?? new RecordingLogger<ListenerRegistry>(), Options.Create(new ZeroDowntimeOptions { SocketPath = socketPath }));

    public static SocketTransportOptions Transport(Func<EndPoint, Socket>? hook = null) =>
        hook is null ? new SocketTransportOptions() : new SocketTransportOptions { CreateBoundListenSocket = hook };

    /// <summary>A hook that must not run: the listener is inherited.</summary>
    public static SocketTransportOptions NoBind() =>
        Transport(ep => throw new InvalidOperationException($"CreateBoundListenSocket called for {ep}"));

    public static ListenerKey Key(EndPoint endPoint) => ListenerKey.For(endPoint)!;

    public static HandoffConnectionListener Listener(ListenerEntry entry, ListenerRegistry registry, AcceptGate gate, out SocketConnectionContextFactory factory)
    {
        factory = new SocketConnectionContextFactory(new SocketConnectionFactoryOptions(), NullLogger.Instance);
        return new HandoffConnectionListener(entry, registry, gate, new ConnectionTracker(NullLogger<ConnectionTracker>.Instance), factory, noDelay: true);
    }

    public static int Port(ListenerEntry entry)
    {
        using var socket = Peek(entry.Fd);
        return ((IPEndPoint)socket.LocalEndPoint!).Port;
    }

    /// <summary>A non-owning view of a descriptor, to read its options; disposing it touches nothing.</summary>
    public static Socket Peek(int fd) => new(new SafeSocketHandle(fd, ownsHandle: false));

    public static int GetInt(int fd, int level, int name)
    {
        using var socket = Peek(fd);
        Span<byte> value = stackalloc byte[sizeof(int)];
        Assert.Equal(sizeof(int), socket.GetRawSocketOption(level, name, value));
        return BitConverter.ToInt32(value);
    }

    /// <summary>The socket behind a descriptor ("socket:[inode]"): equal for two descriptors of one socket.</summary>
    public static string Inode(int fd) => File.ResolveLinkTarget($"/proc/self/fd/{fd}", returnFinalTarget: false)!.Name;

    public static bool IsListening(int fd) => GetInt(fd, SolSocket, 30 /* SO_ACCEPTCONN */) != 0;

    public static bool IsOpen(int fd) => Libc.fcntl(fd, Libc.F_GETFD, 0) >= 0;

    public static async Task<Socket> ConnectAsync(int port)
    {
        var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await client.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port)).WaitAsync(Bounded);
        return client;
    }

    /// <summary>A connected pair of Unix stream sockets, as the handoff channel is one.</summary>
    public static async Task<(Socket Near, Socket Far)> PairAsync(string directory)
    {
        string path = Path.Combine(directory, "pair-" + Guid.NewGuid().ToString("N")[..8] + ".sock");
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(path));
        listener.Listen(1);
        var near = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        var connect = near.ConnectAsync(new UnixDomainSocketEndPoint(path));
        var far = await listener.AcceptAsync().WaitAsync(Bounded);
        await connect.WaitAsync(Bounded);
        return (near, far);
    }
}
