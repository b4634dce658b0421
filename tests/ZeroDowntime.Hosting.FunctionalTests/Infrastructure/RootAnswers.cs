using System.Collections.Concurrent;
using System.Globalization;
using ZeroDowntime.Hosting.Tests.Infrastructure;

namespace ZeroDowntime.Hosting.FunctionalTests.Infrastructure;

/// <summary>
/// Clients that ask the sample's <c>GET /</c> until stopped, each request on a new connection (so that it reaches
/// whichever process accepts), and keep every answer: when it arrived, its status, its body and the pid the body names.
/// For releases that answer 500 on purpose (<c>Sample:FailRequestsAfterMs</c>): unlike <see cref="HttpLoad"/>, a 500
/// is an answer to keep; only an exception (a connection-level failure) is a failure.
/// </summary>
internal sealed class RootAnswers : IAsyncDisposable
{
    /// <summary>The length of every body of <c>/</c>, 200 or 500 (the pid zero-padded to 7 digits in both).</summary>
    public const int BodyBytes = 52;

    private readonly HttpClient _client = new(new SocketsHttpHandler { ConnectTimeout = TimeSpan.FromSeconds(10) }) { Timeout = TimeSpan.FromSeconds(30) };
    private readonly CancellationTokenSource _stop = new(HttpLoad.MaxDuration);
    private readonly ConcurrentQueue<Answer> _answers = new();
    private readonly ConcurrentQueue<string> _failures = new();
    private readonly Task[] _workers;
    private long _failed;

    private RootAnswers(Uri baseUri, int workers) =>
        _workers = Enumerable.Range(0, workers).Select(_ => Task.Run(() => RunAsync(new Uri(baseUri, "/")))).ToArray();

    /// <summary>One answer: when it was read (this machine's clock, as the sample's log timestamps), status, body.</summary>
    public sealed record Answer(DateTimeOffset At, int Status, string Body)
    {
        /// <summary>The pid the body names (its last 7 digits before the newline), or null for another body.</summary>
        public int? Pid => Body.Length == BodyBytes && int.TryParse(Body.AsSpan(BodyBytes - 8, 7), NumberStyles.None, CultureInfo.InvariantCulture, out int pid) ? pid : null;

        public override string ToString() => $"{At:HH:mm:ss.fff} {Status} {Body.TrimEnd()}";
    }

    /// <summary>Every answer so far, in the order they arrived.</summary>
    public IReadOnlyList<Answer> Answers => [.. _answers.OrderBy(a => a.At)];

    /// <summary>How many requests ended in an exception (a connection-level failure).</summary>
    public long Failed => Interlocked.Read(ref _failed);

    /// <summary>The first 50 failures, with when they happened.</summary>
    public IReadOnlyCollection<string> Failures => _failures;

    /// <summary>Starts <paramref name="workers"/> clients; one keeps the answers in a total order (one request at a time).</summary>
    public static RootAnswers Start(Uri baseUri, int workers = 1) => new(baseUri, workers);

    /// <summary>Waits until at least <paramref name="count"/> more answers arrived (bounded).</summary>
    public Task WaitForMoreAsync(long count, TimeSpan? timeout = null) =>
        LoadProgress.WaitForMoreSuccessesAsync(() => _answers.Count, () => _failures, count, "answers of /", timeout);

    /// <summary>Waits until an answer matches (bounded), and returns it.</summary>
    public async Task<Answer> WaitForAsync(Func<Answer, bool> match, string description, TimeSpan? timeout = null)
    {
        await Until.TrueAsync(() => _answers.Any(match), description, timeout);
        return _answers.First(match);
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

    public override string ToString() =>
        $"{_answers.Count} answers ({string.Join(", ", _answers.GroupBy(a => (a.Status, a.Pid)).Select(g => $"{g.Key.Status} from pid {g.Key.Pid}: {g.Count()}"))}), " +
        $"{Failed} failed";

    private async Task RunAsync(Uri uri)
    {
        while (!_stop.IsCancellationRequested)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, uri);
            request.Headers.ConnectionClose = true;
            try
            {
                using var response = await _client.SendAsync(request, _stop.Token);
                string body = await response.Content.ReadAsStringAsync(_stop.Token);
                _answers.Enqueue(new Answer(DateTimeOffset.UtcNow, (int)response.StatusCode, body));
            }
            catch (OperationCanceledException) when (_stop.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex) when (ex is HttpRequestException or IOException or OperationCanceledException)
            {
                Interlocked.Increment(ref _failed);
                if (_failures.Count < 50)
                {
                    _failures.Enqueue($"{DateTimeOffset.UtcNow:HH:mm:ss.fff} {Posix.Describe(ex)}");
                }
            }
        }
    }
}
