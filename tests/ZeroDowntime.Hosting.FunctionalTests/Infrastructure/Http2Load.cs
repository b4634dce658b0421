using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace ZeroDowntime.Hosting.FunctionalTests.Infrastructure;

/// <summary>
/// HTTP/2 cleartext load (prior knowledge, no upgrade) from <see cref="HttpClient"/>, the conforming client of the
/// load tests and of the benchmark (bench/H2Client links this file): <c>connections</c> handlers that each keep one
/// HTTP/2 connection, with <c>streams</c> requests in flight on each. After a GOAWAY the handler opens a new
/// connection, and it retries, by itself, the requests that the server refused (streams above the GOAWAY's last
/// stream id, REFUSED_STREAM); nothing else is retried. Every exception or non-2xx answer is a failure.
/// </summary>
internal sealed class Http2Load : IAsyncDisposable
{
    private readonly HttpClient[] _clients;
    private readonly CancellationTokenSource _stop;
    private readonly Task[] _workers;
    private readonly List<Sample>[] _samples;
    private readonly ConcurrentQueue<string> _failures = new();
    private readonly ConcurrentDictionary<string, long> _failuresByKind = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, int> _byBody = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, long> _firstSeenByBody = new(StringComparer.Ordinal);
    private readonly Stopwatch _elapsed = Stopwatch.StartNew();
    private long _succeeded;
    private long _failed;

    private Http2Load(Uri uri, int connections, int streamsPerConnection, TimeSpan maxDuration, bool recordSamples)
    {
        _stop = new CancellationTokenSource(maxDuration);
        _clients = Enumerable.Range(0, connections).Select(_ => new HttpClient(new SocketsHttpHandler
        {
            // One connection per handler, so that "connections" is the number of HTTP/2 connections.
            EnableMultipleHttp2Connections = false,
            PooledConnectionLifetime = Timeout.InfiniteTimeSpan,
            ConnectTimeout = TimeSpan.FromSeconds(10),
        })
        {
            DefaultRequestVersion = HttpVersion.Version20,
            DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Timeout = TimeSpan.FromSeconds(30),
        }).ToArray();

        int workers = connections * streamsPerConnection;
        _samples = Enumerable.Range(0, workers).Select(_ => recordSamples ? new List<Sample>(1 << 16) : null!).ToArray();
        _workers = Enumerable.Range(0, workers)
            .Select(i => Task.Run(() => RunAsync(_clients[i % connections], uri, recordSamples ? _samples[i] : null)))
            .ToArray();
    }

    /// <summary>One finished request: when it ended (Unix time, µs), how long it took (µs), and whether it succeeded.</summary>
    public readonly record struct Sample(long EndUnixMicros, int LatencyMicros, bool Succeeded);

    public long Succeeded => Interlocked.Read(ref _succeeded);

    public long Failed => Interlocked.Read(ref _failed);

    public IReadOnlyCollection<string> Failures => _failures.ToArray();

    /// <summary>Failures counted by kind (the HttpRequestError and socket error, or the HTTP status).</summary>
    public IReadOnlyDictionary<string, long> FailuresByKind => _failuresByKind;

    /// <summary>How many responses each distinct body (it names the serving pid) got.</summary>
    public IReadOnlyDictionary<string, int> ResponsesByBody => _byBody;

    /// <summary>When (Unix time, ms) each distinct body was first received.</summary>
    public IReadOnlyDictionary<string, long> FirstSeenByBody => _firstSeenByBody;

    public TimeSpan Elapsed => _elapsed.Elapsed;

    /// <summary>Starts the load; it runs until <see cref="StopAsync"/> or for at most <paramref name="maxDuration"/>.</summary>
    public static Http2Load Start(Uri uri, int connections, int streamsPerConnection, TimeSpan maxDuration, bool recordSamples = false) =>
        new(uri, connections, streamsPerConnection, maxDuration, recordSamples);

