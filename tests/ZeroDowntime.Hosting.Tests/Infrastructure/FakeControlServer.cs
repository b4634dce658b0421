using System.Net.Sockets;
using ZeroDowntime.Hosting.Protocol;

namespace ZeroDowntime.Hosting.Tests.Infrastructure;

/// <summary>
/// The serving process as the <c>zerodowntime</c> tool sees it, played by the test: a real listening handoff socket
/// whose every connection is read for its first frame (recorded in order) and answered by the test's script, then
/// closed, as the library's control requests are. Same uid as the tool (the tests run as one user), so the tool's
/// credential check passes. Disposing it removes the socket file and ends the connections still open.
/// </summary>
internal sealed class FakeControlServer : IAsyncDisposable
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(10);

    private readonly Socket _listener = new(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
    private readonly CancellationTokenSource _stop = new();
    private readonly List<HandoffMessage> _requests = [];
    private readonly List<Task> _conversations = [];
    private readonly string _path;
    private readonly Task _loop;

    /// <summary>Listens at <paramref name="path"/>; <paramref name="answer"/> gets each connection's first frame and its channel.</summary>
    public FakeControlServer(string path, Func<HandoffMessage, HandoffChannel, Task> answer)
    {
        _path = path;
        _listener.Bind(new UnixDomainSocketEndPoint(path));
        _listener.Listen(16);
        _loop = Task.Run(() => AcceptLoopAsync(answer));
    }

    /// <summary>The first frame of every connection so far, in order.</summary>
    public IReadOnlyList<HandoffMessage> Requests
    {
        get
        {
            lock (_requests)
            {
                return _requests.ToArray();
            }
        }
    }

    /// <summary>The status a process of this build or an earlier one sends (pid 3077, generation 2, one listener).</summary>
    public static StatusMessage Status(int pid = 3077, ServingState state = ServingState.Serving) =>
        new(pid, "WebApi", 2, 1_765_000_000_000, 1_765_000_060_000, state, [new ListenerDescriptor("tcp:127.0.0.1:8080", "127.0.0.1:8080")], 0, 0);

    /// <summary>
    /// Answers a status request as this build does (<see cref="StatusMessage"/>, then <paramref name="probation"/>),
    /// or, with <paramref name="probation"/> null, as an earlier build: <see cref="StatusMessage"/> only.
    /// </summary>
    public static void AnswerStatus(HandoffChannel channel, ProbationStatusMessage? probation, StatusMessage? status = null)
    {
        channel.Send(status ?? Status());
        if (probation is not null)
        {
            channel.Send(probation);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Dispose();
        await _loop.WaitAsync(Bound);
        Task[] conversations;
        lock (_conversations)
        {
            conversations = [.. _conversations];
        }

        await Task.WhenAll(conversations).WaitAsync(Bound);
        _stop.Dispose();
        File.Delete(_path);
    }

    private async Task AcceptLoopAsync(Func<HandoffMessage, HandoffChannel, Task> answer)
    {
        while (true)
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

            lock (_conversations)
            {
                _conversations.Add(Task.Run(() => ConverseAsync(accepted, answer)));
            }
        }
    }

    private async Task ConverseAsync(Socket accepted, Func<HandoffMessage, HandoffChannel, Task> answer)
    {
        using var channel = new HandoffChannel(accepted);
        try
        {
            var request = await channel.ReadAsync(Bound, _stop.Token);
            lock (_requests)
            {
                _requests.Add(request);
            }

            await answer(request, channel).WaitAsync(_stop.Token);
        }
        catch (Exception ex) when (ex is OperationCanceledException or HandoffChannelException)
        {
            // The tool closed first, or the test ended: the conversation is over either way.
        }
    }
}
