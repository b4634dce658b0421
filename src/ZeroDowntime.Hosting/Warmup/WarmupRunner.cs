using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Runtime;
using System.Runtime.CompilerServices;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using ZeroDowntime.Hosting.Interop;
using ZeroDowntime.Hosting.Listeners;
using ZeroDowntime.Hosting.Logging;

namespace ZeroDowntime.Hosting.Warmup;

/// <summary>
/// Sends <see cref="ZeroDowntimeWarmupOptions.Requests"/> through this process's own Kestrel, on every endpoint bound
/// through the handoff's listeners, over HTTP/1.1 and HTTP/2 (whichever the endpoint speaks), with TLS where the endpoint
/// has it: an <see cref="HttpClient"/> whose every connection is one end of a socket pair, the other end handed to the
/// endpoint's listener as if it had been accepted (<see cref="HandoffConnectionListener.Inject"/>). So the parser, the
/// connection middleware, the app's middleware, routing and the endpoints run and are compiled as for a client, and no
/// other process can see these requests.
/// </summary>
internal sealed class WarmupRunner
{
    private static readonly Version[] Protocols = [HttpVersion.Version11, HttpVersion.Version20];

    private readonly ZeroDowntimeWarmupOptions _options;
    private readonly HandoffListenerFactory _listeners;
    private readonly IServiceProvider _services;
    private readonly ILogger _logger;
    private readonly WarmupStartupFilter? _pipeline;

    public WarmupRunner(ZeroDowntimeWarmupOptions options, HandoffListenerFactory listeners, IServiceProvider services, ILogger logger,
        WarmupStartupFilter? pipeline)
    {
        _pipeline = pipeline;
        _options = options;
        _listeners = listeners;
        _services = services;
        _logger = logger;
    }

    /// <summary>
    /// Runs the warm-up until its rounds are done, the first failure when <see cref="ZeroDowntimeWarmupOptions.Required"/>
    /// (<paramref name="stopAtFirstFailure"/>), or <paramref name="cancellationToken"/> (the deadline) fires. Returns
    /// the first failure ("GET /x on http://host:port over HTTP/1.1 answered 500"), or null.
    /// </summary>
    public async Task<string?> RunAsync(string before, bool stopAtFirstFailure, CancellationToken cancellationToken)
    {
        var requests = _options.Requests.Select(r => WarmupRequest.Parse(r, out _)).OfType<WarmupRequest>().ToArray();
        if (requests.Length == 0)
        {
            return null;
        }

        var listeners = _listeners.BoundListeners;
        if (listeners.Count == 0)
        {
            _logger.WarmupNoEndpoint();
            return null;
        }

        // One listener per endpoint as Kestrel lists it: localhost is two sockets (127.0.0.1 and ::1) of one pipeline.
        var addresses = _services.GetService<IServer>()?.Features.Get<IServerAddressesFeature>()?.Addresses ?? [];
        var endpoints = listeners.Select(l => (Listener: l, Described: Describe(l.EndPoint, addresses)))
            .DistinctBy(e => e.Described.Endpoint, StringComparer.Ordinal).ToArray();
        _logger.WarmupStarted(requests.Length, _options.Iterations, _options.Duration, _options.Concurrency, endpoints.Length, before);
        using var run = new Run(stopAtFirstFailure, cancellationToken);
        long started = Stopwatch.GetTimestamp();
        try
        {
            var spokenPairs = new List<(HandoffConnectionListener Listener, string Endpoint, bool Https, Version Protocol)>();
            foreach (var (listener, (endpoint, https)) in endpoints)
            {
                int spoken = 0;
                string? refusal = null;
                foreach (var protocol in Protocols)
                {
                    run.Token.ThrowIfCancellationRequested();
                    if (await WarmAsync(listener, endpoint, https, protocol, requests, run) is { } notSpoken)
                    {
                        refusal ??= notSpoken;
                        _logger.WarmupProtocolSkipped(endpoint, Name(protocol), notSpoken);
                        continue;
                    }

                    spoken++;
                    spokenPairs.Add((listener, endpoint, https, protocol));
                }

                if (spoken == 0)
                {
                    run.Fail($"{endpoint} answered neither HTTP/1.1 nor HTTP/2 ({refusal})");
                }
            }

            await FurtherPassesAsync(spokenPairs, requests, run);
        }
        catch (OperationCanceledException) when (run.Token.IsCancellationRequested)
        {
            if (!run.Stopped && cancellationToken.IsCancellationRequested)
            {
                run.Fail("the warm-up did not finish within the handoff timeout");
            }
        }

        _pipeline?.Finished();
        _logger.WarmupFinished(Stopwatch.GetElapsedTime(started).TotalMilliseconds, run.Sent, run.Failed);
        return run.FirstFailure;
    }

