using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.Sockets;
using ZeroDowntime.Hosting.Tests.Infrastructure;

namespace ZeroDowntime.Hosting.FunctionalTests.Infrastructure;

/// <summary>
/// Keep-alive load on raw connections: each worker sends its next request as soon as the last response is read, on
/// the same connection until the server says <c>Connection: close</c>, then reconnects. A request that was sent and
/// got no complete response (reset, FIN, timeout) is a connection-level failure: exactly the race that closing idle
/// keep-alive connections would cause, and that no retry hides here.
/// </summary>
internal sealed class RawKeepAliveLoad : IAsyncDisposable
{
    private readonly CancellationTokenSource _stop = new(HttpLoad.MaxDuration);
    private readonly Task[] _workers;
    private readonly ConcurrentQueue<string> _failures = new();
    private readonly ConcurrentDictionary<string, int> _byBody = new();
    private readonly Stopwatch _elapsed = Stopwatch.StartNew();
    private long _succeeded;
    private long _failed;
    private long _closedByServer;
    private long _connections;

    private RawKeepAliveLoad(int port, int workers) =>
        _workers = Enumerable.Range(0, workers).Select(_ => Task.Run(() => RunAsync(port))).ToArray();

    public long Succeeded => Interlocked.Read(ref _succeeded);

    public long Failed => Interlocked.Read(ref _failed);

    /// <summary>Responses that carried <c>Connection: close</c> (the draining process sending the client away).</summary>
    public long ClosedByServer => Interlocked.Read(ref _closedByServer);

    public long Connections => Interlocked.Read(ref _connections);

    public IReadOnlyCollection<string> Failures => _failures.ToArray();

    public IReadOnlyDictionary<string, int> ResponsesByBody => _byBody;

    public static RawKeepAliveLoad Start(int port, int workers) => new(port, workers);

    public Task WaitForMoreSuccessesAsync(long count, TimeSpan? timeout = null) =>
        LoadProgress.WaitForMoreSuccessesAsync(() => Succeeded, () => Failures, count, "raw keep-alive requests", timeout);

    public async Task StopAsync()
    {
        await _stop.CancelAsync();
        await Task.WhenAll(_workers);
        _elapsed.Stop();
    }

    public async ValueTask DisposeAsync()
    {
        if (!_stop.IsCancellationRequested)
        {
            await StopAsync();
        }

        _stop.Dispose();
    }

    public override string ToString() =>
        $"{Succeeded} succeeded, {Failed} failed (connection level), {ClosedByServer} responses with Connection: close, {Connections} connections in {_elapsed.Elapsed.TotalSeconds:0.0} s; by body: {string.Join(", ", _byBody.Select(kv => $"{kv.Key.Trim()}={kv.Value}"))}";

    private async Task RunAsync(int port)
    {
        RawHttpConnection? connection = null;
        try
        {
            while (!_stop.IsCancellationRequested)
            {
                try
                {
                    if (connection is null)
                    {
                        connection = await RawHttpConnection.ConnectAsync(port, _stop.Token);
                        Interlocked.Increment(ref _connections);
                    }

                    var response = await connection.GetAsync("/", TimeSpan.FromSeconds(30), _stop.Token);
                    if (response.Status == 200)
                    {
                        Interlocked.Increment(ref _succeeded);
                        _byBody.AddOrUpdate(response.Body, 1, static (_, n) => n + 1);
                    }
                    else
                    {
                        Fail($"HTTP {response.Status}");
                    }

                    if (response.ConnectionClose)
                    {
                        Interlocked.Increment(ref _closedByServer);
                        connection.Dispose();
                        connection = null;
                    }
                }
                catch (OperationCanceledException) when (_stop.IsCancellationRequested)
                {
                    return;
                }
                catch (Exception ex) when (ex is SocketException or IOException or OperationCanceledException or FormatException)
                {
                    Fail(Posix.Describe(ex));
                    connection?.Dispose();
                    connection = null;
                }
            }
        }
        finally
        {
            connection?.Dispose();
        }
    }

    private void Fail(string reason)
    {
        Interlocked.Increment(ref _failed);
        if (_failures.Count < 50)
        {
            _failures.Enqueue($"{_elapsed.Elapsed.TotalSeconds:0.000}s {reason}");
        }
    }
}
