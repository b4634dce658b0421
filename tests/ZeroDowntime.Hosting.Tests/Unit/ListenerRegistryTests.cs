using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using ZeroDowntime.Hosting.Handoff;
using ZeroDowntime.Hosting.Interop;
using ZeroDowntime.Hosting.Listeners;
using ZeroDowntime.Hosting.Protocol;
using ZeroDowntime.Hosting.Tests.Infrastructure;
using static ZeroDowntime.Hosting.Tests.Unit.ListenerTestKit;

namespace ZeroDowntime.Hosting.Tests.Unit;

/// <summary>The registry with real sockets, in-process: binding through the app's hook, adoption by key, the states.</summary>
public sealed class ListenerRegistryTests : IDisposable
{
    private static readonly IPEndPoint Loopback0 = new(IPAddress.Loopback, 0);
    private readonly TestScope _scope = new();

    public void Dispose() => _scope.Dispose();

    // Issue 9 item 3: what the app sets in CreateBoundListenSocket is on the listener the registry holds, and a
    // successor that inherits the descriptor (a real SCM_RIGHTS transfer) gets that very socket, option included, and
    // serves on it without binding anything.
    [Fact]
    public async Task Acquire_HookSetsSocketOptions_FreshListenerHasThemAndSuccessorServesOnTheSameSocket()
    {
        int hookReceiveBuffer = 0;
        var predecessor = Registry();
        var fresh = predecessor.Acquire(Loopback0, Key(Loopback0), Transport(ep =>
        {
            var socket = SocketTransportOptions.CreateDefaultBoundListenSocket(ep);
            socket.ReceiveBufferSize = 96 * 1024;
            socket.SetRawSocketOption(IpProtoTcp, TcpDeferAccept, BitConverter.GetBytes(3));
            hookReceiveBuffer = socket.ReceiveBufferSize; // the kernel doubles it: compare what it reports
            return socket;
        }));

        Assert.Equal(ListenerState.Serving, fresh.State);
        Assert.False(fresh.Inherited);
        Assert.True(IsListening(fresh.Fd));
        Assert.Equal(hookReceiveBuffer, GetInt(fresh.Fd, SolSocket, 8 /* SO_RCVBUF */));
        Assert.NotEqual(0, GetInt(fresh.Fd, IpProtoTcp, TcpDeferAccept));

        // Hand it over as the coordinator does: the descriptors chosen and sent under the registry's lock.
        var (near, far) = await PairAsync(_scope.Directory);
        using var _ = near;
        using var __ = far;
        ListenerDescriptor[] sent = [];
        int count = predecessor.SendActiveListeners(listeners =>
        {
            sent = listeners.Select(l => l.Describe()).ToArray();
            FdPassing.Send(far, [1], listeners.Select(l => l.Fd).ToArray(), TimeSpan.FromSeconds(5), TimeProvider.System);
        });
        Assert.Equal(1, count);
        await near.ReceiveAsync(Memory<byte>.Empty, SocketFlags.None).AsTask().WaitAsync(Bounded);
        var received = new List<int>();
        Assert.Equal(new ReceiveResult(ReceiveStatus.Data, 1), FdPassing.Receive(near, new byte[4], received));

        var successor = Registry();
        successor.AddInherited(Environment.ProcessId, sent, received);
        var adopted = successor.Acquire(Loopback0, Key(Loopback0), NoBind());

        Assert.True(adopted.Inherited);
        Assert.Equal(ListenerState.Serving, adopted.State);
        Assert.NotEqual(fresh.Fd, adopted.Fd);
        Assert.Equal(Inode(fresh.Fd), Inode(adopted.Fd));
        Assert.Equal(hookReceiveBuffer, GetInt(adopted.Fd, SolSocket, 8));
        Assert.NotEqual(0, GetInt(adopted.Fd, IpProtoTcp, TcpDeferAccept));

        // The predecessor lets go (it drains and exits); the successor alone serves a request on the socket.
        predecessor.CloseAll(removeUnixFiles: false);
        using var gate = new AcceptGate();
        gate.Open();
        await using var listener = Listener(adopted, successor, gate, out var factory);
        using var ___ = factory;
        using var client = await ConnectAsync(Port(adopted));
        await client.SendAsync("GET / HTTP/1.1\r\n\r\n"u8.ToArray()); // TCP_DEFER_ACCEPT: accepted once data arrives
        var connection = await listener.AcceptAsync().AsTask().WaitAsync(Bounded);
        Assert.NotNull(connection);
        var request = await connection.Transport.Input.ReadAtLeastAsync(4).AsTask().WaitAsync(Bounded);
        Assert.StartsWith("GET /", Encoding.ASCII.GetString(request.Buffer.FirstSpan));
        connection.Transport.Input.AdvanceTo(request.Buffer.End);
        await connection.Transport.Output.WriteAsync("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"u8.ToArray());
        var answer = new byte[64];
        int read = await client.ReceiveAsync(answer).WaitAsync(Bounded);
        Assert.EndsWith("ok", Encoding.ASCII.GetString(answer, 0, read));
        await connection.DisposeAsync();
        successor.CloseAll(removeUnixFiles: false);
    }

