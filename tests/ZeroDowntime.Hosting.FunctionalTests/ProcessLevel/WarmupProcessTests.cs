using System.Globalization;
using Xunit.Abstractions;
using ZeroDowntime.Hosting.FunctionalTests.Infrastructure;
using ZeroDowntime.Hosting.Tests.Infrastructure;

namespace ZeroDowntime.Hosting.FunctionalTests;

/// <summary>
/// The warm-up with the real sample (its appsettings.json warms <c>GET /</c>, <c>/pid</c> and <c>/health/live</c>, 32
/// rounds): a successor runs its endpoint's cold path on warm-up requests before Ready, never on a client's.
/// </summary>
public sealed class WarmupProcessTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Successor_WarmsUpBeforeReady_ItsFirstClientRequestDoesNotRunTheColdPath()
    {
        using var scope = new TestScope();
        await using var v1 = await HandoffSteps.StartFirstAsync("v1", scope.Config(), output);
        var (v2, oldExitCode) = await HandoffSteps.HandOverAsync(v1, "v2", scope.Config(), output);
        await using (v2)
        {
            Assert.Equal(0, oldExitCode);
            using var client = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
            string hello = await client.GetStringAsync(new Uri(scope.BaseUri, "/"));
            Assert.Contains(v2.Pid.ToString("D7", CultureInfo.InvariantCulture), hello, StringComparison.Ordinal);

            // 32 rounds over HTTP/1.1, all before this request. (The sample's cleartext endpoint has Kestrel's default
            // Http1AndHttp2, which without TLS is HTTP/1.1 only: the warm-up logs that HTTP/2 was skipped.)
            string stats = (await client.GetStringAsync(new Uri(scope.BaseUri, "/stats/root"))).Trim();
            output.WriteLine($"v2 /stats/root: {stats}");
            Assert.Equal("calls=1 warmup=32 first=warmup", stats);

            // The order in v2's log: warm-up done, then Ready, then the commit; and the warm-up is a start-up phase.
            var lines = v2.Entries.ToList();
            int finished = lines.FindIndex(l => l.Is(Events.WarmupFinished));
            int ready = lines.FindIndex(l => l.Is(Events.SentReady));
            Assert.InRange(finished, 0, ready - 1);
            Assert.DoesNotContain(lines, l => l.Is(Events.WarmupRequestFailed));
            Assert.Contains(lines, l => l.Is(Events.StartupTimeline) && l.Text.Contains("WarmedUp", StringComparison.Ordinal));
            output.WriteLine(string.Join("\n", lines.Where(l => l.Is(Events.WarmupRequestSummary) || l.Is(Events.StartupTimeline)).Select(l => l.Text)));
        }
    }

    /// <summary>
    /// The JIT profile (on by default) across three generations: v1 finds none and records one, which the runtime
    /// writes next to the handoff socket when v1 exits; v2 started while v1 served, so it found none either; v3, started
    /// after v1 exited, plays exactly the file v1 wrote.
    /// </summary>
    [Fact]
    public async Task JitProfile_EachProcessRecordsOne_TheNextToStartPlaysTheLastWritten()
    {
        using var scope = new TestScope();
        string profile = scope.SocketPath + ".jitprofile";
        await using var v1 = await HandoffSteps.StartFirstAsync("v1", scope.Config(), output);
        Assert.Contains(v1.Entries, l => l.Is(Events.JitProfileRecording) && l.Text.Contains(profile, StringComparison.Ordinal));
        Assert.False(File.Exists(profile), "the runtime writes the profile when the process exits");

        var (v2, oldExitCode) = await HandoffSteps.HandOverAsync(v1, "v2", scope.Config(), output);
        await using (v2)
        {
            Assert.Equal(0, oldExitCode);
            Assert.Contains(v2.Entries, l => l.Is(Events.JitProfileRecording));
            long written = new FileInfo(profile).Length;
            output.WriteLine($"v1 wrote {written} bytes to {profile}");
            Assert.True(written > 1000, $"v1's profile has {written} bytes");

            var (v3, v2ExitCode) = await HandoffSteps.HandOverAsync(v2, "v3", scope.Config(), output);
            await using (v3)
            {
                Assert.Equal(0, v2ExitCode);
                var played = Assert.Single(v3.Entries, l => l.Is(Events.JitProfilePlayed));
                Assert.Contains($"{profile}: {written.ToString(CultureInfo.InvariantCulture)} bytes", played.Text, StringComparison.Ordinal);
            }
        }
    }

    /// <summary>
    /// The readiness gate with the real tool: a release whose check tagged <c>zerodowntime-ready</c> stays Unhealthy
    /// (Sample:UnreadyCheck) never says Ready; shortly before HandoffTimeout (5 s here) it gives up, and the running
    /// process's log and <c>zerodowntime upgrade</c>'s result name the check. The old process serves on.
    /// </summary>
    [Fact]
    public async Task Upgrade_SuccessorCheckStaysUnhealthy_UpgradeFailsNamingTheCheck_OldServesOn()
    {
        using var scope = new TestScope();
        var releases = new Releases(scope);
        string first = releases.Create("1", json => json["ZeroDowntime"]!["HandoffTimeout"] = "00:00:05");
        string unready = releases.Create("2-unready", json =>
        {
            json["ZeroDowntime"]!["HandoffTimeout"] = "00:00:05";
            json["Sample"]!["UnreadyCheck"] = true;
        });
        releases.Switch(first);
        var config = scope.Config() with { SampleDirectory = releases.Current, RelativeEntryPoint = true };
        await using var v1 = await HandoffSteps.StartFirstAsync("v1", config, output);

        releases.Switch(unready);
        var upgrade = await ZeroDowntimeTool.RunAsync(output, TimeSpan.FromSeconds(45), "upgrade", "--socket", scope.SocketPath);
        Assert.Equal(1, upgrade.ExitCode);
        Assert.Contains("readiness check 'sample-dependency' is Unhealthy", upgrade.Stderr, StringComparison.Ordinal);
        var failed = await v1.WaitForEventAsync(Events.SuccessorFailed);
        Assert.Contains("'sample-dependency' is Unhealthy: the sample's dependency is down", failed.Text, StringComparison.Ordinal);
        Assert.Contains(v1.Entries, l => l.Is(Events.NotReadyForHandoff) && l.Text.Contains("sample-dependency", StringComparison.Ordinal));
        Assert.False(v1.HasExited);
        using var client = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        Assert.Equal(v1.Pid.ToString(CultureInfo.InvariantCulture), await client.GetStringAsync(new Uri(scope.BaseUri, "/pid")));
    }
}
