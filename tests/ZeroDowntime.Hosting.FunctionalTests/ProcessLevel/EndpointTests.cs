using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using Xunit.Abstractions;
using ZeroDowntime.Hosting.FunctionalTests.Infrastructure;
using ZeroDowntime.Hosting.Tests.Infrastructure;
using static ZeroDowntime.Hosting.FunctionalTests.Infrastructure.HandoffSteps;

namespace ZeroDowntime.Hosting.FunctionalTests;

/// <summary>Every way an app configures its endpoints is matched, endpoint by endpoint, across a handoff.</summary>
public sealed partial class EndpointTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Localhost_IsTwoListeners_BothInherited()
    {
        using var scope = new TestScope();
        var config = scope.Config() with { Arguments = ["--urls", $"http://localhost:{scope.Port}"] };
        await using var v1 = await StartFirstAsync("v1", config, output);
        Assert.Equal(2, v1.Entries.Count(l => l.Is(Events.ListenerBound)));

        var (v2, oldExit) = await HandOverAsync(v1, "v2", config, output);
        await using var _ = v2;
        Assert.Equal(0, oldExit);
        Assert.Contains(v2.Entries, l => l.Is(Events.ListenerInherited) && l.Contains($"tcp:127.0.0.1:{scope.Port}", StringComparison.Ordinal));
        Assert.Contains(v2.Entries, l => l.Is(Events.ListenerInherited) && l.Contains($"tcp:[::1]:{scope.Port}", StringComparison.Ordinal));
        Assert.DoesNotContain(v2.Entries, l => l.Is(Events.ListenerBound));
        Assert.Equal(v2.Pid, await GetPidAsync($"http://127.0.0.1:{scope.Port}"));
        Assert.Equal(v2.Pid, await GetPidAsync($"http://[::1]:{scope.Port}"));
    }

    [Fact]
    public async Task AnyAddress_IsOneDualModeListener_Inherited()
    {
        using var scope = new TestScope();
        var config = scope.Config() with { Arguments = ["--urls", $"http://*:{scope.Port}"] };
        await using var v1 = await StartFirstAsync("v1", config, output);
        var (v2, _) = await HandOverAsync(v1, "v2", config, output);
        await using var __ = v2;

        Assert.Single(v2.Entries, l => l.Is(Events.ListenerInherited) && l.Contains($"tcp:[::]:{scope.Port}", StringComparison.Ordinal));
        Assert.Equal(v2.Pid, await GetPidAsync($"http://127.0.0.1:{scope.Port}"));
        Assert.Equal(v2.Pid, await GetPidAsync($"http://[::1]:{scope.Port}"));
    }

    [Fact]
    public async Task PortZero_KeepsThePredecessorsPort()
    {
        using var scope = new TestScope();
        var config = scope.Config() with { Arguments = ["--urls", "http://127.0.0.1:0"] };
        await using var v1 = await StartFirstAsync("v1", config, output);
        int port = int.Parse(BoundPort().Match(v1.Entries.First(l => l.Is(Events.ListenerBound))).Groups[1].Value, CultureInfo.InvariantCulture);
        Assert.NotEqual(0, port);

        var (v2, _) = await HandOverAsync(v1, "v2", config, output);
        await using var __ = v2;
        Assert.Contains(v2.Entries, l => l.Is(Events.ListenerInherited) && l.Contains($"tcp:127.0.0.1:0 on 127.0.0.1:{port}", StringComparison.Ordinal));
        Assert.Equal(v2.Pid, await GetPidAsync($"http://127.0.0.1:{port}"));
    }

    [Fact]
    public async Task AspNetCoreUrlsAndKestrelEndpointsConfiguration_AreHandedOver()
    {
        using var scope = new TestScope();
        int second = TestScope.FreePort();
        var config = (scope.Config() with { Arguments = [] })
            .With("Kestrel__Endpoints__main__Url", $"http://127.0.0.1:{scope.Port}")
            .With("Kestrel__Endpoints__admin__Url", $"http://127.0.0.1:{second}");
        await using var v1 = await StartFirstAsync("v1", config, output);

        // The next version is configured through ASPNETCORE_URLS instead: same endpoints, same sockets.
        var next = (scope.Config() with { Arguments = [] }).With("ASPNETCORE_URLS", $"http://127.0.0.1:{scope.Port};http://127.0.0.1:{second}");
        var (v2, _) = await HandOverAsync(v1, "v2", next, output);
        await using var __ = v2;
        Assert.Equal(2, v2.Entries.Count(l => l.Is(Events.ListenerInherited)));
        Assert.Equal(v2.Pid, await GetPidAsync($"http://127.0.0.1:{scope.Port}"));
        Assert.Equal(v2.Pid, await GetPidAsync($"http://127.0.0.1:{second}"));
    }

    [Fact]
    public async Task ChangedConfiguration_NewEndpointBound_DroppedEndpointClosedNotLeftQueueing()
    {
        using var scope = new TestScope();
        int dropped = TestScope.FreePort();
        int added = TestScope.FreePort();
        var v1Config = scope.Config() with { Arguments = ["--urls", $"http://127.0.0.1:{scope.Port};http://127.0.0.1:{dropped}"] };
        var v2Config = scope.Config() with { Arguments = ["--urls", $"http://127.0.0.1:{scope.Port};http://127.0.0.1:{added}"] };
        await using var v1 = await StartFirstAsync("v1", v1Config, output);

        var (v2, oldExit) = await HandOverAsync(v1, "v2", v2Config, output);
        await using var _ = v2;
        Assert.Equal(0, oldExit);
        Assert.Contains(v2.Entries, l => l.Is(Events.ListenerInherited) && l.Contains($":{scope.Port}", StringComparison.Ordinal));
        Assert.Contains(v2.Entries, l => l.Is(Events.ListenerBound) && l.Contains($":{added}", StringComparison.Ordinal));
        Assert.Contains(v2.Entries, l => l.Is(Events.InheritedListenerUnused) && l.Contains($":{dropped}", StringComparison.Ordinal));
        Assert.Equal(v2.Pid, await GetPidAsync($"http://127.0.0.1:{added}"));

        // Nobody holds the dropped socket any more: connections are refused, not queued.
        using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        var ex = await Assert.ThrowsAsync<SocketException>(() => probe.ConnectAsync(IPAddress.Loopback, dropped));
        Assert.Equal(SocketError.ConnectionRefused, ex.SocketErrorCode);
    }

    // Issue 18 item 3: v1 on two ports drains a 15 s request; v2 is configured with the first port only. At the commit
    // v1 closed its gate, but its copy of the dropped port still listened: a connect succeeded and hung until v1 exited.
    // v2 shuts the dropped socket down when it takes over, so the kernel refuses at once, while v1 still drains.
    [Fact]
    public async Task DroppedEndpoint_WhileTheOldProcessDrains_RefusesAtOnce()
    {
        using var scope = new TestScope();
        var (dropped, v1Config, v2Config) = TwoPortsThenOne(scope);
        await using var v1 = await StartFirstAsync("v1", v1Config, output);
        using var client = new HttpClient { Timeout = TimeSpan.FromMinutes(1) };
        var inFlight = client.GetStringAsync(new Uri($"http://127.0.0.1:{dropped}/delay/15000"));
        await v1.WaitForEventAsync(Events.FirstConnectionAccepted);

        await using var v2 = SampleApp.Start("v2", v2Config, output);
        await v2.WaitForEventAsync(Events.Committed);
        await v2.WaitForEventAsync(Events.DroppedListenerShutDown);
        Assert.False(v1.HasExited, "v1 must still drain, or the test shows nothing");

        using (var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        {
            var ex = await Assert.ThrowsAsync<SocketException>(() => probe.ConnectAsync(IPAddress.Loopback, dropped));
            Assert.Equal(SocketError.ConnectionRefused, ex.SocketErrorCode);
        }

        Assert.False(v1.HasExited);
        Assert.Equal(v2.Pid, await GetPidAsync($"http://127.0.0.1:{scope.Port}"));
        Assert.Contains("pid", await inFlight, StringComparison.Ordinal); // v1 finished what it had accepted on it
        Assert.Equal(0, await v1.WaitForExitAsync());
    }

    // Issue 18 item 3, the other half: the successor that shut the dropped endpoint down freezes after its commit; the old
    // process takes it for lost (no heartbeat for 5 s), binds the dropped endpoint anew and serves both ports again.
    [Fact]
    public async Task DroppedEndpoint_SuccessorLostAfterTheCommit_OldProcessBindsItAnewAndServesBothPorts()
    {
        using var scope = new TestScope();
        var (dropped, v1Config, v2Config) = TwoPortsThenOne(scope);
        await using var v1 = await StartFirstAsync("v1", v1Config, output);
        using var client = new HttpClient { Timeout = TimeSpan.FromMinutes(1) };
        var inFlight = client.GetStringAsync(new Uri($"http://127.0.0.1:{scope.Port}/delay/20000")); // keeps v1 draining
        await v1.WaitForEventAsync(Events.FirstConnectionAccepted);
        await using var v2 = SampleApp.Start("v2", v2Config, output);
        await v2.WaitForEventAsync(Events.DroppedListenerShutDown);
        await v2.WaitForEventAsync(Events.ServingHandoffSocket);

        v2.Signal(Posix.SIGSTOP);
        try
        {
            await v1.WaitForEventAsync(Events.SuccessorLost, TimeSpan.FromSeconds(20));
            await v1.WaitForEventAsync(Events.ListenerRevived);
            Assert.Equal(v1.Pid, await GetPidAsync($"http://127.0.0.1:{dropped}"));
            Assert.Equal(v1.Pid, await GetPidAsync($"http://127.0.0.1:{scope.Port}"));
        }
        finally
        {
            v2.Signal(Posix.SIGCONT);
        }

        Assert.Equal(ZeroDowntimeExitCodes.HandoffAbandoned, await v2.WaitForExitAsync());
        Assert.Contains("pid", await inFlight, StringComparison.Ordinal);
    }

    /// <summary>v1 on the scope's port and a second one (draining up to a minute); v2 on the scope's port only.</summary>
    private static (int Dropped, SampleConfig V1, SampleConfig V2) TwoPortsThenOne(TestScope scope)
    {
        int dropped = TestScope.FreePort();
        var v1 = scope.Config().With("ZeroDowntime__DrainTimeout", "00:01:00") with { Arguments = ["--urls", $"http://127.0.0.1:{scope.Port};http://127.0.0.1:{dropped}"] };
        var v2 = scope.Config() with { Arguments = ["--urls", $"http://127.0.0.1:{scope.Port}"] };
        return (dropped, v1, v2);
    }

    private static async Task<int> GetPidAsync(string baseUri)
    {
        using var client = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        return int.Parse(await client.GetStringAsync(new Uri(new Uri(baseUri), "/pid")), CultureInfo.InvariantCulture);
    }

    [GeneratedRegex(@"tcp:127\.0\.0\.1:0 on 127\.0\.0\.1:(\d+)")]
    private static partial Regex BoundPort();

    // Item 2: the port is held by a copy that serves no handoff socket (here: the sample with ZeroDowntime disabled).
    // The new process must say what is wrong in one line and exit with a documented code, not abort (134).
    [Fact]
    public async Task PortHeldByCopyWithoutHandoffSocket_NewProcessExits79_NamingEndpointAndSocketPath()
    {
        using var scope = new TestScope();
        var config = scope.Config();
        await using var plain = SampleApp.Start("plain", config.With("ZeroDowntime__Enabled", "false"), output);
        await plain.WaitForLineAsync(l => l.Contains("Application started", StringComparison.Ordinal), "Application started");

        await using var v1 = SampleApp.Start("v1", config, output);
        int exitCode = await v1.WaitForExitAsync();

        Assert.Equal(ZeroDowntimeExitCodes.AddressInUse, exitCode);
        var line = await v1.WaitForEventAsync(Events.AddressInUse);
        Assert.Contains($"127.0.0.1:{scope.Port}", line, StringComparison.Ordinal);
        Assert.Contains(scope.SocketPath, line, StringComparison.Ordinal);
        var stderr = v1.Lines.Where(l => l.StartsWith("stderr: ZeroDowntime:", StringComparison.Ordinal)).ToArray();
        Assert.Single(stderr);
        Assert.Contains($"127.0.0.1:{scope.Port}", stderr[0], StringComparison.Ordinal);
        Assert.Contains("(exit code 79)", stderr[0], StringComparison.Ordinal);

        // The copy that holds the port is untouched.
        using var client = new HttpClient();
        Assert.Equal(plain.Pid.ToString(CultureInfo.InvariantCulture), await client.GetStringAsync(new Uri(scope.BaseUri, "/pid")));
    }
}
