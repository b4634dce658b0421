using System.Net.Sockets;
using System.Text;

namespace ZeroDowntime.Hosting.Tests.Infrastructure;

/// <summary>
/// Plays the service manager's end of <c>NOTIFY_SOCKET</c> (sd_notify(3)): a datagram socket in a temporary directory
/// that keeps every message the process under test sent.
/// </summary>
internal sealed class NotifySocketListener : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("zd-notify-").FullName;
    private readonly Socket _socket = new(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);

    public NotifySocketListener()
    {
        Path = System.IO.Path.Combine(_directory, "notify.sock");
        _socket.Bind(new UnixDomainSocketEndPoint(Path));
    }

    public string Path { get; }

    /// <summary>Every message sent so far (datagrams are queued by the kernel as they are sent, so none is missed).</summary>
    public IReadOnlyList<string> ReceivedSoFar()
    {
        var messages = new List<string>();
        var buffer = new byte[4096];
        while (_socket.Available > 0)
        {
            int length = _socket.Receive(buffer);
            messages.Add(Encoding.UTF8.GetString(buffer, 0, length));
        }

        return messages;
    }

    public void Dispose()
    {
        _socket.Dispose();
        Directory.Delete(_directory, recursive: true);
    }
}
