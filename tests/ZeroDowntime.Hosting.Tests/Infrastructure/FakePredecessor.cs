using System.Net.Sockets;
using ZeroDowntime.Hosting.Protocol;

namespace ZeroDowntime.Hosting.Tests.Infrastructure;

/// <summary>
/// The running process played by the test: a listening handoff socket whose every answer the test writes. Two ways to
/// drive it: step by step (<see cref="AcceptAsync"/>, <see cref="WelcomeAsync"/>) when the test plays one connection
/// in order, or <see cref="AnswerEachGreeting"/> when a successor may connect several times and each greeting gets
/// what the answer says for its 1-based number. Same uid as the successor (the tests run as one user), so the
/// credential check passes. Disposing the bound socket also removes the socket file.
/// </summary>
internal sealed class FakePredecessor : IDisposable, IAsyncDisposable
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(10);

    private readonly Socket _listener = new(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
    private readonly CancellationTokenSource _stop = new();
    private readonly List<HelloMessage> _greetings = [];
    private Task _loop = Task.CompletedTask;
    private int _connections;

    public FakePredecessor(string path)
    {
        _listener.Bind(new UnixDomainSocketEndPoint(path));
        _listener.Listen(16);
    }

    /// <summary>Connections accepted by <see cref="AnswerEachGreeting"/> so far.</summary>
    public int Connections => Volatile.Read(ref _connections);

    /// <summary>The greetings that <see cref="AnswerEachGreeting"/> has read, in order.</summary>
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

    /// <summary>Listens at <paramref name="path"/> and answers each greeting with <paramref name="answer"/>.</summary>
    public static FakePredecessor Start(string path, Func<int, HandoffChannel, Task> answer)
    {
        var predecessor = new FakePredecessor(path);
        predecessor.AnswerEachGreeting(answer);
        return predecessor;
    }

    /// <summary>Accepts one connection (bounded wait).</summary>
    public async Task<HandoffChannel> AcceptAsync() => new(await AcceptSocketAsync());

    /// <summary>
    /// Accepts one connection (bounded wait) as a bare socket, for a test that half-closes it (the predecessor's end of
    /// stream while the test still reads what the successor sends) before wrapping it in a <see cref="HandoffChannel"/>.
    /// </summary>
    public async Task<Socket> AcceptSocketAsync()
    {
        using var cts = new CancellationTokenSource(Bound);
        return await _listener.AcceptAsync(cts.Token);
    }

    /// <summary>Accepts the successor, reads its Hello and welcomes it with no listeners.</summary>
    public async Task<HandoffChannel> WelcomeAsync()
    {
        var channel = await AcceptAsync();
        var hello = Assert.IsType<HelloMessage>(await channel.ReadAsync(Bound, CancellationToken.None));
        channel.Send(new WelcomeMessage(hello.Version, Environment.ProcessId, [], 1, 0));
        return channel;
    }

    /// <summary>
    /// From now on accepts every connection in the background, reads its greeting and runs <paramref name="answer"/>
    /// with the greeting's 1-based number and the channel, which is closed when the answer returns.
    /// </summary>
    public void AnswerEachGreeting(Func<int, HandoffChannel, Task> answer) => _loop = Task.Run(() => AcceptLoopAsync(answer));

    public void Dispose()
    {
        _stop.Cancel();
        _listener.Dispose();
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Dispose();
        try
        {
            await _loop.WaitAsync(Bound);
        }
        catch (Exception ex) when (ex is ObjectDisposedException or SocketException or OperationCanceledException)
        {
        }

        _stop.Dispose();
    }

    private async Task AcceptLoopAsync(Func<int, HandoffChannel, Task> answer)
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
                    if (await channel.ReadAsync(Bound, _stop.Token) is HelloMessage hello)
                    {
                        // The answer gets the greeting's number, not the connection's: a newcomer refused as "already
                        // handed over" also asks for status on a connection of its own, which is no greeting.
                        int number;
                        lock (_greetings)
                        {
                            _greetings.Add(hello);
                            number = _greetings.Count;
                        }

                        await answer(number, channel);
                    }
                }
                catch (Exception ex) when (ex is SocketException or IOException or OperationCanceledException or HandoffChannelException)
                {
                }
            });
        }
    }
}