    /// <summary>
    /// Passes after the first (<see cref="ZeroDowntimeWarmupOptions.Passes"/>), on what each endpoint spoke in the first,
    /// then a wait until the JIT is quiet. The runtime counts a method's calls towards its optimized recompilation only
    /// after 100 ms without new compilations (<c>TC_CallCountingDelayMs</c>), and the first pass compiles new methods all
    /// along: its calls count for nothing, and the recompilations would come after Ready, on the only acceptor. A pause
    /// longer than that delay lets the counting start; the next pass's calls then queue the request path for the
    /// optimized tier, which the runtime compiles on its background thread while the warm-up waits.
    /// </summary>
    private async Task FurtherPassesAsync(List<(HandoffConnectionListener Listener, string Endpoint, bool Https, Version Protocol)> spoken,
        WarmupRequest[] requests, Run run)
    {
        if (_options.Passes < 2 || spoken.Count == 0 || !RuntimeFeature.IsDynamicCodeSupported)
        {
            return; // Native AOT: nothing is recompiled, a further pass would only repeat the first
        }

        for (int pass = 2; pass <= _options.Passes; pass++)
        {
            await Task.Delay(PauseBeforePass, run.Token);
            _logger.WarmupPass(pass, _options.Passes, PauseBeforePass.TotalMilliseconds);
            foreach (var (listener, endpoint, https, protocol) in spoken)
            {
                run.Token.ThrowIfCancellationRequested();
                if (await WarmAsync(listener, endpoint, https, protocol, requests, run) is { } notSpoken)
                {
                    run.Fail($"{endpoint} no longer answered {Name(protocol)} in pass {pass} ({notSpoken})");
                }
            }
        }

        await WaitForQuietJitAsync(run.Token);
    }

    /// <summary>Until no method was compiled for <see cref="QuietFor"/>, at most <see cref="QuietWaitLimit"/>.</summary>
    private async Task WaitForQuietJitAsync(CancellationToken cancellationToken)
    {
        long started = Stopwatch.GetTimestamp();
        long first = JitInfo.GetCompiledMethodCount(currentThread: false);
        long last = first;
        long quietSince = started;
        bool quiet = false;
        while (!quiet && Stopwatch.GetElapsedTime(started) < QuietWaitLimit)
        {
            await Task.Delay(QuietPoll, cancellationToken);
            long now = JitInfo.GetCompiledMethodCount(currentThread: false);
            if (now != last)
            {
                last = now;
                quietSince = Stopwatch.GetTimestamp();
            }
            else
            {
                quiet = Stopwatch.GetElapsedTime(quietSince) >= QuietFor;
            }
        }

        _logger.WarmupJitQuiet(quiet, Stopwatch.GetElapsedTime(started).TotalMilliseconds, last - first, QuietFor.TotalMilliseconds);
    }

    /// <summary>Longer than the runtime's call-counting delay (100 ms by default).</summary>
    internal static readonly TimeSpan PauseBeforePass = TimeSpan.FromMilliseconds(150);

    internal static readonly TimeSpan QuietFor = TimeSpan.FromMilliseconds(100);

    internal static readonly TimeSpan QuietWaitLimit = TimeSpan.FromSeconds(1);

    private static readonly TimeSpan QuietPoll = TimeSpan.FromMilliseconds(25);

    /// <summary>The endpoint as Kestrel lists it (its scheme tells TLS), matched by port or Unix socket path.</summary>
    internal static (string Endpoint, bool Https) Describe(EndPoint endPoint, ICollection<string> addresses)
    {
        foreach (string address in addresses)
        {
            BindingAddress parsed;
            try
            {
                parsed = BindingAddress.Parse(address);
            }
            catch (FormatException)
            {
                continue;
            }

            bool match = endPoint switch
            {
                IPEndPoint ip => !parsed.IsUnixPipe && parsed.Port == ip.Port,
                UnixDomainSocketEndPoint unix => parsed.IsUnixPipe && string.Equals(parsed.UnixPipePath, unix.ToString(), StringComparison.Ordinal),
                _ => false,
            };
            if (match)
            {
                return (address, string.Equals(parsed.Scheme, "https", StringComparison.OrdinalIgnoreCase));
            }
        }

        return (endPoint switch { UnixDomainSocketEndPoint unix => $"http://unix:{unix}", _ => $"http://{endPoint}" }, false);
    }

