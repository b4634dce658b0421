using System.Diagnostics;
using Xunit.Abstractions;
using ZeroDowntime.Hosting.FunctionalTests.Infrastructure;
using ZeroDowntime.Hosting.Tests.Infrastructure;
using static ZeroDowntime.Hosting.FunctionalTests.Infrastructure.HandoffSteps;

namespace ZeroDowntime.Hosting.FunctionalTests;

/// <summary>
/// A fleet behind a real load balancer: HAProxy in front of three sample instances (each with its own port and
/// SocketPath, so that they never take each other over), health-checked on /health/ready. A rolling restart stops
/// one instance with SIGTERM, starts it again on its port once the old process has exited, waits until HAProxy sees
/// it UP, and goes on to the next. The instance's ShutdownDelay (longer than HAProxy's inter x fall) keeps it
/// serving, with /health/ready at 503, until HAProxy has taken it out of rotation; then it drains as after a
/// handoff. HAProxy runs without retries or redispatch, so any request it could not deliver fails the test.
/// The baseline (plain Kestrel, ZeroDowntime:Enabled=false), wrk, and HAProxy with retries are in the benchmark
/// (bench/fleet.sh, docs/benchmark.md "Fleet behind HAProxy").
/// </summary>
public sealed class FleetTests(ITestOutputHelper output)
{
    private const int Rounds = 3;

    /// <summary>The sample's readiness endpoint (the library's zerodowntime check): 503 from SIGTERM on.</summary>
    private const string CheckPath = "/health/ready";
    private static readonly TimeSpan ShutdownDelay = TimeSpan.FromSeconds(1);
    private static readonly TimeSpan StateTimeout = TimeSpan.FromSeconds(15);

    [Fact]
    public async Task RollingRestart_ThreeInstancesBehindHaProxyUnderAb_NoFailedRequest()
    {
        var instances = Enumerable.Range(1, 3).Select(i => new Instance($"s{i}", new TestScope())).ToList();
        using var proxyScope = new TestScope();
        var results = new List<(int Round, LoadTool.AbResult Ab)>();
        try
        {
            foreach (var instance in instances)
            {
                instance.App = await StartFirstAsync($"{instance.Server}-1", instance.Config, output);
            }

            var options = new HaProxyOptions(instances.Select(i => (i.Server, i.Scope.Port)).ToList(), CheckPath: CheckPath);
            Assert.True(ShutdownDelay > options.TimeToDown * 2, "the shutdown delay must outlast HAProxy's inter x fall with room to spare");
            await using var haproxy = await HaProxy.StartAsync(proxyScope.Directory, options, proxyScope.Port, output);
            foreach (var instance in instances)
            {
                await haproxy.WaitForUpAsync(instance.Server, StateTimeout);
            }

            for (int round = 1; round <= Rounds; round++)
            {
                // A new connection per request (HTTP/1.0, no keep-alive) from ab to HAProxy; HAProxy keeps its own
                // keep-alive connections to the servers. -r: count errors, don't stop.
                await using var ab = LoadTool.Start("ab", "-r", "-c", "16", "-t", "120", "-n", "100000000", "-s", "30", new Uri(haproxy.BaseUri, "/").ToString());
                foreach (var instance in instances)
                {
                    // The load reaches this process (through HAProxy) before it is stopped.
                    await WaitForLoadAsync(haproxy, instance.Server);
                    Assert.False(ab.HasExited, "ab stopped before the round was done: " + ab.Output);
                    await RestartAsync(instance, round, haproxy);
                }

                await WaitForLoadAsync(haproxy, instances[^1].Server);
                string text = await ab.InterruptAsync(TimeSpan.FromSeconds(60));
                output.WriteLine(text);
                var result = LoadTool.AbResult.Parse(text);
                results.Add((round, result));
                output.WriteLine($"round {round}: ab {result.Complete} requests, {result.Failed} failed, {result.Non2xx} non-2xx");
                output.WriteLine(await haproxy.DescribeAsync());
            }

            output.WriteLine("rounds: " + string.Join("; ", results.Select(r => $"{r.Round}: {r.Ab.Complete} requests, {r.Ab.Failed} failed, {r.Ab.Non2xx} non-2xx")));
            Assert.All(results, r =>
            {
                Assert.True(r.Ab.Complete > 500, $"round {r.Round}: ab completed only {r.Ab.Complete} requests");
                Assert.True(r.Ab.Failed == 0 && r.Ab.Non2xx == 0, $"round {r.Round}: ab {r.Ab}");
            });

            // HAProxy's own view: no server error answered to a client, no failed connect or response towards a server.
            // (4xx are not counted: ab, interrupted at the end of a round, cuts its open requests short, which HAProxy
            // logs as a client abort "CR--" with 400 <BADREQ>; ab's own figures above are the clients' failures.)
            var stats = await haproxy.ShowStatAsync();
            var frontend = stats.Single(s => s.Name == "FRONTEND");
            var backend = stats.Single(s => s.Proxy == HaProxy.Backend && s.Name == "BACKEND");
            Assert.True(frontend["hrsp_5xx"] == 0, frontend.ToString());
            Assert.True(backend["econ"] == 0 && backend["eresp"] == 0, backend.ToString());
        }
        finally
        {
            foreach (var instance in instances)
            {
                if (instance.App is { } app)
                {
                    await app.DisposeAsync();
                }

                instance.Scope.Dispose();
            }
        }
    }

