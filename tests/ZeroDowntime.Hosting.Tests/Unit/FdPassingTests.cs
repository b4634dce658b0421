using System.Net.Sockets;
using System.Runtime.InteropServices;
using ZeroDowntime.Hosting.Interop;
using ZeroDowntime.Hosting.Tests.Infrastructure;

namespace ZeroDowntime.Hosting.Tests.Unit;

public sealed partial class FdPassingTests : IDisposable
{
    private readonly TestScope _scope = new();

    public void Dispose() => _scope.Dispose();

    /// <summary>
    /// The descriptors sent are far ends of socket pairs: each received one must be the same socket (same inode), carry
    /// FD_CLOEXEC, keep the pair open while it is held, and once closed leave no copy open (the near end then reads end
    /// of stream). No whole-process descriptor count, which other tests and the finalizer change at any moment.
    /// </summary>
    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(16)]
    public async Task SendReceive_SeveralFds_ArriveAsTheSameSocketsWithCloexecAndNoneLeak(int count)
    {
        var (client, server) = await UnixSocketPair.ConnectAsync(_scope.Directory);
        using var _ = client;
        using var __ = server;
        var probes = new List<FdProbe>();
        try
        {
            for (int i = 0; i < count; i++)
            {
                probes.Add(await FdProbe.CreateAsync(_scope.Directory));
            }

            var inodes = probes.Select(p => File.ResolveLinkTarget($"/proc/self/fd/{p.Fd}", returnFinalTarget: false)!.Name).ToArray();
            FdPassing.Send(server, [1, 2, 3], probes.Select(p => p.Fd).ToArray(), TimeSpan.FromSeconds(5), TimeProvider.System);
            probes.ForEach(p => p.CloseLocalCopy());

            var received = new List<int>();
            var buffer = new byte[16];
            await client.ReceiveAsync(Memory<byte>.Empty, SocketFlags.None);
            var read = FdPassing.Receive(client, buffer, received);

            Assert.Equal(new ReceiveResult(ReceiveStatus.Data, 3), read);
            Assert.Equal(new byte[] { 1, 2, 3 }, buffer[..3]);
            Assert.Equal(count, received.Count);
            for (int i = 0; i < count; i++)
            {
                Assert.Equal(inodes[i], File.ResolveLinkTarget($"/proc/self/fd/{received[i]}", returnFinalTarget: false)!.Name);
                Assert.Equal(1, Libc.fcntl(received[i], Libc.F_GETFD, 0) & 1); // FD_CLOEXEC
            }

            Assert.False(await probes[0].AllCopiesClosedAsync(TimeSpan.FromMilliseconds(100)), "the received copy keeps the socket open");
            FdPassing.CloseAll(received);
            Assert.Empty(received);
            foreach (var probe in probes)
            {
                Assert.True(await probe.AllCopiesClosedAsync(TimeSpan.FromSeconds(5)), "a received descriptor was left open");
            }
        }
        finally
        {
            probes.ForEach(p => p.Dispose());
        }
    }

    [Fact]
    public async Task Send_DataLargerThanOneFrame_ArrivesWholeAcrossReceives()
    {
        var (client, server) = await UnixSocketPair.ConnectAsync(_scope.Directory);
        using var _ = client;
        using var __ = server;
        byte[] data = Enumerable.Range(0, 200_000).Select(i => (byte)i).ToArray();
        var send = Task.Run(() => FdPassing.Send(server, data, [], TimeSpan.FromSeconds(5), TimeProvider.System));

        var received = new MemoryStream();
        var fds = new List<int>();
        var buffer = new byte[8192];
        while (received.Length < data.Length)
        {
            await client.ReceiveAsync(Memory<byte>.Empty, SocketFlags.None);
            var read = FdPassing.Receive(client, buffer, fds);
            Assert.NotEqual(ReceiveStatus.EndOfStream, read.Status);
            if (read.Status == ReceiveStatus.Data)
            {
                received.Write(buffer, 0, read.Length);
            }
        }

        await send;
        Assert.Equal(data, received.ToArray());
        Assert.Empty(fds);
    }

    [Fact]
    public async Task Receive_PeerClosed_ReturnsEndOfStream()
    {
        var (client, server) = await UnixSocketPair.ConnectAsync(_scope.Directory);
        using var _ = client;
        server.Dispose();
        await client.ReceiveAsync(Memory<byte>.Empty, SocketFlags.None);
        Assert.Equal(ReceiveStatus.EndOfStream, FdPassing.Receive(client, new byte[4], []).Status);
    }

    [Fact]
    public async Task Receive_NothingSent_ReturnsWouldBlockWithoutBlocking()
    {
        var (client, server) = await UnixSocketPair.ConnectAsync(_scope.Directory);
        using var _ = client;
        using var __ = server;
        Assert.Equal(ReceiveStatus.WouldBlock, FdPassing.Receive(client, new byte[4], []).Status);
    }

    // Item 11: sendmsg/recvmsg hold a reference on the socket's handle. Without it a dispose that races a send lets
    // the fd number be reused and the frame land in an unrelated socket; here the number is reused on purpose.
    [Fact]
    public async Task Send_AfterSocketDisposedAndFdNumberReused_WritesNothingToTheNewSocket()
    {
        var (stale, _) = await UnixSocketPair.ConnectAsync(_scope.Directory);
        var (unrelated, unrelatedPeer) = await UnixSocketPair.ConnectAsync(_scope.Directory);
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

    [LibraryImport("libc", SetLastError = true)]
    private static partial int dup2(int oldFd, int newFd);
}
