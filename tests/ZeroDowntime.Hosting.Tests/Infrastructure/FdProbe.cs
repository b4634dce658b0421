using System.Net.Sockets;

namespace ZeroDowntime.Hosting.Tests.Infrastructure;

/// <summary>
/// A connected pair of Unix sockets whose far end is a descriptor to hand to someone else. Once every copy of that
/// descriptor is closed, the near end reads end of stream: a way to see that a process closed a descriptor it was
/// sent, without counting a whole process's descriptors.
/// </summary>
internal sealed class FdProbe : IDisposable
{
    private readonly Socket _near;
    private Socket? _far;

    private FdProbe(Socket near, Socket far)
    {
        _near = near;
        _far = far;
    }

    /// <summary>The descriptor to send.</summary>
    public int Fd => (int)_far!.SafeHandle.DangerousGetHandle();

    public static async Task<FdProbe> CreateAsync(string directory)
    {
        string path = Path.Combine(directory, $"probe-{Guid.NewGuid():N}.sock");
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(path));
        listener.Listen(1);
        var near = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await near.ConnectAsync(new UnixDomainSocketEndPoint(path));
        var far = await listener.AcceptAsync();
        return new FdProbe(near, far);
    }

    /// <summary>Closes this process's copy of the far end (after sending it).</summary>
    public void CloseLocalCopy()
    {
        _far?.Dispose();
        _far = null;
    }

    /// <summary>True when every copy of the far end is closed within <paramref name="timeout"/>.</summary>
    public async Task<bool> AllCopiesClosedAsync(TimeSpan timeout)
    {
        using var limit = new CancellationTokenSource(timeout);
        try
        {
            return await _near.ReceiveAsync(new byte[1], SocketFlags.None, limit.Token) == 0;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    public void Dispose()
    {
        _far?.Dispose();
        _near.Dispose();
    }
}