    /// <summary>
    /// SIGTERM; HAProxy must see the server DOWN while the old process still serves (the shutdown delay); the old
    /// process exits 0; a new one starts on the same port and SocketPath (nothing to take over: a first start); HAProxy
    /// sees it UP.
    /// </summary>
    private async Task RestartAsync(Instance instance, int round, HaProxy haproxy)
    {
        var old = instance.App!;
        var clock = Stopwatch.StartNew();
        old.Signal(Posix.SIGTERM);
        await haproxy.WaitForDownAsync(instance.Server, StateTimeout);
        var down = clock.Elapsed;
        bool exitedBeforeDown = old.HasExited;
        int exitCode = await old.WaitForExitAsync(TimeSpan.FromSeconds(60));
        var exited = clock.Elapsed;
        Assert.Equal(0, exitCode);
        Assert.False(exitedBeforeDown, $"{old.Name} exited before HAProxy took it out of rotation");

        instance.Generation++;
        instance.App = SampleApp.Start($"{instance.Server}-{instance.Generation}", instance.Config, output);
        await instance.App.WaitForEventAsync(Events.ServingHandoffSocket);
        var serving = clock.Elapsed;
        await haproxy.WaitForUpAsync(instance.Server, StateTimeout);
        output.WriteLine($"round {round} {instance.Server}: SIGTERM -> HAProxy DOWN {down.TotalMilliseconds:0} ms, old exited (0) {exited.TotalMilliseconds:0} ms, " +
            $"new one serving {serving.TotalMilliseconds:0} ms, HAProxy UP {clock.Elapsed.TotalMilliseconds:0} ms");
    }

    /// <summary>
    /// HAProxy sends this server more requests than it had: its session count (stot, which HAProxy's own health checks
    /// do not raise) grows. The server's first accepted connection would not tell, as the health check makes it.
    /// </summary>
    private static async Task WaitForLoadAsync(HaProxy haproxy, string server)
    {
        long before = (await haproxy.ServerStatAsync(server))["stot"];
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(50));
        var limit = System.Diagnostics.Stopwatch.StartNew();
        while ((await haproxy.ServerStatAsync(server))["stot"] <= before)
        {
            Assert.True(limit.Elapsed < StateTimeout, $"HAProxy sent {server} no request within {StateTimeout.TotalSeconds:0} s");
            await timer.WaitForNextTickAsync();
        }
    }

    private sealed class Instance(string server, TestScope scope)
    {
        public string Server { get; } = server;

        public TestScope Scope { get; } = scope;

        public SampleConfig Config { get; } = scope.Config()
            .With("ZeroDowntime__ShutdownDelay", ShutdownDelay.ToString("c", System.Globalization.CultureInfo.InvariantCulture));

        public int Generation { get; set; } = 1;

        public SampleApp? App { get; set; }
    }
}
