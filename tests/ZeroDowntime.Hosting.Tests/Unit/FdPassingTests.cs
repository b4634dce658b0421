using System.Net.Sockets;
using Microsoft.Win32.SafeHandles;
using ZeroDowntime.Hosting.Interop;
using ZeroDowntime.Hosting.Tests.Infrastructure;

namespace ZeroDowntime.Hosting.Tests.Unit;

public sealed class FdPassingTests : IDisposable
{
    private readonly TestScope _scope = new();

    public void Dispose() => _scope.Dispose();

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(16)]
    public async Task SendReceive_SeveralFds_ArriveAsTheSameFilesWithCloexecAndNoneLeak(int count)
    {
        var (client, server) = await ConnectedPairAsync();
        using var _ = client;
        using var __ = server;
        var files = Enumerable.Range(0, count).Select(i => Path.Combine(_scope.Directory, $"file{i}")).ToArray();
        var handles = files.Select(f => File.OpenHandle(f, FileMode.Create, FileAccess.ReadWrite)).ToArray();
        int openBefore = OpenFdCount();
        try
        {
            FdPassing.Send(server, [1, 2, 3], handles.Select(h => (int)h.DangerousGetHandle()).ToArray());

            var received = new List<int>();
            var buffer = new byte[16];
            await client.ReceiveAsync(Memory<byte>.Empty, SocketFlags.None);
            int read = FdPassing.TryReceive(client, buffer, received);

            Assert.Equal(3, read);
            Assert.Equal(new byte[] { 1, 2, 3 }, buffer[..3]);
            Assert.Equal(count, received.Count);
            for (int i = 0; i < count; i++)
            {
                Assert.Equal(files[i], File.ResolveLinkTarget($"/proc/self/fd/{received[i]}", returnFinalTarget: false)!.FullName);
                Assert.Equal(1, Libc.fcntl(received[i], Libc.F_GETFD, 0) & 1); // FD_CLOEXEC
            }

            Assert.Equal(openBefore + count, OpenFdCount());
            FdPassing.CloseAll(received);
            Assert.Empty(received);
            Assert.Equal(openBefore, OpenFdCount());
        }
        finally
        {
            foreach (var handle in handles)
            {
                handle.Dispose();
            }
        }
    }

    [Fact]
    public async Task Send_DataLargerThanOneFrame_ArrivesWholeAcrossReceives()
    {
        var (client, server) = await ConnectedPairAsync();
        using var _ = client;
        using var __ = server;
        byte[] data = Enumerable.Range(0, 200_000).Select(i => (byte)i).ToArray();
        var send = Task.Run(() => FdPassing.Send(server, data, []));

        var received = new MemoryStream();
        var fds = new List<int>();
        var buffer = new byte[8192];
        while (received.Length < data.Length)
        {
            await client.ReceiveAsync(Memory<byte>.Empty, SocketFlags.None);
            int read = FdPassing.TryReceive(client, buffer, fds);
            Assert.NotEqual(0, read);
            if (read > 0)
            {
                received.Write(buffer, 0, read);
            }
        }

        await send;
        Assert.Equal(data, received.ToArray());
        Assert.Empty(fds);
    }

    [Fact]
    public async Task TryReceive_PeerClosed_ReturnsZero()
    {
        var (client, server) = await ConnectedPairAsync();
        using var _ = client;
        server.Dispose();
        await client.ReceiveAsync(Memory<byte>.Empty, SocketFlags.None);
        Assert.Equal(0, FdPassing.TryReceive(client, new byte[4], []));
    }

    [Fact]
    public async Task TryReceive_NothingSent_ReturnsMinusOneWithoutBlocking()
    {
        var (client, server) = await ConnectedPairAsync();
        using var _ = client;
        using var __ = server;
        Assert.Equal(-1, FdPassing.TryReceive(client, new byte[4], []));
    }

    private async Task<(Socket Client, Socket Server)> ConnectedPairAsync()
    {
        string path = Path.Combine(_scope.Directory, "pair.sock");
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(path));
        listener.Listen(1);
        var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await client.ConnectAsync(new UnixDomainSocketEndPoint(path));
        var server = await listener.AcceptAsync();
        return (client, server);
    }

    private static int OpenFdCount() => Directory.GetFiles("/proc/self/fd").Length;
}
