using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using ZeroDowntime.Hosting.Interop;
using ZeroDowntime.Hosting.Listeners;
using static ZeroDowntime.Hosting.Tests.Unit.ListenerTestKit;

namespace ZeroDowntime.Hosting.Tests.Unit;

/// <summary>
/// The listener Kestrel gets, with real sockets: it accepts only through an open gate, parks (never returns null)
/// when the gate closes, returns null after unbind as Kestrel's own transports do, and never disturbs the shared
/// socket on the way out.
/// </summary>
public sealed partial class HandoffConnectionListenerTests
{
    private static readonly IPEndPoint Loopback0 = new(IPAddress.Loopback, 0);

    [Fact]
    public async Task AcceptAsync_GateClosed_ParksWithTheConnectionQueuedUntilTheGateOpens()
    {
        var (registry, entry) = Bind();
        using var gate = new AcceptGate();
        await using var listener = Listener(entry, registry, gate, out var factory);
        using var _ = factory;
        using var client = await ConnectAsync(Port(entry)); // completes: the kernel queues it

        var accept = listener.AcceptAsync().AsTask();
        await Task.Delay(200);
        Assert.False(accept.IsCompleted, "a closed gate must hold the accept");

        gate.Open();
        var connection = await accept.WaitAsync(Bounded);
        Assert.NotNull(connection);
        Assert.Equal(((IPEndPoint)client.LocalEndPoint!).Port, ((IPEndPoint)connection.RemoteEndPoint!).Port);
        await connection.DisposeAsync();
        await listener.UnbindAsync();
    }

