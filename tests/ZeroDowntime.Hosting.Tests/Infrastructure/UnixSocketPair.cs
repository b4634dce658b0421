using System.Net.Sockets;

namespace ZeroDowntime.Hosting.Tests.Infrastructure;

/// <summary>
/// A connected pair of Unix stream sockets made through a listener in <c>directory</c> (not socketpair(2)), so each
/// end is an ordinary .NET <see cref="Socket"/> with the same options as the handoff socket's connections.
/// </summary>
internal static class UnixSocketPair
{
    public static async Task<(Socket Client, Socket Server)> ConnectAsync(string directory)
    {
        string path = Path.Combine(directory, $"pair-{Guid.NewGuid():N}"[..20] + ".sock");
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(path));
        listener.Listen(1);
        var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await client.ConnectAsync(new UnixDomainSocketEndPoint(path)).WaitAsync(TimeSpan.FromSeconds(5));
        var server = await listener.AcceptAsync().WaitAsync(TimeSpan.FromSeconds(5));
        File.Delete(path);
        return (client, server);
    }
}
