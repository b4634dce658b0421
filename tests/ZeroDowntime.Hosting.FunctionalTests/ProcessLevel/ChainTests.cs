using Xunit.Abstractions;
using ZeroDowntime.Hosting.FunctionalTests.Infrastructure;
using ZeroDowntime.Hosting.Tests.Infrastructure;
using static ZeroDowntime.Hosting.FunctionalTests.Infrastructure.HandoffSteps;

namespace ZeroDowntime.Hosting.FunctionalTests;

/// <summary>
/// Three generations at once (v1 draining, v2 serving, v3 starting), with the real sample as OS processes: whatever
/// dies, exactly one generation serves afterwards, and it is never one that a newer one has replaced.
/// </summary>
public sealed class ChainTests(ITestOutputHelper output)
{
    // Issue 18 item 1: v1 drains a 20 s request after handing over to v2; v3 receives the sockets from v2 and warms
    // up for 6 s; v2 is killed meanwhile. Before, v1 saw the end of v2's stream without Release, served again and
    // re-served the handoff socket, while v3 carried on alone: both answered /pid, for good. Now v2 released v1 when v3
    // greeted it, so v1 only finishes its drain; v3 carries on alone once started (its connections wait in the
    // kernel's queue meanwhile).
    [Fact]
    public async Task MiddleKilledWhileThirdStarts_OnlyTheThirdServes_FirstFinishesItsDrainAndExits()
    {
        using var scope = new TestScope();
        var config = scope.Config().With("ZeroDowntime__DrainTimeout", "00:01:00");
        using var client = new HttpClient { Timeout = TimeSpan.FromMinutes(1) };
        var (v1, v1Request, v2) = await FirstDrainingSecondServingAsync(scope, config, client);
        await using var _ = v1;
        await using var __ = v2;

        await using var v3 = SampleApp.Start("v3", config.With("Sample__StartupDelayMs", "6000"), output);
        await v3.WaitForEventAsync(Events.ListenersReceived);
        await v1.WaitForEventAsync(Events.ReleasedBySuccessor);
        Assert.False(v1.HasExited, "v1 must still be draining when v2 dies, or the test shows nothing");
        Assert.False(v3.Entries.Any(l => l.Is(Events.SentReady)), "v3 must still be starting when v2 dies");

        v2.Signal(Posix.SIGKILL);
        await v2.WaitForExitAsync();
        await v3.WaitForEventAsync(Events.PredecessorVanished, TimeSpan.FromSeconds(30));
        await v3.WaitForEventAsync(Events.ServingHandoffSocket);

        // Every new connection for 6 s goes to v3; v1 never says that it serves again.
        await AssertOnlyOneServesAsync(scope.BaseUri, v3, TimeSpan.FromSeconds(6), output);

        Assert.DoesNotContain(v1.Entries, l => l.Is(Events.SuccessorLost));
        Assert.Contains("pid", await v1Request, StringComparison.Ordinal);
        Assert.Equal(0, await v1.WaitForExitAsync());

        // And the chain goes on from v3: a fourth version takes over from it.
        var (v4, v3Exit) = await HandOverAsync(v3, "v4", config, output);
        await using var ___ = v4;
        Assert.Equal(0, v3Exit);
    }

    // Issue 8 item 3: v1 drains, v2 takes over, v3 takes over from v2, v2 is killed while it drains. v1 must never
    // serve again: v2 released it when v3 greeted it.
    [Fact]
    public async Task MiddleKilledWhileDrainingAfterThirdTookOver_FirstNeverServesAgain()
    {
        using var scope = new TestScope();
        var config = scope.Config().With("ZeroDowntime__DrainTimeout", "00:01:00");
        using var client = new HttpClient { Timeout = TimeSpan.FromMinutes(1) };
        var (v1, v1Request, v2) = await FirstDrainingSecondServingAsync(scope, config, client);
        await using var _ = v1;
        await using var __ = v2;
        var v2Request = client.GetStringAsync(new Uri(scope.BaseUri, "/delay/20000"));
        await v2.WaitForEventAsync(Events.FirstConnectionAccepted);

        await using var v3 = SampleApp.Start("v3", config, output);
        await v3.WaitForEventAsync(Events.Committed);
        await v3.WaitForEventAsync(Events.ServingHandoffSocket);
        await v2.WaitForEventAsync(Events.DrainStarted);
        Assert.False(v1.HasExited, "v1 must still be draining when v2 dies, or the test shows nothing");

        v2.Signal(Posix.SIGKILL);
        await v2.WaitForExitAsync();

        // Every new connection for 6 s goes to v3, and v1 does not log that it serves again.
        await AssertOnlyOneServesAsync(scope.BaseUri, v3, TimeSpan.FromSeconds(6), output);

        Assert.DoesNotContain(v1.Entries, l => l.Is(Events.SuccessorLost));
        Assert.Contains("pid", await v1Request, StringComparison.Ordinal);
        Assert.Equal(0, await v1.WaitForExitAsync());
        await Task.WhenAny(v2Request); // v2 was killed with it in flight: its outcome is not the point
    }

    /// <summary>
    /// v1 with a 20 s request in flight hands over to v2: v1 drains (for that request), v2 serves the handoff socket.
    /// </summary>
    private async Task<(SampleApp V1, Task<string> V1Request, SampleApp V2)> FirstDrainingSecondServingAsync(TestScope scope, SampleConfig config, HttpClient client)
    {
        var v1 = await StartFirstAsync("v1", config, output);
        var v1Request = client.GetStringAsync(new Uri(scope.BaseUri, "/delay/20000"));
        await v1.WaitForEventAsync(Events.FirstConnectionAccepted); // the long request is v1's
        var v2 = SampleApp.Start("v2", config, output);
        await v2.WaitForEventAsync(Events.Committed);
        await v2.WaitForEventAsync(Events.ServingHandoffSocket);
        return (v1, v1Request, v2);
    }
}