    // The commit: the gate closes while an accept is pending. It must park, not return null (which would end
    // Kestrel's accept loop for good), and resume if the gate reopens (a successor lost after the commit).
    [Fact]
    public async Task AcceptAsync_GateClosesWhilePending_ParksAndAcceptsAfterReopen()
    {
        var (registry, entry) = Bind();
        using var gate = new AcceptGate();
        gate.Open();
        await using var listener = Listener(entry, registry, gate, out var factory);
        using var _ = factory;
        var accept = listener.AcceptAsync().AsTask();
        await Task.Delay(100);

        gate.Close();
        using var client = await ConnectAsync(Port(entry));
        await Task.Delay(200);
        Assert.False(accept.IsCompleted, "closed gate: the connection stays in the kernel's queue");

        gate.Open();
        var connection = await accept.WaitAsync(Bounded);
        Assert.NotNull(connection);
        await connection.DisposeAsync();
        await listener.UnbindAsync();
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task AcceptAsync_AfterUnbind_ReturnsNull(bool gateOpen)
    {
        var (registry, entry) = Bind();
        using var gate = new AcceptGate();
        if (gateOpen)
        {
            gate.Open();
        }

        await using var listener = Listener(entry, registry, gate, out var factory);
        using var _ = factory;
        var pending = listener.AcceptAsync().AsTask();
        await Task.Delay(100);

        await listener.UnbindAsync();

        Assert.Null(await pending.WaitAsync(Bounded));
        Assert.Null(await listener.AcceptAsync().AsTask().WaitAsync(Bounded));
        Assert.Equal(ListenerState.Released, entry.State);
    }

    [Fact]
    public async Task UnbindAsync_FreshListener_ClosesItSoTheKernelRefuses()
    {
        var (registry, entry) = Bind();
        int port = Port(entry);
        int fd = entry.Fd;
        using var gate = new AcceptGate();
        await using var listener = Listener(entry, registry, gate, out var factory);
        using var _ = factory;

        await listener.UnbindAsync();

        Assert.False(IsOpen(fd));
        Assert.Equal(-1, entry.Fd);
        var refused = await Assert.ThrowsAsync<SocketException>(() => ConnectAsync(port));
        Assert.Equal(SocketError.ConnectionRefused, refused.SocketErrorCode);
    }

    // Field notes: a non-owning Socket disposed with an accept pending must not linger, shut down or stop the socket
    // that another process (here: a second descriptor of it) accepts on. A runtime change there would reset the
    // successor's connections.
    [Fact]
    public async Task UnbindAsync_WithAcceptPending_LeavesTheSharedSocketListeningWithoutLinger()
    {
        var (registry, entry) = Bind();
        int other = Interop.Libc.fcntl(entry.Fd, FDupFdCloexec, 0); // the successor's copy
        using var gate = new AcceptGate();
        gate.Open();
        await using var listener = Listener(entry, registry, gate, out var factory);
        using var _ = factory;
        int port = Port(entry);
        var pending = listener.AcceptAsync().AsTask();
        await Task.Delay(100);

        await listener.UnbindAsync();
        Assert.Null(await pending.WaitAsync(Bounded));

        using var shared = new Socket(new SafeSocketHandle(other, ownsHandle: true));
        Assert.True(IsListening(other));
        Assert.False(shared.LingerState?.Enabled ?? false);
        using var client = await ConnectAsync(port);
        using var accepted = await shared.AcceptAsync().WaitAsync(Bounded);
        Assert.False(accepted.LingerState?.Enabled ?? false);
        accepted.Shutdown(SocketShutdown.Both);
        accepted.Close();
        Assert.Equal(0, await client.ReceiveAsync(new byte[1]).WaitAsync(Bounded)); // FIN, not RST
    }

    private static (ListenerRegistry Registry, ListenerEntry Entry) Bind()
    {
        var registry = Registry();
        return (registry, registry.Acquire(Loopback0, Key(Loopback0), Transport()));
    }

    // Item 12 (pins what holds): disposing Kestrel's non-owning Socket while accepts are in flight leaves the shared
    // listener listening for the other process. A runtime change here would reset every later connection.
    [Fact]
    public async Task DisposeNonOwningSocket_WhileAcceptsPendingUnderConnectFlood_ListenerKeepsListening()
    {
        using var owner = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        owner.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        owner.Listen(512);
        int fd = (int)owner.SafeHandle.DangerousGetHandle();
        var endPoint = (IPEndPoint)owner.LocalEndPoint!;

        for (int round = 0; round < 50; round++)
        {
            var kestrels = new Socket(new SafeSocketHandle(fd, ownsHandle: false));
            var accepts = Enumerable.Range(0, 4).Select(_ => kestrels.AcceptAsync()).ToArray();
            var flood = Enumerable.Range(0, 8).Select(_ => ConnectAndCloseAsync(endPoint)).ToArray();
            kestrels.Dispose();
            await Task.WhenAll(flood);
            foreach (var accept in accepts)
            {
                try
                {
                    (await accept.WaitAsync(TimeSpan.FromSeconds(10))).Dispose();
                }
                catch (Exception ex) when (ex is SocketException or ObjectDisposedException or OperationCanceledException)
                {
                }
            }

            int copy = dup(fd);
            try
            {
                Assert.Equal(1, AcceptConn(copy));
            }
            finally
            {
                Libc.close(copy);
            }
        }

        // And the other process's copy still accepts, and its connections end with FIN, not RST.
        var successor = new Socket(new SafeSocketHandle(fd, ownsHandle: false));
        while (successor.Poll(0, SelectMode.SelectRead))
        {
            (await successor.AcceptAsync()).Dispose(); // what the flood left queued
        }

        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await client.ConnectAsync(endPoint);
        using (var accepted = await successor.AcceptAsync().WaitAsync(TimeSpan.FromSeconds(10)))
        {
            accepted.Send("ok"u8);
            accepted.Shutdown(SocketShutdown.Both);
        }

        var buffer = new byte[8];
        Assert.Equal(2, await client.ReceiveAsync(buffer, SocketFlags.None));
        Assert.Equal(0, await client.ReceiveAsync(buffer, SocketFlags.None)); // FIN; an RST would throw
        successor.Dispose();
    }

    private static async Task ConnectAndCloseAsync(IPEndPoint endPoint)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            await socket.ConnectAsync(endPoint);
        }
        catch (SocketException)
        {
        }
    }

    private static unsafe int AcceptConn(int fd)
    {
        int value = 0;
        int length = sizeof(int);
        Assert.Equal(0, getsockopt(fd, Libc.SOL_SOCKET, 30 /* SO_ACCEPTCONN */, &value, &length));
        return value;
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int dup(int fd);

    [LibraryImport("libc", SetLastError = true)]
    private static unsafe partial int getsockopt(int fd, int level, int name, void* value, int* length);
}
