using System.Collections.Concurrent;
using System.Diagnostics;
using ZeroDowntime.Hosting.Tests.Infrastructure;

namespace ZeroDowntime.Hosting.FunctionalTests.Infrastructure;

/// <summary>
/// Clients that send requests continuously until stopped (and for at most <see cref="MaxDuration"/>): either a
/// new connection per request (<c>Connection: close</c>) or keep-alive connections from one pool. Every
/// exception or non-200 answer is a failure.
/// </summary>
internal sealed class HttpLoad : IAsyncDisposable
{
    public static readonly TimeSpan MaxDuration = TimeSpan.FromMinutes(3);

    private readonly HttpClient _client;
    private readonly CancellationTokenSource _stop = new(MaxDuration);
    private readonly Task[] _workers;
    private readonly ConcurrentQueue<string> _failures = new();
    private readonly ConcurrentDictionary<string, int> _byBody = new();
    private readonly Stopwatch _elapsed = Stopwatch.StartNew();
    private long _succeeded;
    private long _failed;

    private HttpLoad(Uri uri, int workers, bool newConnectionPerRequest)
    {
        _client = new HttpClient(new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.FromMinutes(10) })
        {
            Timeout = TimeSpan.FromSeconds(30),
        };
        _workers = Enumerable.Range(0, workers).Select(_ => Task.Run(() => RunAsync(uri, newConnectionPerRequest))).ToArray();
    }

    public long Succeeded => Interlocked.Read(ref _succeeded);

    public long Failed => Interlocked.Read(ref _failed);

    public IReadOnlyCollection<string> Failures => _failures.ToArray();

    /// <summary>How many responses each distinct body (it names the serving pid) got.</summary>
    public IReadOnlyDictionary<string, int> ResponsesByBody => _byBody;

    public TimeSpan Elapsed => _elapsed.Elapsed;

    public static HttpLoad Start(Uri uri, int workers, bool newConnectionPerRequest) => new(uri, workers, newConnectionPerRequest);

    /// <summary>Waits until at least <paramref name="count"/> more requests have succeeded (bounded).</summary>
    public Task WaitForMoreSuccessesAsync(long count, TimeSpan? timeout = null) =>
        LoadProgress.WaitForMoreSuccessesAsync(() => Succeeded, () => Failures, count, "requests", timeout);

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

        _client.Dispose();
        _stop.Dispose();
    }

    /// <summary>Fails the test with every recorded failure when any request failed.</summary>
    public void AssertNoFailures() =>
        Assert.True(Failed == 0, $"{Failed} requests failed: {string.Join(Environment.NewLine, Failures)}");

    public override string ToString() =>
        $"{Succeeded} succeeded, {Failed} failed in {Elapsed.TotalSeconds:0.0} s; by body: {string.Join(", ", _byBody.Select(kv => $"{kv.Key.Trim()}={kv.Value}"))}";

    private async Task RunAsync(Uri uri, bool newConnectionPerRequest)
    {
        while (!_stop.IsCancellationRequested)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, uri);
            if (newConnectionPerRequest)
            {
                request.Headers.ConnectionClose = true;
            }

            try
            {
                using var response = await _client.SendAsync(request, _stop.Token);
                string body = await response.Content.ReadAsStringAsync(_stop.Token);
                if (response.IsSuccessStatusCode)
                {
                    Interlocked.Increment(ref _succeeded);
                    _byBody.AddOrUpdate(body, 1, static (_, n) => n + 1);
                }
                else
                {
                    Fail($"HTTP {(int)response.StatusCode}: {body}");
                }
            }
            catch (OperationCanceledException) when (_stop.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex) when (ex is HttpRequestException or IOException or OperationCanceledException)
            {
                Fail(Posix.Describe(ex));
            }
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
