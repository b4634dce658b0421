using System.Collections.Concurrent;
using System.Net;
using ZeroDowntime.Hosting.Tests.Infrastructure;

namespace ZeroDowntime.Hosting.FunctionalTests.Infrastructure;

/// <summary>
/// Clients that call <c>/log/{i}</c> with ever-increasing i until stopped: even workers over keep-alive
/// connections, odd ones with a new connection per request.
/// </summary>
internal sealed class MarkerClient : IAsyncDisposable
{
    private readonly HttpClient _client = new() { Timeout = TimeSpan.FromSeconds(30) };
    private readonly CancellationTokenSource _stop = new(HttpLoad.MaxDuration);
    private readonly ConcurrentBag<int> _succeeded = [];
    private readonly ConcurrentQueue<string> _failures = new();
    private readonly Task[] _workers;
    private int _next;
    private long _failed;

    private readonly List<int>[] _sentByWorker;

    private MarkerClient(Uri baseUri, int workers)
    {
        _sentByWorker = Enumerable.Range(0, workers).Select(_ => new List<int>()).ToArray();
        _workers = Enumerable.Range(0, workers).Select(i => Task.Run(() => RunAsync(baseUri, newConnectionPerRequest: i % 2 == 1, _sentByWorker[i]))).ToArray();
    }

    /// <summary>Each worker's marker ids in the order it sent them (read after <see cref="StopAsync"/>).</summary>
    public IReadOnlyList<IReadOnlyList<int>> SentByWorker => _sentByWorker;

    public IReadOnlyCollection<int> Succeeded => _succeeded;

    public long Failed => Interlocked.Read(ref _failed);

    public IReadOnlyCollection<string> Failures => _failures;

    public static MarkerClient Start(Uri baseUri, int workers) => new(baseUri, workers);

    public async Task WaitForMoreAsync(int count)
    {
        int target = _succeeded.Count + count;
        using var limit = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(10));
        while (_succeeded.Count < target)
        {
            await timer.WaitForNextTickAsync(limit.Token);
        }
    }

    public async Task StopAsync()
    {
        await _stop.CancelAsync();
        await Task.WhenAll(_workers);
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

    public override string ToString() => $"{_succeeded.Count} answered 200, {Failed} failed, {_next} sent";

    private async Task RunAsync(Uri baseUri, bool newConnectionPerRequest, List<int> sent)
    {
        while (!_stop.IsCancellationRequested)
        {
            int id = Interlocked.Increment(ref _next);
            sent.Add(id);
            try
            {
                using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(baseUri, $"/log/{id}"));
                request.Headers.ConnectionClose = newConnectionPerRequest;
                using var response = await _client.SendAsync(request, _stop.Token);
                if (response.StatusCode == HttpStatusCode.OK)
                {
                    _succeeded.Add(id);
                }
                else
                {
                    Fail($"/log/{id}: HTTP {(int)response.StatusCode}");
                }
            }
            catch (OperationCanceledException) when (_stop.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex) when (ex is HttpRequestException or IOException or OperationCanceledException)
            {
                Fail($"/log/{id}: {Posix.Describe(ex)}");
            }
        }
    }

    private void Fail(string reason)
    {
        Interlocked.Increment(ref _failed);
        if (_failures.Count < 50)
        {
            _failures.Enqueue(reason);
        }
    }
}
