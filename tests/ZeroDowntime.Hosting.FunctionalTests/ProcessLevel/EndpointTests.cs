using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using Xunit.Abstractions;
using ZeroDowntime.Hosting.FunctionalTests.Infrastructure;
using ZeroDowntime.Hosting.Tests.Infrastructure;
using static ZeroDowntime.Hosting.FunctionalTests.Infrastructure.Handoff;

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

    private static async Task<int> GetPidAsync(string baseUri)
    {
        using var client = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        return int.Parse(await client.GetStringAsync(new Uri(new Uri(baseUri), "/pid")), CultureInfo.InvariantCulture);
    }

    [GeneratedRegex(@"tcp:127\.0\.0\.1:0 on 127\.0\.0\.1:(\d+)")]
    private static partial Regex BoundPort();
}