    private static string Name(Version protocol) => protocol.Major == 2 ? "HTTP/2" : "HTTP/1.1";

    /// <summary>
    /// The rounds on one endpoint over one protocol. Returns why the endpoint does not speak it when its first request
    /// got no answer at all (an HTTP/1.1-only endpoint refuses HTTP/2, and the other way round), else null.
    /// </summary>
    private async Task<string?> WarmAsync(HandoffConnectionListener listener, string endpoint, bool https, Version protocol,
        WarmupRequest[] requests, Run run)
    {
        var feature = new WarmupConnectionFeature(endpoint);
        using var handler = new SocketsHttpHandler
        {
            ConnectCallback = (_, _) =>
            {
                var (mine, kestrels) = Libc.SocketPair();
                if (!listener.Inject(kestrels, feature))
                {
                    mine.Dispose();
                    kestrels.Dispose();
                    throw new IOException($"{endpoint} is no longer bound");
                }

                return ValueTask.FromResult<Stream>(new NetworkStream(mine, ownsSocket: true));
            },

            // The server is this process's own Kestrel at the other end of a socket pair: there is nobody to authenticate.
#pragma warning disable CA5359 // no network between client and server: the peer is this process (see above)
            SslOptions = { RemoteCertificateValidationCallback = static (_, _, _, _) => true },
#pragma warning restore CA5359
            UseProxy = false,
            UseCookies = false,
            AllowAutoRedirect = false,
            MaxConnectionsPerServer = _options.Concurrency,
            PooledConnectionLifetime = Timeout.InfiniteTimeSpan,
        };
        using var client = new HttpClient(handler) { Timeout = Timeout.InfiniteTimeSpan };
        var baseUri = new Uri($"{(https ? "https" : "http")}://{_options.Host}/");
        string protocolName = Name(protocol);
        var stats = requests.Select(_ => new RequestStats()).ToArray();

        // The first request alone: whether the endpoint speaks this protocol at all. It does not when the request gets
        // no answer, or an error that Kestrel gave before the app saw the request (a 400 to HTTP/1.1 on HTTP/2 only).
        try
        {
            using var probe = await SendOnceAsync(client, baseUri, protocol, requests[0], run.Token);
            if (probe.Status is < 200 or >= 400 && feature.ReachedApp == 0 && _pipeline is not null)
            {
                return $"Kestrel answered {probe.Status} before the app saw the request";
            }

            Record(requests[0], stats[0], endpoint, protocol, probe, run);
        }
        catch (Exception ex) when (ex is HttpRequestException or IOException && !run.Token.IsCancellationRequested)
        {
            return ex.Message;
        }

        int rounds = 0;
        long started = Stopwatch.GetTimestamp();
        bool NextRound(bool first) => first || Interlocked.Increment(ref rounds) < _options.Iterations
            || Stopwatch.GetElapsedTime(started) < _options.Duration;
        var workers = Enumerable.Range(0, _options.Concurrency).Select(worker => Task.Run(async () =>
        {
            // Worker 0 finishes the round that the probe began.
            for (bool first = worker == 0; NextRound(first); first = false)
            {
                for (int i = first ? 1 : 0; i < requests.Length; i++)
                {
                    try
                    {
                        await SendAsync(client, baseUri, protocol, requests[i], stats[i], endpoint, run);
                    }
                    catch (Exception ex) when (ex is HttpRequestException or IOException && !run.Token.IsCancellationRequested)
                    {
                        stats[i].Record(0, 0);
                        _logger.WarmupRequestFailed(requests[i].ToString(), endpoint, protocolName, ex.Message);
                        run.Fail($"{requests[i]} on {endpoint} over {protocolName} failed: {ex.Message}");
                    }
                }
            }
        })).ToArray();
        try
        {
            await Task.WhenAll(workers);
        }
        finally
        {
            for (int i = 0; i < requests.Length; i++)
            {
                if (stats[i].Count > 0)
                {
                    _logger.WarmupRequestSummary(requests[i].ToString(), endpoint, protocolName, stats[i].Count, stats[i].Statuses(), stats[i].FirstMs, stats[i].LastMs);
                }
            }
        }

        return null;
    }

