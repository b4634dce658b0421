using System.Net.Sockets;
using ZeroDowntime.Hosting.Protocol;

namespace ZeroDowntime.Hosting.Tests.Infrastructure;

/// <summary>
/// A hand-driven "running process" on the handoff socket, for the successor's own refusals and exits: each accepted
/// connection gets its greeting read and then whatever <c>answer</c> says for that connection (its 1-based
/// number). Same uid as the successor (the tests run as one user), so the credential check passes.
/// </summary>
internal sealed class FakePredecessor : IAsyncDisposable
{
    private readonly Socket _listener = new(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
    private readonly Func<int, HandoffChannel, Task> _answer;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<HelloMessage> _greetings = [];
    private readonly Task _loop;
    private int _connections;

    private FakePredecessor(string path, Func<int, HandoffChannel, Task> answer)
    {
        _answer = answer;
        _listener.Bind(new UnixDomainSocketEndPoint(path));
        _listener.Listen(16);
        _loop = Task.Run(AcceptLoopAsync);
    }

    /// <summary>Connections accepted so far.</summary>
    public int Connections => Volatile.Read(ref _connections);

    public IReadOnlyList<HelloMessage> Greetings
    {
        get
        {
            lock (_greetings)
            {
                return _greetings.ToArray();
            }
        }
    }

    public static FakePredecessor Start(string path, Func<int, HandoffChannel, Task> answer) => new(path, answer);

    /// <summary>Stops listening; disposing the bound socket also removes the socket file.</summary>
    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Dispose();
        try
        {
            await _loop.WaitAsync(TimeSpan.FromSeconds(10));
        }
        catch (Exception ex) when (ex is ObjectDisposedException or SocketException or OperationCanceledException)
        {
        }

        _stop.Dispose();
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket accepted;
            try
            {
                accepted = await _listener.AcceptAsync(_stop.Token);
            }
            catch (Exception ex) when (ex is ObjectDisposedException or SocketException or OperationCanceledException)
            {
                return;
            }

            Interlocked.Increment(ref _connections);
            _ = Task.Run(async () =>
            {
                using var channel = new HandoffChannel(accepted);
                try
                {
                    if (await channel.ReadAsync(TimeSpan.FromSeconds(10), _stop.Token) is HelloMessage hello)
                    {
                        // The answer gets the greeting's number, not the connection's: a newcomer refused as "already
                        // handed over" also asks for status on a connection of its own, which is no greeting.
                        int number;
                        lock (_greetings)
                        {
                            _greetings.Add(hello);
                            number = _greetings.Count;
                        }

                        await _answer(number, channel);
                    }
                }
                catch (Exception ex) when (ex is SocketException or IOException or OperationCanceledException or HandoffChannelException)
                {
                }
            });
        }
    }
}

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
