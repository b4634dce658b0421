using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using ZeroDowntime.Hosting.Interop;
using ZeroDowntime.Hosting.Lifecycle;
using ZeroDowntime.Hosting.Protocol;
using ZeroDowntime.Hosting.Tests.Infrastructure;

namespace ZeroDowntime.Hosting.Tests.Unit;

/// <summary>
/// Component tests of the defects found in review (issue 8), each over real sockets in this process. The races are
/// shown by a controlled interleaving (an expired deadline with a frame already queued, an fd number reused on
/// purpose with dup2), not by a test that fails now and then.
/// </summary>
public sealed partial class DefectRegressionTests : IDisposable
{
    private readonly TestScope _scope = new();

    public void Dispose() => _scope.Dispose();

    // Item 1: the handoff socket is served for every path that validation accepts, up to sun_path's 107 bytes.
    [Fact]
    public void HandoffSocketServer_PathOf107Bytes_IsServed()
    {
        string path = PathOfLength(107, fileNamePrefix: "handoff-");
        var logger = new RecordingLogger<DefectRegressionTests>();
        using var server = new HandoffSocketServer(path, logger, TimeProvider.System);

        server.Start(static socket => { socket.Dispose(); return Task.CompletedTask; });

        Assert.Equal(Libc.S_IFSOCK, Libc.TryStat(path)!.Value.Mode & Libc.S_IFMT);
        using var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        client.Connect(new UnixDomainSocketEndPoint(path));
    }

    // Item 1: what validation checks is what is really used: the temporary name the socket is bound under too.
    [Fact]
    public void Validate_PathWhoseTemporaryNameIsTooLong_FailsNamingBoth()
    {
        string path = "/" + new string('d', 98) + "/h.sock"; // 106 bytes; the temporary name is 99 + 1 + 11 = 111
        Assert.Equal(106, path.Length);

        var result = new ZeroDowntimeOptionsValidator().Validate(null, new ZeroDowntimeOptions { SocketPath = path, ApplicationId = "app" });

        Assert.True(result.Failed, "a path whose temporary twin exceeds sun_path must be refused at start");
        Assert.Contains("temporary", result.FailureMessage, StringComparison.Ordinal);
    }

    // Item 1: whatever escapes a background task of the library is logged at Critical (never unobserved).
    [Fact]
    public async Task HandoffSocketServer_HandlerThrows_IsLoggedAtCritical()
    {
        var logger = new RecordingLogger<DefectRegressionTests>();
        using var server = new HandoffSocketServer(Path.Combine(_scope.Directory, "guard.sock"), logger, TimeProvider.System);
        var handled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        server.Start(socket =>
        {
            socket.Dispose();
            handled.SetResult();
            throw new InvalidOperationException("boom from a handler");
        });

        using var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await client.ConnectAsync(new UnixDomainSocketEndPoint(Path.Combine(_scope.Directory, "guard.sock")));
        await handled.Task.WaitAsync(TimeSpan.FromSeconds(10));

        var entry = await logger.WaitForAsync(e => e.Level == LogLevel.Critical, TimeSpan.FromSeconds(10));
        Assert.Equal("BackgroundTaskFailed", entry.EventId.Name);
        Assert.Equal("boom from a handler", entry.Exception?.Message);
    }

    // Item 5: a process frozen past its read deadline (SIGSTOP, cgroup freezer, swap) wakes up to two things at once:
    // the expired timer and the peer's queued heartbeats. Controlled interleaving: the read's continuations run on a
    // context the test pumps, so the deadline fires (the cancelled receive is queued to run) before the frame
    // arrives and before the reader looks. It must read what is queued before deciding that the peer is lost.
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ReadAsync_DeadlineFiredWhileFrozen_FrameQueuedBeforeWakeUp_ReturnsTheFrame(bool peerGoneAfterFrame)
    {
        var (mine, peer) = await ConnectedPairAsync();
        using var channel = new HandoffChannel(mine);
        using var context = new ManualSynchronizationContext();
        var read = context.Run(() => channel.ReadAsync(TimeSpan.FromMilliseconds(50), CancellationToken.None));

        await context.WaitForPostedAsync(TimeSpan.FromSeconds(10)); // the deadline fired: the reader is due to wake
        peer.Send(HandoffProtocol.Encode(new HeartbeatMessage()));
        if (peerGoneAfterFrame)
        {
            peer.Dispose();
        }

        context.PumpUntil(read, TimeSpan.FromSeconds(10));
        Assert.IsType<HeartbeatMessage>(await read);
        if (peerGoneAfterFrame)
        {
            var closed = await Assert.ThrowsAsync<HandoffChannelException>(() => channel.ReadAsync(TimeSpan.FromSeconds(5), CancellationToken.None));
            Assert.Equal(HandoffChannelError.Closed, closed.Error);
        }

        peer.Dispose();
    }

