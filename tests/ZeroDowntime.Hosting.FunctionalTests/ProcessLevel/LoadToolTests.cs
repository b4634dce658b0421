using Xunit.Abstractions;
using ZeroDowntime.Hosting.FunctionalTests.Infrastructure;
using ZeroDowntime.Hosting.Tests.Infrastructure;
using static ZeroDowntime.Hosting.FunctionalTests.Infrastructure.HandoffSteps;

namespace ZeroDowntime.Hosting.FunctionalTests;

/// <summary>
/// The short version of the benchmark (bench/): three handoffs under each real load generator that operators use,
/// and not one failed request. The tools come from Debian packages that .ci/run installs; a missing one fails.
/// </summary>
public sealed class LoadToolTests(ITestOutputHelper output)
{
    private static readonly TimeSpan ToolTimeout = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task ApacheBench_ThreeHandoffs_NoFailedRequest()
    {
        using var scope = new TestScope();
        var config = scope.Config();
        var apps = new List<SampleApp> { await StartFirstAsync("v1", config, output) };
        try
        {
            // A new connection per request (ab speaks HTTP/1.0 without keep-alive); -r: count errors, don't stop.
            await using var ab = LoadTool.Start("ab", "-r", "-c", "16", "-t", "120", "-n", "100000000", "-s", "30", new Uri(scope.BaseUri, "/").ToString());
            await HandOverThreeTimesUnderLoadAsync(apps, config, () => ab.HasExited, () => ab.Output);

            string text = await ab.InterruptAsync(ToolTimeout);
            output.WriteLine(text);
            var result = LoadTool.AbResult.Parse(text);
            Assert.True(result.Complete > 1000, $"ab completed only {result.Complete} requests");
            Assert.True(result.Failed == 0 && result.Non2xx == 0, $"ab: {result}");
        }
        finally
        {
            await DisposeAllAsync(apps);
        }
    }

    [Fact]
    public async Task Wrk_ThreeHandoffs_NoSocketErrorOrNon2xx()
    {
        using var scope = new TestScope();
        var config = scope.Config();
        var apps = new List<SampleApp> { await StartFirstAsync("v1", config, output) };
        try
        {
            // HTTP/1.1 keep-alive: 64 connections that the old process must send away without racing a request.
            await using var wrk = LoadTool.Start("wrk", "-t2", "-c64", "-d120s", "--timeout", "30s", new Uri(scope.BaseUri, "/").ToString());
            await HandOverThreeTimesUnderLoadAsync(apps, config, () => wrk.HasExited, () => wrk.Output);

            string text = await wrk.InterruptAsync(ToolTimeout);
            output.WriteLine(text);
            var result = LoadTool.WrkResult.Parse(text);
            Assert.True(result.Requests > 1000, $"wrk completed only {result.Requests} requests");
            Assert.True(result.SocketErrors == 0 && result.Non2xx == 0, $"wrk: {result}");
        }
        finally
        {
            await DisposeAllAsync(apps);
        }
    }

    [Fact]
    public async Task HttpClientHttp2_ThreeHandoffs_NoFailedRequest()
    {
        using var scope = new TestScope();
        var config = Http2Config(scope);
        var apps = new List<SampleApp> { await StartFirstAsync("v1", config, output) };
        try
        {
            // Prior-knowledge h2c; HttpClient honours GOAWAY and retries refused streams by itself, nothing else.
            await using var load = Http2Load.Start(scope.BaseUri, connections: 8, streamsPerConnection: 10, maxDuration: TimeSpan.FromMinutes(2));
            await load.WaitForMoreSuccessesAsync(500);
            await HandOverThreeTimesUnderLoadAsync(apps, config, () => load.Completion.IsCompleted, load.ToString);
            await load.WaitForMoreSuccessesAsync(500);
            await load.StopAsync();

            output.WriteLine($"HTTP/2 load: {load}");
            Assert.True(load.Failed == 0, $"{load.Failed} HTTP/2 requests failed ({string.Join(", ", load.FailuresByKind)}): {string.Join(Environment.NewLine, load.Failures)}");
            Assert.Equal(4, load.ResponsesByBody.Count);
        }
        finally
        {
            await DisposeAllAsync(apps);
        }
    }