    /// <summary>Every finished request, once the load has stopped (only when started with <c>recordSamples</c>).</summary>
    public IReadOnlyList<Sample> Samples() =>
        _workers.All(w => w.IsCompleted)
            ? _samples.Where(s => s is not null).SelectMany(s => s).OrderBy(s => s.EndUnixMicros).ToList()
            : throw new InvalidOperationException("Stop the load first.");

    /// <summary>Waits until at least <paramref name="count"/> more requests have succeeded (bounded).</summary>
    public Task WaitForMoreSuccessesAsync(long count, TimeSpan? timeout = null) =>
        LoadProgress.WaitForMoreSuccessesAsync(() => Succeeded, () => Failures, count, "HTTP/2 requests", timeout);

    /// <summary>Waits until all workers have ended (at most <see cref="StopAsync"/>'s stop plus one request timeout).</summary>
    public Task Completion => Task.WhenAll(_workers);

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
        else
        {
            await Task.WhenAll(_workers);
        }

        foreach (var client in _clients)
        {
            client.Dispose();
        }

        _stop.Dispose();
    }

    public override string ToString() =>
        $"{Succeeded} succeeded, {Failed} failed in {Elapsed.TotalSeconds:0.0} s; by body: {string.Join(", ", _byBody.Select(kv => $"{kv.Key.Trim()}={kv.Value}"))}";

    private static long UnixMicros() => (DateTime.UtcNow.Ticks - DateTime.UnixEpoch.Ticks) / 10;

    private async Task RunAsync(HttpClient client, Uri uri, List<Sample>? samples)
    {
        while (!_stop.IsCancellationRequested)
        {
            long start = Stopwatch.GetTimestamp();
            bool ok = false;
            try
            {
                using var response = await client.GetAsync(uri, _stop.Token);
                string body = await response.Content.ReadAsStringAsync(_stop.Token);
                if (response.IsSuccessStatusCode)
                {
                    ok = true;
                    Interlocked.Increment(ref _succeeded);
                    if (_byBody.AddOrUpdate(body, 1, static (_, n) => n + 1) == 1)
                    {
                        _firstSeenByBody.TryAdd(body, UnixMicros() / 1000);
                    }
                }
                else
                {
                    Fail($"HTTP {(int)response.StatusCode}", $"HTTP {(int)response.StatusCode}: {body}");
                }
            }
            catch (OperationCanceledException) when (_stop.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex) when (ex is HttpRequestException or IOException or OperationCanceledException)
            {
                Fail(Kind(ex), Describe(ex));
            }

            samples?.Add(new Sample(UnixMicros(), (int)Math.Min(int.MaxValue, Stopwatch.GetElapsedTime(start).Ticks / 10), ok));
        }
    }

    private static string Describe(Exception ex)
    {
        var text = new System.Text.StringBuilder(ex.GetType().Name).Append(": ").Append(ex.Message);
        for (var inner = ex.InnerException; inner is not null; inner = inner.InnerException)
        {
            text.Append(" -> ").Append(inner.GetType().Name).Append(": ").Append(inner.Message);
        }

        return text.ToString();
    }

    private static string Kind(Exception ex)
    {
        string kind = ex is HttpRequestException http ? http.HttpRequestError.ToString() : ex.GetType().Name;
        for (var inner = ex.InnerException; inner is not null; inner = inner.InnerException)
        {
            if (inner is SocketException socket)
            {
                return $"{kind}/{socket.SocketErrorCode}";
            }
        }

        return kind;
    }

    private void Fail(string kind, string reason)
    {
        Interlocked.Increment(ref _failed);
        _failuresByKind.AddOrUpdate(kind, 1, static (_, n) => n + 1);
        if (_failures.Count < 50)
        {
            _failures.Enqueue($"{_elapsed.Elapsed.TotalSeconds:0.000}s {reason}");
        }
    }
}
