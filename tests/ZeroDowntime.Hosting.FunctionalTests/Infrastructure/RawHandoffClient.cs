using System.Net.Sockets;
using ZeroDowntime.Hosting.Protocol;
using ZeroDowntime.Hosting.Tests.Infrastructure;

namespace ZeroDowntime.Hosting.FunctionalTests.Infrastructure;

/// <summary>A hand-driven peer on the handoff socket, for bad input and protocol tests.</summary>
internal sealed class RawHandoffClient : IDisposable
{
    private readonly Socket _socket = new(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);

    public static async Task<RawHandoffClient> ConnectAsync(string path)
    {
        var client = new RawHandoffClient();
        await client._socket.ConnectAsync(new UnixDomainSocketEndPoint(path));
        return client;
    }

    public Task SendAsync(byte[] bytes) => _socket.SendAsync(bytes);

    public Task SendAsync(HandoffMessage message) => SendAsync(HandoffProtocol.Encode(message));

    /// <summary>Reads until the server closes the connection (bounded), returning everything it sent.</summary>
    public async Task<byte[]> ReadToEndAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        var all = new MemoryStream();
        var buffer = new byte[4096];
        int read;
        while ((read = await _socket.ReceiveAsync(buffer, SocketFlags.None, cts.Token)) > 0)
        {
            all.Write(buffer, 0, read);
        }

        return all.ToArray();
    }

    /// <summary>Reads what the server has sent so far (at least one byte, bounded); empty at end of stream.</summary>
    public async Task<byte[]> ReadSomeAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        var buffer = new byte[HandoffProtocol.HeaderLength + HandoffProtocol.MaxPayloadLength];
        int read = await _socket.ReceiveAsync(buffer, SocketFlags.None, cts.Token);
        return buffer[..read];
    }

    public void Dispose() => _socket.Dispose();
}
