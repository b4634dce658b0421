using System.Collections.Concurrent;
using System.Net.Sockets;
using System.Text;
using ZeroDowntime.Hosting.Interop;
using ZeroDowntime.Hosting.Tests.Infrastructure;

namespace ZeroDowntime.Hosting.FunctionalTests.Infrastructure;

/// <summary>
/// systemd's side of sd_notify(3) and sd_pid_notify_with_fds(3): a datagram socket at <see cref="Path"/> (give it to
/// the app as NOTIFY_SOCKET) that keeps every datagram in the order received, with the inodes of the descriptors that
/// came with it (each descriptor is closed once read).
/// </summary>
internal sealed class NotifySocketRecorder : IAsyncDisposable
{
    private const string Sentinel = "TEST-SENTINEL";
    private readonly Socket _socket = new(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
    private readonly ConcurrentQueue<NotifyDatagram> _received = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _receiver;

    public NotifySocketRecorder(string path)
    {
        Path = path;
        _socket.Bind(new UnixDomainSocketEndPoint(path));
        _receiver = Task.Run(Receive);
    }

    public string Path { get; }

    /// <summary>The texts of the datagrams received so far (without the test's sentinels), in order.</summary>
    public IReadOnlyList<string> Datagrams => Messages.Select(m => m.Text).ToList();

    /// <summary>The datagrams received so far (without the test's sentinels), in order, with their descriptors' inodes.</summary>
    public IReadOnlyList<NotifyDatagram> Messages => _received.Where(m => !m.Text.StartsWith(Sentinel, StringComparison.Ordinal)).ToList();

    /// <summary>
    /// Sends a sentinel datagram and waits until it is received: a datagram socket's queue is FIFO, so every datagram
    /// sent before it is in <see cref="Datagrams"/> by then.
    /// </summary>
    public async Task FlushAsync()
    {
        string sentinel = $"{Sentinel} {Guid.NewGuid():N}";
        using (var socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified))
        {
            socket.Connect(new UnixDomainSocketEndPoint(Path));
            socket.Send(Encoding.UTF8.GetBytes(sentinel));
        }

        await Until.TrueAsync(() => _received.Any(m => m.Text == sentinel), "the sentinel datagram");
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await _receiver;
        _socket.Dispose();
        _stop.Dispose();
    }

    private void Receive()
    {
        var buffer = new byte[4096];
        var fds = new List<int>();
        while (!_stop.IsCancellationRequested)
        {
            // A bounded wait for the next datagram, so that the stop is seen; recvmsg then reads it with its descriptors.
            if (!_socket.Poll(TimeSpan.FromMilliseconds(50), SelectMode.SelectRead))
            {
                continue;
            }

            var result = FdPassing.Receive(_socket, buffer, fds);
            if (result.Status == ReceiveStatus.Data)
            {
                _received.Enqueue(new NotifyDatagram(Encoding.UTF8.GetString(buffer, 0, result.Length), fds.Select(Inode).ToArray()));
            }

            FdPassing.CloseAll(fds);
        }
    }

    private static unsafe ulong Inode(int fd)
    {
        Libc.StatX stat;
        Assert.Equal(0, Libc.statx(fd, "", 0x1000 /* AT_EMPTY_PATH */, Libc.STATX_BASIC_STATS, &stat));
        return stat.Inode;
    }
}
