using System.Collections.Concurrent;
using System.Net.Sockets;
using System.Text;
using ZeroDowntime.Hosting.Tests.Infrastructure;

namespace ZeroDowntime.Hosting.FunctionalTests.Infrastructure;

/// <summary>
/// systemd's side of sd_notify(3): a datagram socket at <see cref="Path"/> (give it to the app as NOTIFY_SOCKET) that
/// keeps every datagram in the order received.
/// </summary>
internal sealed class NotifySocketRecorder : IAsyncDisposable
{
    private const string Sentinel = "TEST-SENTINEL";
    private readonly Socket _socket = new(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
    private readonly ConcurrentQueue<string> _datagrams = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _receiver;

    public NotifySocketRecorder(string path)
    {
        Path = path;
        _socket.Bind(new UnixDomainSocketEndPoint(path));
        _receiver = ReceiveAsync();
    }

    public string Path { get; }

    /// <summary>The datagrams received so far (without the test's sentinels), in order.</summary>
    public IReadOnlyList<string> Datagrams => _datagrams.Where(d => !d.StartsWith(Sentinel, StringComparison.Ordinal)).ToList();

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

        await Until.TrueAsync(() => _datagrams.Contains(sentinel), "the sentinel datagram");
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await _receiver;
        _socket.Dispose();
        _stop.Dispose();
    }

    private async Task ReceiveAsync()
    {
        var buffer = new byte[4096];
        try
        {
            while (true)
            {
                int read = await _socket.ReceiveAsync(buffer, SocketFlags.None, _stop.Token);
                _datagrams.Enqueue(Encoding.UTF8.GetString(buffer, 0, read));
            }
        }
        catch (OperationCanceledException)
        {
        }
    }
}
