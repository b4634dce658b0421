using System.Collections.Concurrent;
using System.Globalization;
using Microsoft.AspNetCore.SignalR.Client;

namespace ZeroDowntime.Hosting.FunctionalTests.Infrastructure;

/// <summary>
/// One SignalR client of the sample's <c>/hub</c> with automatic reconnect (the client's default policy), sending a
/// numbered <c>Echo</c> every 100 ms while it is connected and checking each answer (an echo cancelled by a reconnect
/// is sent again after it). It records every reconnect and
/// every failure, sorted by whether the connection was still up when the failure happened.
/// </summary>
internal sealed class EchoHubClient : IAsyncDisposable
{
    private readonly HubConnection _connection;
    private readonly string _name;
    private readonly CancellationTokenSource _stop = new();
    private readonly ConcurrentQueue<string> _failures = new();
    private readonly ConcurrentQueue<string> _reconnectReasons = new();
    private TaskCompletionSource _nextReconnect = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Task? _loop;
    private long _reconnects;
    private long _sent;
    private long _answered;
    private long _lostInReconnect;
    private int _reconnected;
    private Exception? _closed;
    private bool _closedUnexpectedly;

    private EchoHubClient(Uri hub, string name)
    {
        _name = name;
        _connection = new HubConnectionBuilder().WithUrl(hub).WithAutomaticReconnect().Build();
        _connection.Reconnecting += ex =>
        {
            _reconnectReasons.Enqueue(ex is null ? "(no error)" : $"{ex.GetType().Name}: {ex.Message}");
            Interlocked.Increment(ref _reconnects);
            Interlocked.Exchange(ref _nextReconnect, new(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
            return Task.CompletedTask;
        };
        _connection.Reconnected += _ =>
        {
            Interlocked.Increment(ref _reconnected);
            return Task.CompletedTask;
        };
        _connection.Closed += ex =>
        {
            _closed = ex;
            _closedUnexpectedly = !_stop.IsCancellationRequested;
            return Task.CompletedTask;
        };
    }

    public long Sent => Interlocked.Read(ref _sent);

    public long Answered => Interlocked.Read(ref _answered);

    /// <summary>Echoes whose connection closed (for a reconnect) before the answer came, each sent again after it.</summary>
    public long LostInReconnect => Interlocked.Read(ref _lostInReconnect);

    public int Reconnected => Volatile.Read(ref _reconnected);

    public IReadOnlyCollection<string> ReconnectReasons => _reconnectReasons.ToArray();

    /// <summary>Wrong answers, failures on a connection that stayed up, and a close of the client that nobody asked for.</summary>
    public IReadOnlyCollection<string> Failures =>
        _closedUnexpectedly ? [.. _failures, $"closed: {_closed?.Message ?? "no error"}"] : _failures.ToArray();

    public HubConnectionState State => _connection.State;

    public static async Task<EchoHubClient> ConnectAsync(Uri hub, string name, CancellationToken cancellationToken)
    {
        var client = new EchoHubClient(hub, name);
        await client._connection.StartAsync(cancellationToken);
        client._loop = client.SendEveryTenthOfASecondAsync();
        return client;
    }

    /// <summary>The pid of the process that serves this client now (waits for a reconnect to finish first).</summary>
    public async Task<int> PidAsync(CancellationToken cancellationToken) =>
        await _connection.InvokeAsync<int>("Pid", cancellationToken);

    public override string ToString() =>
        $"{_name}: {_connection.State}, sent {Sent}, answered {Answered}, sent again after a reconnect {LostInReconnect}, reconnected {Reconnected}";

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        if (_loop is not null)
        {
            await _loop.WaitAsync(TimeSpan.FromSeconds(30));
        }

        await _connection.DisposeAsync();
        _stop.Dispose();
    }

    /// <summary>False when the echo was lost because the connection closed for a reconnect.</summary>
    private async Task<bool> TryEchoAsync(string message)
    {
        // Whether the connection this echo went out on closed is told by the reconnect that follows, not by the state
        // when the failure arrives: the reconnect may be over by then (Connected again: taken for a failure on a live
        // connection, once in a run), or not begun yet (SignalR fails the pending calls before it says Reconnecting).
        long reconnectsBefore = Interlocked.Read(ref _reconnects);
        var nextReconnect = Volatile.Read(ref _nextReconnect).Task;
        try
        {
            // Not cancelled by the stop: the last echo is answered before the client stops.
            string echo = await _connection.InvokeAsync<string>("Echo", message, CancellationToken.None);
            if (echo == message)
            {
                Interlocked.Increment(ref _answered);
            }
            else
            {
                _failures.Enqueue(string.Create(CultureInfo.InvariantCulture, $"sent {message}, got {echo}"));
            }

            return true;
        }
        catch (Exception ex)
        {
            if (!await ConnectionClosedSinceAsync(reconnectsBefore, nextReconnect))
            {
                _failures.Enqueue($"echo {message}: {ex.GetType().Name}: {ex.Message}");
                return true;
            }

            _reconnectReasons.Enqueue($"echo lost in the reconnect: {ex.GetType().Name}: {ex.Message}");
            return false;
        }
    }

    /// <summary>
    /// True when the connection closed after <paramref name="reconnectsBefore"/> reconnects: one began since, or begins
    /// within 5 s (a connection that stays up that long after a failed call did not close under it).
    /// </summary>
    private async Task<bool> ConnectionClosedSinceAsync(long reconnectsBefore, Task nextReconnect)
    {
        if (Interlocked.Read(ref _reconnects) != reconnectsBefore || _connection.State != HubConnectionState.Connected)
        {
            return true;
        }

        try
        {
            await nextReconnect.WaitAsync(TimeSpan.FromSeconds(5));
            return true;
        }
        catch (TimeoutException)
        {
            return _connection.State != HubConnectionState.Connected;
        }
    }

    private async Task SendEveryTenthOfASecondAsync()
    {
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(100));
        long number = 0;
        try
        {
            while (await timer.WaitForNextTickAsync(_stop.Token))
            {
                if (_connection.State != HubConnectionState.Connected)
                {
                    continue;
                }

                string message = $"{_name}:{++number}";
                Interlocked.Increment(ref _sent);

                // A message in flight when SignalR closes the connection for the reconnect is cancelled on this side (the
                // server stopped reading): sent again once reconnected, as an app does with automatic reconnect.
                while (!await TryEchoAsync(message))
                {
                    Interlocked.Increment(ref _lostInReconnect);
                    while (_connection.State != HubConnectionState.Connected)
                    {
                        await timer.WaitForNextTickAsync(_stop.Token);
                    }
                }
            }
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested)
        {
        }
    }
}