    private async Task SendAsync(HttpClient client, Uri baseUri, Version protocol, WarmupRequest request, RequestStats stats, string endpoint, Run run)
    {
        using var answer = await SendOnceAsync(client, baseUri, protocol, request, run.Token);
        Record(request, stats, endpoint, protocol, answer, run);
    }

    private static async Task<Answer> SendOnceAsync(HttpClient client, Uri baseUri, Version protocol, WarmupRequest request, CancellationToken cancellationToken)
    {
        using var message = new HttpRequestMessage(new HttpMethod(request.Method), new Uri(baseUri, request.PathAndQuery))
        {
            Version = protocol,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
        };
        foreach (var (name, value) in request.Headers)
        {
            if (!message.Headers.TryAddWithoutValidation(name, value))
            {
                message.Content ??= new ByteArrayContent([]);
                message.Content.Headers.TryAddWithoutValidation(name, value);
            }
        }

        long start = Stopwatch.GetTimestamp();
        var response = await client.SendAsync(message, HttpCompletionOption.ResponseContentRead, cancellationToken);
        return new Answer(response, (int)response.StatusCode, Stopwatch.GetElapsedTime(start).TotalMilliseconds);
    }

    private void Record(WarmupRequest request, RequestStats stats, string endpoint, Version protocol, Answer answer, Run run)
    {
        stats.Record(answer.Status, answer.ElapsedMs);
        run.Counted();
        string protocolName = Name(protocol);
        _logger.WarmupRequest(request.ToString(), endpoint, protocolName, answer.Status, answer.ElapsedMs);
        if (answer.Status is < 200 or >= 400)
        {
            _logger.WarmupRequestFailed(request.ToString(), endpoint, protocolName, $"answered {answer.Status}");
            run.Fail($"{request} on {endpoint} over {protocolName} answered {answer.Status}");
        }
    }

    /// <summary>A response, read to its end, with its status and how long it took.</summary>
    private sealed record Answer(HttpResponseMessage Response, int Status, double ElapsedMs) : IDisposable
    {
        public void Dispose() => Response.Dispose();
    }

    /// <summary>What one warm-up request got, over all its rounds on one endpoint and protocol.</summary>
    private sealed class RequestStats
    {
        private readonly ConcurrentDictionary<int, int> _byStatus = new();
        private int _count;

        public int Count => Volatile.Read(ref _count);

        public double FirstMs { get; private set; } = double.NaN;

        public double LastMs { get; private set; }

        public void Record(int status, double elapsedMs)
        {
            if (Interlocked.Increment(ref _count) == 1)
            {
                FirstMs = elapsedMs;
            }

            LastMs = elapsedMs;
            _byStatus.AddOrUpdate(status, 1, (_, n) => n + 1);
        }

        /// <summary>For example "200 x32" or "200 x31, 500 x1" (0: no answer).</summary>
        public string Statuses() => string.Join(", ", _byStatus.OrderBy(s => s.Key)
            .Select(s => string.Create(CultureInfo.InvariantCulture, $"{s.Key} x{s.Value}")));
    }

    /// <summary>The state of one warm-up: counts, the first failure, and the token that ends it.</summary>
    private sealed class Run : IDisposable
    {
        private readonly CancellationTokenSource _stop;
        private readonly bool _stopAtFirstFailure;
        private string? _firstFailure;
        private int _sent;
        private int _failed;

        public Run(bool stopAtFirstFailure, CancellationToken deadline)
        {
            _stopAtFirstFailure = stopAtFirstFailure;
            _stop = CancellationTokenSource.CreateLinkedTokenSource(deadline);
        }

        public CancellationToken Token => _stop.Token;

        public string? FirstFailure => Volatile.Read(ref _firstFailure);

        /// <summary>True when a failure stopped the warm-up (a required one).</summary>
        public bool Stopped { get; private set; }

        public int Sent => Volatile.Read(ref _sent);

        public int Failed => Volatile.Read(ref _failed);

        public void Counted() => Interlocked.Increment(ref _sent);

        public void Fail(string reason)
        {
            Interlocked.Increment(ref _failed);
            Interlocked.CompareExchange(ref _firstFailure, reason, null);
            if (_stopAtFirstFailure)
            {
                Stopped = true;
                _stop.Cancel();
            }
        }

        public void Dispose() => _stop.Dispose();
    }
}