    // Item 5: with nothing queued, the expired deadline is what it says.
    [Fact]
    public async Task ReadAsync_DeadlinePassedWithNothingQueued_TimesOut()
    {
        var (mine, peer) = await ConnectedPairAsync();
        using var channel = new HandoffChannel(mine);
        using var _ = peer;
        var timedOut = await Assert.ThrowsAsync<HandoffChannelException>(() => channel.ReadAsync(TimeSpan.FromMilliseconds(20), CancellationToken.None));
        Assert.Equal(HandoffChannelError.TimedOut, timedOut.Error);
    }

    // Item 7: app code on Draining must never stop the drain.
    [Fact]
    public void BeginDrain_DrainingCallbackThrows_DoesNotThrowAndStillDrains()
    {
        using var lifetime = new ZeroDowntimeLifetime();
        bool laterCallbackRan = false;
        lifetime.Draining.Register(() => throw new InvalidOperationException("app callback failed"));
        lifetime.Draining.Register(() => laterCallbackRan = true);

        lifetime.BeginDrain();

        Assert.True(lifetime.HasHandedOver);
        Assert.True(lifetime.Draining.IsCancellationRequested);
        Assert.True(laterCallbackRan);
    }

    // Item 9: closes outside a drain leave nothing behind, so the drain's wait does not spin through every close
    // since the process started (one semaphore permit per close, which overflowed at 2^31 inside Kestrel's callback).
    [Fact]
    public async Task WaitUntilEmpty_AfterManyClosesOutsideADrain_WaitsWithoutSpinningThroughThem()
    {
        var tracker = new ConnectionTracker(NullLogger<ConnectionTracker>.Instance);
        for (int i = 0; i < 10_000; i++)
        {
            using var closed = new CancellationTokenSource();
            tracker.Track(new DefaultConnectionContext($"c{i}") { ConnectionClosed = closed.Token });
            closed.Cancel();
        }

        using var lastClosed = new CancellationTokenSource();
        tracker.Track(new DefaultConnectionContext("last") { ConnectionClosed = lastClosed.Token });
        var time = new CountingTimeProvider();

        var wait = tracker.WaitUntilEmptyAsync(TimeSpan.FromSeconds(30), time, CancellationToken.None);
        Assert.False(wait.IsCompleted);
        lastClosed.Cancel();

        Assert.True(await wait.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Equal(0, tracker.Count);
        Assert.True(time.Calls < 10, $"the wait read the clock {time.Calls} times: it woke once per earlier close");
    }

    // Item 9: the wait completes exactly when the count reaches zero, whatever the order of tracking and closing.
    [Fact]
    public async Task WaitUntilEmpty_ConcurrentClosesOnManyThreads_CompletesWhenTheLastCloses()
    {
        var tracker = new ConnectionTracker(NullLogger<ConnectionTracker>.Instance);
        var closers = Enumerable.Range(0, 64).Select(_ => new CancellationTokenSource()).ToArray();
        for (int i = 0; i < closers.Length; i++)
        {
            tracker.Track(new DefaultConnectionContext($"c{i}") { ConnectionClosed = closers[i].Token });
        }

        var wait = tracker.WaitUntilEmptyAsync(TimeSpan.FromSeconds(30), TimeProvider.System, CancellationToken.None);
        await Task.WhenAll(closers[..^1].Select(c => Task.Run(c.Cancel)));
        Assert.False(wait.IsCompleted);
        Assert.Equal(1, tracker.Count);

        closers[^1].Cancel();
        Assert.True(await wait.WaitAsync(TimeSpan.FromSeconds(10)));
        foreach (var closer in closers)
        {
            closer.Dispose();
        }
    }

    // Item 10: a symlink on the way to the socket that another user owns could be retargeted by them at will.
    [Fact]
    public void EnsureSafe_SymlinkedDirectoryOwnedByAnotherUser_IsRefused()
    {
        string real = Path.Combine(_scope.Directory, "real");
        Directory.CreateDirectory(real, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        string link = Path.Combine(_scope.Directory, "link");
        File.CreateSymbolicLink(link, real);
        Assert.Equal(0, lchown(link, 65534, 65534));

        var ex = Assert.Throws<ZeroDowntimeStartupException>(() => SocketPathGuard.EnsureSafe(Path.Combine(link, "handoff.sock")));

        Assert.Equal(ZeroDowntimeExitCodes.InvalidConfiguration, ex.ExitCode);
        Assert.Contains("65534", ex.Message, StringComparison.Ordinal);
        Assert.Contains("symlink", ex.Message, StringComparison.OrdinalIgnoreCase);
    }

    // Item 10: a link of our own, but in a directory that others can write (no sticky bit): they can replace it.
    [Fact]
    public void EnsureSafe_SymlinkInDirectoryOthersCanWrite_IsRefused()
    {
        string real = Path.Combine(_scope.Directory, "real");
        Directory.CreateDirectory(real, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        string open = Path.Combine(_scope.Directory, "open");
        Directory.CreateDirectory(open);
        File.SetUnixFileMode(open, (UnixFileMode)0b111_111_111);
        string link = Path.Combine(open, "link");
        File.CreateSymbolicLink(link, real);

        var ex = Assert.Throws<ZeroDowntimeStartupException>(() => SocketPathGuard.EnsureSafe(Path.Combine(link, "handoff.sock")));

        Assert.Contains(open, ex.Message, StringComparison.Ordinal);
    }

    // Item 10: links of our own in directories only we (or root) can write stay fine, as does /var/run -> /run.
    [Fact]
    public void EnsureSafe_OwnSymlinkInPrivateDirectory_IsAccepted()
    {
        string real = Path.Combine(_scope.Directory, "real");
        Directory.CreateDirectory(real, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        string link = Path.Combine(_scope.Directory, "link");
        File.CreateSymbolicLink(link, real);

        SocketPathGuard.EnsureSafe(Path.Combine(link, "handoff.sock"));
    }

    // Item 11: sendmsg/recvmsg hold a reference on the socket's handle. Without it a dispose that races a send lets
    // the fd number be reused and the frame land in an unrelated socket; here the number is reused on purpose.
    [Fact]
    public async Task Send_AfterSocketDisposedAndFdNumberReused_WritesNothingToTheNewSocket()
    {
        var (stale, _) = await ConnectedPairAsync();
        var (unrelated, unrelatedPeer) = await ConnectedPairAsync();
        using var __ = unrelated;
        using var ___ = unrelatedPeer;
        int number = (int)stale.SafeHandle.DangerousGetHandle();
        stale.Dispose();
        Assert.Equal(number, dup2((int)unrelated.SafeHandle.DangerousGetHandle(), number));
        try
        {
            Assert.ThrowsAny<ObjectDisposedException>(() => FdPassing.Send(stale, [1, 2, 3], [], TimeSpan.FromSeconds(5), TimeProvider.System));
            Assert.ThrowsAny<ObjectDisposedException>(() => FdPassing.Receive(stale, new byte[4], []));
            Assert.Equal(0, unrelatedPeer.Available);
        }
        finally
        {
            Libc.close(number);
        }
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

    private string PathOfLength(int bytes, string fileNamePrefix)
    {
        string directory = _scope.Directory;
        int fileLength = bytes - directory.Length - 1;
        string padded = Path.Combine(directory, new string('d', Math.Max(1, fileLength - 80)));
        if (fileLength > 80)
        {
            Directory.CreateDirectory(padded);
            directory = padded;
            fileLength = bytes - directory.Length - 1;
        }

        string path = Path.Combine(directory, fileNamePrefix + new string('x', fileLength - fileNamePrefix.Length));
        Assert.Equal(bytes, System.Text.Encoding.UTF8.GetByteCount(path));
        return path;
    }

    private async Task<(Socket Client, Socket Server)> ConnectedPairAsync()
    {
        string path = Path.Combine(_scope.Directory, $"pair-{Guid.NewGuid():N}.sock"[..20]);
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(path));
        listener.Listen(1);
        var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await client.ConnectAsync(new UnixDomainSocketEndPoint(path));
        var server = await listener.AcceptAsync();
        return (client, server);
    }

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int lchown(string path, uint owner, uint group);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int dup2(int oldFd, int newFd);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int dup(int fd);

    [LibraryImport("libc", SetLastError = true)]
    private static unsafe partial int getsockopt(int fd, int level, int name, void* value, int* length);

    private sealed class CountingTimeProvider : TimeProvider
    {
        private int _calls;

        public int Calls => _calls;

        public override long GetTimestamp()
        {
            Interlocked.Increment(ref _calls);
            return base.GetTimestamp();
        }
    }
}