    /// <summary>
    /// h2load does not reconnect after GOAWAY and does not retry refused streams, so it cannot show zero; the test
    /// asserts what correct HTTP/2 behaviour allows. A draining process answers the next request of each connection
    /// with GOAWAY(2^31-1), serves every stream it received, and when none is left Kestrel sends the final GOAWAY with
    /// the last processed stream id at once (it does not wait a round trip, RFC 9113 section 6.8): streams that the
    /// client sent before it read the first GOAWAY and that arrive after the final one are never processed, which
    /// GOAWAY allows and which HttpClient retries. So in a segment that was running when an old process began to
    /// drain: the requests h2load could not start after GOAWAY count as failed, and at most 10 streams (-m10) per
    /// connection (16) were sent and not answered. Every other segment succeeds entirely, and there is at most one
    /// failing segment per handoff, because later segments connect to the successor. No answer is ever non-2xx.
    /// </summary>
    [Fact]
    public async Task H2Load_ThreeHandoffs_OnlyGoAwayResidueFails()
    {
        using var scope = new TestScope();
        var config = Http2Config(scope);
        var apps = new List<SampleApp> { await StartFirstAsync("v1", config, output) };
        try
        {
            await using var segments = H2LoadSegments.Start(new Uri(scope.BaseUri, "/"), requestsPerSegment: 5000, output);
            await HandOverThreeTimesUnderLoadAsync(apps, config, () => false, () => string.Empty);
            await segments.StopAsync();

            var all = segments.Segments;
            Assert.True(all.Count >= 4, $"only {all.Count} h2load segments ran");
            long notStarted = all.Sum(s => s.Result.NotStarted);
            long unanswered = all.Sum(s => s.Result.StartedNotSucceeded);
            output.WriteLine($"h2load: {all.Count} segments, {all.Sum(s => s.Result.Succeeded)} succeeded, {notStarted} not started after GOAWAY, {unanswered} sent and not answered, in {all.Count(s => s.Result.Failed > 0)} segment(s)");
            Assert.All(all, s =>
            {
                Assert.True(s.Result.Timeout == 0 && s.Result.StatusOther == 0, $"timeouts or non-2xx: {s.Result}");
                Assert.True(s.Result.StartedNotSucceeded <= 16 * 10, $"more unanswered streams than -c16 -m10 can have in flight: {s.Result}");

                // GOAWAY only ever reaches a connection that was accepted, and its first streams are served: every
                // client completes requests. A client that could not connect (refused, reset) completes none, and all
                // its share counts as not started and errored: that is a lost connection, not GOAWAY residue.
                Assert.True(s.Result.MinClientRequestsPerSecond > 0, $"a client completed no request (it could not connect): {s.Result}");

                // What failed without being sent or answered is exactly what GOAWAY leaves: errored = not started +
                // sent and unanswered, nothing else.
                Assert.True(s.Result.Errored <= s.Result.NotStarted + s.Result.StartedNotSucceeded, $"errors beyond the GOAWAY residue: {s.Result}");
            });
            Assert.True(all.Count(s => s.Result.Failed > 0) <= 3, $"more segments with failures than handoffs: {string.Join(" | ", all.Where(s => s.Result.Failed > 0))}");
        }
        finally
        {
            await DisposeAllAsync(apps);
        }
    }

    /// <summary>The check above against a real refused connection: a port bound and not listening refuses.</summary>
    [Fact]
    public async Task H2Load_ConnectionRefused_ParsesAsAClientWithNoRequest_WhichTheSegmentCheckRejects()
    {
        using var held = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
        held.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0));
        int port = ((System.Net.IPEndPoint)held.LocalEndPoint!).Port;
        string text = await LoadTool.RunAsync(ToolTimeout, "h2load", "-c4", "-m2", "-n", "100", $"http://127.0.0.1:{port}/");
        output.WriteLine(text);
        var result = LoadTool.H2LoadResult.Parse(text);
        Assert.Equal(100, result.NotStarted);
        Assert.Equal(100, result.Errored);
        Assert.Equal(0, result.MinClientRequestsPerSecond);
    }

    private static SampleConfig Http2Config(TestScope scope) => new(scope.SocketPath,
    [
        $"--Kestrel:Endpoints:h2:Url=http://127.0.0.1:{scope.Port}",
        "--Kestrel:Endpoints:h2:Protocols=Http2",
    ]);

    /// <summary>
    /// Three handoffs, each once the load reaches the current process (its first request served) and done when the
    /// old process has drained and exited; then waits until the last successor serves too.
    /// </summary>
    private async Task HandOverThreeTimesUnderLoadAsync(List<SampleApp> apps, SampleConfig config, Func<bool> loadEnded, Func<string> loadOutput)
    {
        var current = apps[^1];
        await WaitForFirstRequestAsync(current);
        for (int version = 2; version <= 4; version++)
        {
            Assert.False(loadEnded(), "the load tool stopped before the handoffs were done: " + loadOutput());
            var (successor, oldExit) = await HandOverAsync(current, $"v{version}", config, output);
            apps.Add(successor);
            Assert.Equal(0, oldExit);
            current = successor;
            await WaitForFirstRequestAsync(current);
        }

        Assert.False(loadEnded(), "the load tool stopped before the handoffs were done: " + loadOutput());
    }

    /// <summary>The load reaches this process: the load tool is its only client, so its first accepted connection is the load's.</summary>
    private static Task<LogLine> WaitForFirstRequestAsync(SampleApp app) => app.WaitForEventAsync(Events.FirstConnectionAccepted);

    private static async Task DisposeAllAsync(IEnumerable<SampleApp> apps)
    {
        foreach (var app in apps)
        {
            await app.DisposeAsync();
        }
    }
}
