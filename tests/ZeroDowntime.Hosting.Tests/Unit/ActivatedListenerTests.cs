using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using ZeroDowntime.Hosting.Interop;
using ZeroDowntime.Hosting.Listeners;
using ZeroDowntime.Hosting.Systemd;
using ZeroDowntime.Hosting.Tests.Infrastructure;
using static ZeroDowntime.Hosting.Tests.Unit.ListenerTestKit;

namespace ZeroDowntime.Hosting.Tests.Unit;

/// <summary>
/// Issue 21: listening sockets passed at start (LISTEN_FDS) and Kestrel's file-handle endpoints (UseSystemd(),
/// ListenHandle) in the registry, next to the process-level SocketActivationTests.
/// </summary>
public sealed class ActivatedListenerTests
{
    private const int FGetFd = 1;

    [Fact]
    public void Acquire_FileHandleEndPoint_AdoptsThatSocket_UnderTheKeyOfItsAddress()
    {
        using var original = Listening(out int port);
        int fd = Libc.fcntl((int)original.Handle, FDupFdCloexec, 3);
        var registry = Registry();
        var endPoint = new FileHandleEndPoint((ulong)fd, FileHandleType.Tcp);

        var entry = registry.Acquire(endPoint, Key(endPoint), Transport());

        Assert.Equal($"tcp:127.0.0.1:{port}", entry.WireKey);
        Assert.Equal(fd, entry.Fd);
        Assert.Equal(ListenerState.Serving, entry.State);
        registry.CloseAll(removeUnixFiles: false);
        Assert.Equal(-1, Libc.fcntl(fd, FGetFd, 0)); // the registry owns it now, and closed it
    }

    [Fact]
    public void AddActivated_ThenKestrelAsksForTheSameSocketAsAFileHandle_ServesTheActivatedEntry()
    {
        using var original = Listening(out int port);
        int fd = Libc.fcntl((int)original.Handle, FDupFdCloexec, 3);
        var logger = new RecordingLogger<ListenerRegistry>();
        var registry = Registry(logger);
        var key = ListenerKey.Parse($"tcp:127.0.0.1:{port}");
        registry.AddActivated([new SocketActivation.ActivatedListener(key, fd, $"127.0.0.1:{port}", "web")]);

        var entry = registry.Acquire(new FileHandleEndPoint((ulong)fd, FileHandleType.Tcp), key, NoBind());

        Assert.True(entry.Inherited);
        Assert.Equal(fd, entry.Fd);
        Assert.Single(logger.Named("ListenerActivated"));
        registry.CloseAll(removeUnixFiles: false);
    }

    [Fact]
    public void CloseDropped_ActivatedSocketNoEndpointAskedFor_ClosedPlainly_KeyReturnedForTheStore()
    {
        using var original = Listening(out int port);
        int fd = Libc.fcntl((int)original.Handle, FDupFdCloexec, 3);
        var registry = Registry();
        var key = ListenerKey.Parse($"tcp:127.0.0.1:{port}");
        registry.AddActivated([new SocketActivation.ActivatedListener(key, fd, $"127.0.0.1:{port}", "spare")]);

        registry.DropUnusedInherited();
        var dropped = registry.CloseDropped();

        Assert.Equal([key], dropped);
        Assert.Equal(-1, Libc.fcntl(fd, FGetFd, 0));

        // Closed, not shut down: the service manager's copy (here the test's) still listens.
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        client.Connect(IPAddress.Loopback, port);
        using var accepted = original.Accept();
        Assert.NotNull(accepted);
    }

    [Fact]
    public void AddActivated_KeyAPredecessorHandedOverAlready_ClosesTheSecondCopy()
    {
        using var original = Listening(out int port);
        int first = Libc.fcntl((int)original.Handle, FDupFdCloexec, 3);
        int second = Libc.fcntl((int)original.Handle, FDupFdCloexec, 3);
        var registry = Registry();
        var key = ListenerKey.Parse($"tcp:127.0.0.1:{port}");
        registry.AddInherited(4242, [new Protocol.ListenerDescriptor(key.ToString(), $"127.0.0.1:{port}")], [first]);

        registry.AddActivated([new SocketActivation.ActivatedListener(key, second, $"127.0.0.1:{port}", "web")]);

        Assert.Equal(-1, Libc.fcntl(second, FGetFd, 0));
        Assert.Equal(first, Assert.Single(registry.Snapshot()).Fd);
        registry.CloseAll(removeUnixFiles: false);
    }

    private static Socket Listening(out int port)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        socket.Listen();
        port = ((IPEndPoint)socket.LocalEndPoint!).Port;
        return socket;
    }
}
