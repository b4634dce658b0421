using System.Globalization;
using Xunit.Abstractions;
using ZeroDowntime.Hosting.FunctionalTests.Infrastructure;
using ZeroDowntime.Hosting.Tests.Infrastructure;
using static ZeroDowntime.Hosting.FunctionalTests.Infrastructure.HandoffSteps;

namespace ZeroDowntime.Hosting.FunctionalTests;

/// <summary>
/// Upgrading the library itself must never need downtime: the sample built from the last landed release before the
/// protocol bump (it speaks only handoff protocol v1), and the sample built from the commit that landed before the
/// present rules (one fallback at a time, a released predecessor closing the connection), hand over to this build
/// and back, under load, with 0 failed requests.
/// </summary>
public sealed class ProtocolCompatibilityTests(ITestOutputHelper output, PreviousReleaseBuild previous, LastLandedBuild landed)
    : IClassFixture<PreviousReleaseBuild>, IClassFixture<LastLandedBuild>
{
    [Fact]
    public async Task ProtocolV1Build_HandsOverToThisBuildAndBack_UnderLoad_NoRequestFails()
    {
        using var scope = new TestScope();
        var thisBuild = scope.Config();
        var v1Build = thisBuild with { SampleDirectory = previous.SampleDirectory };

        var old = await StartFirstAsync("v1-protocol1", v1Build, output);
        await using var load = HttpLoad.Start(scope.BaseUri, workers: 4, newConnectionPerRequest: true);
        await load.WaitForMoreSuccessesAsync(200);

        var (current, oldExit) = await HandOverAsync(old, "v2-this-build", thisBuild, output);
        await old.DisposeAsync();
        Assert.Equal(0, oldExit);
        await current.WaitForEventAsync(Events.SpeakingOlderVersion); // it greeted in v2, was refused, spoke v1
        await load.WaitForMoreSuccessesAsync(200);

        var (back, currentExit) = await HandOverAsync(current, "v3-protocol1", v1Build, output);
        await using var _ = back;
        await current.DisposeAsync();
        Assert.Equal(0, currentExit);
        await load.WaitForMoreSuccessesAsync(200);
        await load.StopAsync();

        output.WriteLine($"load: {load}");
        load.AssertNoFailures();
        Assert.Equal(3, load.ResponsesByBody.Count);
        using var client = new HttpClient();
        Assert.Equal(back.Pid.ToString(CultureInfo.InvariantCulture), await client.GetStringAsync(new Uri(scope.BaseUri, "/pid")));
    }

    // The build before "one fallback at a time": as the oldest of three generations it does not answer a Release by
    // closing the connection, so this build's middle process goes on after PredecessorLink.ReleaseAnswerTimeout; and this
    // build hands back to it.
    [Fact]
    public async Task LastLandedBuild_OldestOfThreeGenerations_ThenBack_UnderLoad_NoRequestFails()
    {
        using var scope = new TestScope();
        var thisBuild = scope.Config().With("ZeroDowntime__DrainTimeout", "00:01:00");
        var landedBuild = thisBuild with { SampleDirectory = landed.SampleDirectory };

        await using var oldest = await StartFirstAsync("v1-landed", landedBuild, output);
        using var client = new HttpClient { Timeout = TimeSpan.FromMinutes(1) };
        var draining = client.GetStringAsync(new Uri(scope.BaseUri, "/delay/10000")); // keeps the oldest draining
        await oldest.WaitForEventAsync(Events.FirstConnectionAccepted);
        await using var load = HttpLoad.Start(scope.BaseUri, workers: 4, newConnectionPerRequest: true);
        await load.WaitForMoreSuccessesAsync(200);

        // Not HandOverAsync, which waits for the old process to exit: the oldest must still drain when v3 greets v2.
        await using var middle = SampleApp.Start("v2-this-build", thisBuild, output);
        await middle.WaitForEventAsync(Events.Committed);
        await middle.WaitForEventAsync(Events.ServingHandoffSocket);
        await load.WaitForMoreSuccessesAsync(200);
        Assert.False(oldest.HasExited, "the oldest must still drain when the third greets the middle one");

        var (newest, middleExit) = await HandOverAsync(middle, "v3-this-build", thisBuild, output);
        await using var _ = newest;
        Assert.Equal(0, middleExit);
        Assert.Contains(middle.Entries, l => l.Is(Events.ToldPredecessorStopping) && l.Contains("no answer", StringComparison.Ordinal));
        await load.WaitForMoreSuccessesAsync(200);

        var (back, newestExit) = await HandOverAsync(newest, "v4-landed", landedBuild, output);
        await using var __ = back;
        Assert.Equal(0, newestExit);
        await load.WaitForMoreSuccessesAsync(200);
        await load.StopAsync();

        output.WriteLine($"load: {load}");
        load.AssertNoFailures();
        Assert.Contains("pid", await draining, StringComparison.Ordinal);
        Assert.Equal(0, await oldest.WaitForExitAsync());
        Assert.Equal(back.Pid.ToString(CultureInfo.InvariantCulture), await client.GetStringAsync(new Uri(scope.BaseUri, "/pid")));
    }

    // Probation (issue 20) extends protocol v2 behind a feature flag in the Hello and the Welcome: with a build that has
    // none, this build asks for probation and simply gets none, either way, and nothing else changes.
    [Fact]
    public async Task LastLandedBuild_AndThisBuildAskingForProbation_HandOverBothWaysWithoutProbation_NoRequestFails()
    {
        using var scope = new TestScope();
        var thisBuild = scope.Config().With("ZeroDowntime__Probation__Duration", "00:05:00");
        var landedBuild = scope.Config() with { SampleDirectory = landed.SampleDirectory };

        var old = await StartFirstAsync("v1-landed", landedBuild, output);
        await using var load = HttpLoad.Start(scope.BaseUri, workers: 4, newConnectionPerRequest: true);
        await load.WaitForMoreSuccessesAsync(200);

        // The earlier build ignores the Hello's extension and answers the plain v2 Welcome: no probation, and it exits
        // after its drain as before (HandOverAsync waits for that exit, far within the 5 min asked for).
        var (current, oldExit) = await HandOverAsync(old, "v2-this-build", thisBuild, output);
        await old.DisposeAsync();
        Assert.Equal(0, oldExit);
        await current.WaitForEventAsync(Events.ProbationNotAgreed);
        Assert.DoesNotContain(current.Entries, l => l.Is(Events.ProbationStarted));
        await load.WaitForMoreSuccessesAsync(200);

        // Back: the earlier build's Hello has no features, so this build's Welcome has none either (it would reject them).
        var (back, currentExit) = await HandOverAsync(current, "v3-landed", landedBuild, output);
        await using var _ = back;
        await current.DisposeAsync();
        Assert.Equal(0, currentExit);
        Assert.DoesNotContain(current.Entries, l => l.Is(Events.StandingBy));
        await load.WaitForMoreSuccessesAsync(200);
        await load.StopAsync();

        output.WriteLine($"load: {load}");
        load.AssertNoFailures();
        using var client = new HttpClient();
        Assert.Equal(back.Pid.ToString(CultureInfo.InvariantCulture), await client.GetStringAsync(new Uri(scope.BaseUri, "/pid")));
    }
}
