using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Xunit.Abstractions;
using ZeroDowntime.Hosting.FunctionalTests.Infrastructure;
using ZeroDowntime.Hosting.Tests.Infrastructure;
using static ZeroDowntime.Hosting.FunctionalTests.Infrastructure.HandoffSteps;

namespace ZeroDowntime.Hosting.FunctionalTests;

/// <summary>Metrics, health and the drain on a plain shutdown (issue 11), with the real sample as OS processes.</summary>
public sealed class ObservabilityTests(ITestOutputHelper output)
{
    // The drain on a plain shutdown: idle keep-alive connections are not closed under the client's next request
    // (Kestrel's own stop would close them at once, racing it); they are answered with Connection: close.
    [Fact]
    public async Task PlainSigterm_IdleKeepAliveConnections_NextRequestAnsweredWithConnectionClose_ThenExit0()
    {
        using var scope = new TestScope();
        var config = scope.Config().With("ZeroDowntime__IdleConnectionGracePeriod", "00:00:05");
        await using var v1 = await StartFirstAsync("v1", config, output);
        var connections = new List<RawHttpConnection>();
        for (int i = 0; i < 8; i++)
        {
            var connection = await RawHttpConnection.ConnectAsync(scope.Port);
            var response = await connection.GetAsync("/pid", TimeSpan.FromSeconds(30));
            Assert.Equal(200, response.Status);
            Assert.False(response.ConnectionClose);
            connections.Add(connection);
        }

        v1.Signal(Posix.SIGTERM);
        await v1.WaitForEventAsync(Events.DrainStarted);

        // The listener is closed: a new connection is refused at once, not queued for nobody.
        using (var late = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        {
            var refused = await Assert.ThrowsAsync<SocketException>(() => late.ConnectAsync(IPAddress.Loopback, scope.Port));
            Assert.Equal(SocketError.ConnectionRefused, refused.SocketErrorCode);
        }

        foreach (var connection in connections)
        {
            var response = await connection.GetAsync("/pid", TimeSpan.FromSeconds(30));
            Assert.Equal(200, response.Status);
            Assert.True(response.ConnectionClose);
            Assert.Equal(v1.Pid.ToString(CultureInfo.InvariantCulture), response.Body);
            connection.Dispose();
        }

        Assert.Equal(0, await v1.WaitForExitAsync());
        Assert.False(File.Exists(scope.SocketPath), "the sole server removes its handoff socket");
    }

    // The shutdown delay: readiness says 503 while everything is still served; a second SIGTERM skips the rest.
    [Fact]
    public async Task ShutdownDelay_ReadyIs503WhileStillServing_SecondSigtermSkipsTheRest()
    {
        using var scope = new TestScope();
        var config = scope.Config().With("ZeroDowntime__ShutdownDelay", "00:02:00");
        await using var v1 = await StartFirstAsync("v1", config, output);
        using var client = new HttpClient();
        Assert.Equal(HttpStatusCode.OK, (await GetFreshAsync(client, scope.BaseUri, "/health/ready")).StatusCode);

        v1.Signal(Posix.SIGTERM);
        await v1.WaitForEventAsync(Events.ShutdownDelayStarted);
        using (var ready = await GetFreshAsync(client, scope.BaseUri, "/health/ready"))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, ready.StatusCode);
        }

        Assert.Equal(HttpStatusCode.OK, (await GetFreshAsync(client, scope.BaseUri, "/health/live")).StatusCode);
        using (var served = await GetFreshAsync(client, scope.BaseUri, "/pid"))
        {
            Assert.Equal(HttpStatusCode.OK, served.StatusCode);
            Assert.Equal(v1.Pid.ToString(CultureInfo.InvariantCulture), await served.Content.ReadAsStringAsync());
        }

        var secondSignal = Stopwatch.StartNew();
        v1.Signal(Posix.SIGTERM);
        await v1.WaitForEventAsync(Events.ShutdownDelaySkipped);
        Assert.Equal(0, await v1.WaitForExitAsync());
        output.WriteLine($"exited {secondSignal.ElapsedMilliseconds} ms after the second SIGTERM (the delay was 120 s)");
        Assert.True(secondSignal.Elapsed < TimeSpan.FromSeconds(60), "the second SIGTERM must cut the 120 s delay short");
    }

    // Readiness follows the handoff: every probe (a new connection each) during a handoff lands on an accepting
    // process and says 200, and so does the old process on a keep-alive connection it still serves while it drains:
    // the node serves throughout. (A 503 there would take the node out of its load balancer at every deploy.)
    [Fact]
    public async Task Handoff_ReadinessProbes_Always200_OnNewConnectionsAndOnTheDrainingOldProcess()
    {
        using var scope = new TestScope();
        var config = scope.Config().With("ZeroDowntime__IdleConnectionGracePeriod", "00:00:05");
        var v1 = await StartFirstAsync("v1", config, output);
        using var held = await RawHttpConnection.ConnectAsync(scope.Port);
        Assert.Equal(200, (await held.GetAsync("/health/ready", TimeSpan.FromSeconds(30))).Status);
        await using var probes = HttpLoad.Start(new Uri(scope.BaseUri, "/health/ready"), workers: 2, newConnectionPerRequest: true);
        await probes.WaitForMoreSuccessesAsync(50);

        var v2 = SampleApp.Start("v2", config, output);
        await using var _ = v2;
        await v2.WaitForEventAsync(Events.Committed);
        var draining = await held.GetAsync("/health/ready", TimeSpan.FromSeconds(30));
        Assert.Equal(200, draining.Status);
        Assert.True(draining.ConnectionClose, "the draining old process still says goodbye");
        output.WriteLine($"v1 on its kept connection while draining: {draining.Status} {draining.Body}");

        Assert.Equal(0, await v1.WaitForExitAsync(TimeSpan.FromSeconds(60)));
        await v1.DisposeAsync();
        await probes.WaitForMoreSuccessesAsync(50);
        await probes.StopAsync();
        output.WriteLine($"probes: {probes}");
        probes.AssertNoFailures();
    }

    // Metrics of the live sample, read from outside with the real dotnet-counters: generation 2 after one handoff.
    [Fact]
    public async Task DotnetCounters_AfterOneHandoff_GenerationIs2()
    {
        string tool = await DotnetCounters.InstallAsync(output);
        using var scope = new TestScope();
        var config = scope.Config();
        var v1 = await StartFirstAsync("v1", config, output);
        var (v2, oldExit) = await HandOverAsync(v1, "v2", config, output);
        await using var _ = v2;
        await v1.DisposeAsync();
        Assert.Equal(0, oldExit);

        var values = await DotnetCounters.CollectAsync(tool, v2.Pid, scope.Directory, output);
        Assert.Equal(2, values.Single(v => v.Name == "zerodowntime.generation").Value);
        Assert.Equal(1, values.Single(v => v.Name == "zerodowntime.listeners" && v.Tags.Contains("inherited", StringComparison.Ordinal)).Value);
    }

    private static Task<HttpResponseMessage> GetFreshAsync(HttpClient client, Uri baseUri, string path)
    {
        var request = new HttpRequestMessage(HttpMethod.Get, new Uri(baseUri, path));
        request.Headers.ConnectionClose = true;
        return client.SendAsync(request);
    }
}