    // SO_REUSEPORT would let a second copy that missed the handoff socket bind beside the server (architecture.md,
    // step 10). .NET's ReuseAddress sets it on Linux, as the sample's Sample:ReusePort baseline does.
    [Fact]
    public void Acquire_HookSetsReusePort_RefusesWithInvalidConfigurationAndLeavesThePortFree()
    {
        var logger = new RecordingLogger<ListenerRegistry>();
        var registry = Registry(logger);
        int port = 0;
        var transport = Transport(ep =>
        {
            var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            socket.Bind(ep);
            port = ((IPEndPoint)socket.LocalEndPoint!).Port;
            return socket;
        });

        var ex = Assert.Throws<IOException>(() => registry.Acquire(Loopback0, Key(Loopback0), transport));

        Assert.Equal(ZeroDowntimeExitCodes.InvalidConfiguration, ProcessExitHooks.ExitCodeFor(ex));
        Assert.Contains("tcp:127.0.0.1:0", ex.Message, StringComparison.Ordinal);
        Assert.Contains("SO_REUSEPORT", ex.Message, StringComparison.Ordinal);
        var logged = Assert.Single(logger.Named("ReusePortRefused"));
        Assert.Equal(19, logged.EventId.Id);
        Assert.Equal("tcp:127.0.0.1:0", logged.Fields["Endpoint"]); // a structured field, not a preformatted text
        Assert.Empty(registry.ActiveListeners());

        // The refused socket was closed: the port binds again without any reuse option.
        using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        probe.Bind(new IPEndPoint(IPAddress.Loopback, port));
    }

    [Fact]
    public void Acquire_AddressHeldByAnotherSocket_ThrowsAddressInUseWithExitCode79()
    {
        using var holder = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        holder.Bind(Loopback0);
        holder.Listen();
        var taken = (IPEndPoint)holder.LocalEndPoint!;
        var logger = new RecordingLogger<ListenerRegistry>();

        var ex = Assert.Throws<AddressInUseException>(() => Registry(logger, "/tmp/h.sock").Acquire(taken, Key(taken), Transport()));

        Assert.Equal(ZeroDowntimeExitCodes.AddressInUse, ProcessExitHooks.ExitCodeFor(ex));
        Assert.Contains($"tcp:127.0.0.1:{taken.Port}", ex.Message, StringComparison.Ordinal);
        Assert.Contains("/tmp/h.sock", ex.Message, StringComparison.Ordinal);
        var logged = Assert.Single(logger.Named("AddressInUse"));
        Assert.Equal($"tcp:127.0.0.1:{taken.Port}", logged.Fields["Endpoint"]);
        Assert.Equal(0, logged.Fields["PredecessorPid"]);
        Assert.Equal("/tmp/h.sock", logged.Fields["SocketPath"]);
    }

    [Fact]
    public void Acquire_HookReturnsUnboundSocket_Throws()
    {
        var transport = Transport(_ => new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp));

        var ex = Assert.Throws<InvalidOperationException>(() => Registry().Acquire(Loopback0, Key(Loopback0), transport));

        Assert.Contains("not bound", ex.Message, StringComparison.Ordinal);
    }

    // Step 9: once the registry has the descriptor, the hook's Socket object is dead: collected and finalized, it must
    // neither close the listener (abortively, with linger 0 on the shared socket) nor unlink its Unix path.
    // (Disposing that object explicitly is another matter: .NET then never returns from Dispose, so the library never
    // does, and a hook must not keep the socket it returns - see ListenerRegistry.Acquire.)
    [Fact]
    public void Acquire_HookSocketCollected_ListenerAndUnixFileSurvive()
    {
        string path = Path.Combine(_scope.Directory, "app.sock");
        var endpoint = new UnixDomainSocketEndPoint(path);
        var registry = Registry();
        var (entry, hookSocket) = AcquireForgettingTheHookSocket(registry, endpoint);

        for (int i = 0; i < 3 && hookSocket.IsAlive; i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }

        Assert.False(hookSocket.IsAlive, "the hook's Socket should have been collected");
        Assert.True(IsListening(entry.Fd));
        Assert.True(File.Exists(path));
        using (var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
        {
            client.Connect(endpoint);
        }

        registry.CloseAll(removeUnixFiles: true);
        Assert.False(File.Exists(path));
    }

    [Fact]
    public void Acquire_SameTcpEndpointTwice_SecondGetsTheNextOccurrence()
    {
        var registry = Registry();

        var first = registry.Acquire(Loopback0, Key(Loopback0), Transport());
        var second = registry.Acquire(Loopback0, Key(Loopback0), Transport());

        Assert.Equal("tcp:127.0.0.1:0", first.WireKey);
        Assert.Equal("tcp:127.0.0.1:0#2", second.WireKey);
        Assert.Equal(2, second.Key.Occurrence);
        Assert.NotEqual(Port(first), Port(second));
        registry.Release(first);
        Assert.Equal("tcp:127.0.0.1:0", registry.Acquire(Loopback0, Key(Loopback0), Transport()).WireKey); // free again
        registry.CloseAll(removeUnixFiles: false);
    }

    // The keys travel as text: what an older build sends ("#2" included) is adopted by the endpoint it names, and a
    // key this build does not understand is closed as unused, never matched.
    [Fact]
    public void AddInherited_StringKeysOfAnOlderBuild_AdoptedByEndpointUnknownOnesClosedAsUnused()
    {
        var (a, b, c) = (Bound(), Bound(), Bound());
        var registry = Registry();
        registry.AddInherited(4242,
            [new("tcp:127.0.0.1:0", "127.0.0.1:1"), new("tcp:127.0.0.1:0#2", "127.0.0.1:2"), new("pipe:/somewhere", "?")],
            [a, b, c]);

        var first = registry.Acquire(Loopback0, Key(Loopback0), NoBind());
        var second = registry.Acquire(Loopback0, Key(Loopback0), NoBind());
        registry.DropUnusedInherited();
        registry.ShutDownDropped();

        Assert.Equal((a, b), (first.Fd, second.Fd));
        Assert.Equal(["tcp:127.0.0.1:0", "tcp:127.0.0.1:0#2"], registry.DescribeActive().Select(d => d.Key));
        Assert.False(IsOpen(c));
        registry.CloseAll(removeUnixFiles: false);
        Assert.False(IsOpen(a) || IsOpen(b));
    }

    // Issue 18 item 3: a dropped endpoint stays served by the predecessor while this process may still withdraw; once
    // this process takes over it is shut down, so that the predecessor's copy refuses too instead of queueing for
    // nobody while it drains.
    [Fact]
    public void DropUnusedInherited_UnixEndpointNotConfigured_PredecessorServesItUntilTheTakeOverThenItRefuses()
    {
        string path = Path.Combine(_scope.Directory, "dropped.sock");
        using var predecessorSocket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        predecessorSocket.Bind(new UnixDomainSocketEndPoint(path));
        predecessorSocket.Listen();
        int fd = Libc.fcntl((int)predecessorSocket.SafeHandle.DangerousGetHandle(), FDupFdCloexec, 0);
        var logger = new RecordingLogger<ListenerRegistry>();
        var registry = Registry(logger);
        registry.AddInherited(4242, [new("unix:" + path, "unix:" + path)], [fd]);

        registry.DropUnusedInherited();
        var entry = Assert.Single(registry.Snapshot());
        Assert.Equal(ListenerState.Dropped, entry.State);
        Assert.True(IsOpen(fd), "kept until this process takes over: if it withdraws, the predecessor serves on");
        Assert.Single(logger.Named("InheritedListenerUnused"));
        Assert.Empty(registry.ActiveListeners());
        using (var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
        {
            client.Connect(new UnixDomainSocketEndPoint(path)); // the predecessor's copy still listens
        }

        registry.ShutDownDropped();

        Assert.Equal(ListenerState.Unused, entry.State);
        Assert.Equal(-1, entry.Fd);
        Assert.False(IsOpen(fd));
        Assert.Single(logger.Named("DroppedListenerShutDown"));
        using (var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
        {
            var refused = Assert.Throws<SocketException>(() => client.Connect(new UnixDomainSocketEndPoint(path)));
            Assert.Equal(SocketError.ConnectionRefused, refused.SocketErrorCode); // though the predecessor still holds it
        }

        registry.CloseAll(removeUnixFiles: true);
        Assert.True(File.Exists(path), "CloseAll never removes the file of an unused one: not this process's to remove then");
        registry.RemoveUnusedInheritedUnixFiles();
        Assert.False(File.Exists(path));
    }

    [Fact]
    public void ShutDownDropped_TcpListenerThePredecessorStillHolds_RefusesAtOnce()
    {
        using var predecessorSocket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        predecessorSocket.Bind(Loopback0);
        predecessorSocket.Listen();
        int port = ((IPEndPoint)predecessorSocket.LocalEndPoint!).Port;
        int fd = Libc.fcntl((int)predecessorSocket.SafeHandle.DangerousGetHandle(), FDupFdCloexec, 0);
        var registry = Registry();
        registry.AddInherited(4242, [new($"tcp:127.0.0.1:{port}", $"127.0.0.1:{port}")], [fd]);

        registry.DropUnusedInherited();
        registry.ShutDownDropped();

        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        var refused = Assert.Throws<SocketException>(() => client.Connect(IPAddress.Loopback, port));
        Assert.Equal(SocketError.ConnectionRefused, refused.SocketErrorCode);
        registry.CloseAll(removeUnixFiles: false);
    }

    // Issue 18 item 3, the other half: a predecessor that serves again after a lost successor had dropped (and so shut
    // down) one of its endpoints binds it anew, on the same port, and its listener accepts on the new socket.
    [Fact]
    public async Task ReviveDeadListeners_ShutDownByAnotherHolder_BoundAnewOnTheSamePortAndAcceptedOn()
    {
        var registry = Registry();
        var entry = registry.Acquire(Loopback0, Key(Loopback0), Transport());
        int port = Port(entry);
        using var gate = new AcceptGate();
        await using var listener = Listener(entry, registry, gate, out _);
        gate.Open();
        await AcceptOneAsync(listener, port);
        gate.Close(); // handed over

        int successorCopy = Libc.fcntl(entry.Fd, FDupFdCloexec, 0);
        Assert.Equal(0, Libc.shutdown(successorCopy, Libc.SHUT_RDWR)); // the successor dropped it
        Libc.close(successorCopy);
        using (var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        {
            Assert.Equal(SocketError.ConnectionRefused, Assert.Throws<SocketException>(() => probe.Connect(IPAddress.Loopback, port)).SocketErrorCode);
        }

        Assert.Equal(1, registry.ReviveDeadListeners());
        Assert.Equal(0, registry.ReviveDeadListeners()); // listening again: nothing to revive
        gate.Open(); // serving again
        await AcceptOneAsync(listener, port);
        Assert.Equal(1, entry.Generation);
        await listener.UnbindAsync();
        registry.CloseAll(removeUnixFiles: false);
    }

    private static async Task AcceptOneAsync(HandoffConnectionListener listener, int port)
    {
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await client.ConnectAsync(IPAddress.Loopback, port);
        var connection = await listener.AcceptAsync().AsTask().WaitAsync(Bounded);
        Assert.NotNull(connection);
        await connection!.DisposeAsync();
    }

    // Issue 18 item 2: after a plain shutdown's StopListening, a newcomer finds the Unix endpoint's file stale, removes
    // it and binds its own at the path (on ext4 with the freed inode number). The old registry's CloseAll used to unlink
    // the path by name, leaving the newcomer on a socket that no client could reach; now it leaves what is not its own.
    [Fact]
    public void CloseAll_UnixFileReplacedByNewcomerAfterStopListening_LeavesTheNewcomersFile()
    {
        string path = Path.Combine(_scope.Directory, "endpoint.sock");
        var endpoint = new UnixDomainSocketEndPoint(path);
        var logger = new RecordingLogger<ListenerRegistry>();
        var registry = Registry(logger);
        var entry = registry.Acquire(endpoint, Key(endpoint), Transport());
        Assert.NotNull(entry.UnixFile);
        registry.StopListening();

        File.Delete(path);
        using var newcomer = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        newcomer.Bind(endpoint);
        newcomer.Listen();
        registry.Release(entry);
        registry.CloseAll(removeUnixFiles: true);

        Assert.True(File.Exists(path), "the newcomer's socket file must stay");
        using (var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
        {
            client.Connect(endpoint);
        }

        Assert.Single(logger.Named("UnixSocketFileKept"));
    }

    // Plain shutdown of the sole server: the kernel refuses new connections at once, but the number Kestrel's
    // non-owning wrapper holds stays a valid descriptor (a placeholder) until Kestrel unbinds.
    [Fact]
    public async Task StopListening_ServingListener_RefusesConnectionsAndKeepsTheNumberUntilReleased()
    {
        var registry = Registry();
        var entry = registry.Acquire(Loopback0, Key(Loopback0), Transport());
        int port = Port(entry);
        int fd = entry.Fd;

        registry.StopListening();

        Assert.Equal(ListenerState.Refusing, entry.State);
        Assert.Equal(fd, entry.Fd);
        Assert.True(IsOpen(fd));
        Assert.False(IsListening(fd));
        var refused = await Assert.ThrowsAsync<SocketException>(() => ConnectAsync(port));
        Assert.Equal(SocketError.ConnectionRefused, refused.SocketErrorCode);
        Assert.Single(registry.ActiveListeners());
        Assert.Equal(0, registry.SendActiveListeners(_ => { }));
        Assert.Equal([(true, 0), (false, 0)], registry.CountByOrigin());

        registry.Release(entry);
        Assert.Equal(ListenerState.Released, entry.State);
        Assert.False(IsOpen(fd));
        Assert.Empty(registry.ActiveListeners());
    }

    [Fact]
    public void CountByOrigin_InheritedAndBound_CountsServingOnes()
    {
        var registry = Registry();
        registry.AddInherited(4242, [new("tcp:127.0.0.1:0", "x")], [Bound()]);
        registry.Acquire(Loopback0, Key(Loopback0), NoBind());
        registry.Acquire(Loopback0, Key(Loopback0), Transport());

        Assert.Equal([(true, 1), (false, 1)], registry.CountByOrigin());
        registry.CloseAll(removeUnixFiles: false);
        Assert.Equal([(true, 0), (false, 0)], registry.CountByOrigin());
    }

    /// <summary>A listening TCP descriptor detached from any Socket, as one received from a predecessor is.</summary>
    private static int Bound()
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        socket.Bind(Loopback0);
        socket.Listen();
        return Libc.fcntl((int)socket.SafeHandle.DangerousGetHandle(), FDupFdCloexec, 0);
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private static (ListenerEntry Entry, WeakReference HookSocket) AcquireForgettingTheHookSocket(ListenerRegistry registry, UnixDomainSocketEndPoint endpoint)
    {
        WeakReference? created = null;
        var entry = registry.Acquire(endpoint, Key(endpoint), Transport(ep =>
        {
            var socket = SocketTransportOptions.CreateDefaultBoundListenSocket(ep);
            created = new WeakReference(socket);
            return socket;
        }));
        return (entry, created!);
    }
}
