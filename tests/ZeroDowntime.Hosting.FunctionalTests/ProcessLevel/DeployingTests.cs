using System.Globalization;
using Xunit.Abstractions;
using ZeroDowntime.Hosting.FunctionalTests.Infrastructure;
using ZeroDowntime.Hosting.Tests.Infrastructure;
using static ZeroDowntime.Hosting.FunctionalTests.Infrastructure.HandoffSteps;

namespace ZeroDowntime.Hosting.FunctionalTests;

/// <summary>
/// A new release started the ways the documentation shows (issue 24), with the sample deployed as release folders
/// whose appsettings.json names the port (<c>Urls</c>), as the sample's own does: the release must read its own
/// configuration and take over; and one started by its path from another directory, which reads no appsettings.json,
/// must not take over (the running process keeps the port) and must say why.
/// </summary>
public sealed class DeployingTests(ITestOutputHelper output)
{
    private static readonly TimeSpan UpgradeWait = TimeSpan.FromSeconds(90);

    /// <summary>The ways the docs start a new release (each names where it is written).</summary>
    public enum DocExample
    {
        /// <summary>README "Use it in your app" step 4, the package README, docs/deploying.md 2: <c>cd release-2 &amp;&amp; dotnet App.dll</c>.</summary>
        CdIntoReleaseThenStart,

        /// <summary>README step 4's alternative: <c>dotnet /srv/app/release-2/App.dll --contentRoot /srv/app/release-2</c> from anywhere.</summary>
        StartByPathWithContentRoot,

        /// <summary>
        /// docs/deploying.md 1 and the README's <c>Type=notify</c> unit: <c>WorkingDirectory=current</c>, <c>dotnet App.dll</c>,
        /// <c>ZeroDowntime__Upgrade__WorkingDirectory=current</c>, no <c>$PWD</c> (systemd sets none); switch the link,
        /// <c>zerodowntime upgrade --socket</c> (the unit's <c>ExecReload=</c>).
        /// </summary>
        CurrentLinkThenZerodowntimeUpgrade,

        /// <summary>The <c>Type=notify-reload</c> unit: the same, and <c>systemctl reload</c> sends SIGHUP.</summary>
        CurrentLinkThenSighup,

        /// <summary>
        /// docs/containers: <c>ENTRYPOINT ["zerodowntime", "run", "--", "dotnet", "WebApi.dll"]</c> in <c>WORKDIR current</c> with
        /// <c>ZeroDowntime__Upgrade__WorkingDirectory</c>; switch the link, <c>docker compose kill -s HUP</c> (to the supervisor).
        /// </summary>
        ContainerSupervisorThenSighup,
    }

    /// <summary>
    /// Issue 24's outage, reproduced as a user did it: v1 started in its release folder serves the port of its
    /// appsettings.json; v2 started as <c>dotnet /.../release-2/WebApi.dll</c> from the folder above takes that folder as
    /// its content root, finds no appsettings.json and binds another port (here the environment's <c>HTTP_PORTS</c>,
    /// which both share, instead of Kestrel's default 5000, which another program may hold). Before the fix it committed
    /// and closed v1's listeners: the port refused every connection. Now it stops before Ready with exit code 80 and one
    /// line naming both sets of endpoints, its content root and environment; v1 serves on (ab: 0 failed) and the same
    /// release started in its folder takes over.
    /// </summary>
    [Fact]
    public async Task SuccessorStartedByPathFromAnotherDirectory_KeepsNoEndpoint_DoesNotTakeOver_OldServesUnderAb_Exits80NamingTheCause()
    {
        using var scope = new TestScope();
        int fallback = TestScope.FreePort();
        var releases = new Releases(scope);
        string release1 = releases.Create("1", json => json["Urls"] = $"http://localhost:{scope.Port}");
        string release2 = releases.Create("2", json => json["Urls"] = $"http://localhost:{scope.Port}");
        var shared = new SampleConfig(scope.SocketPath, []).With("ASPNETCORE_HTTP_PORTS", fallback.ToString(CultureInfo.InvariantCulture));
        await using var v1 = await StartFirstAsync("v1", shared with { SampleDirectory = release1, RelativeEntryPoint = true }, output);
        Assert.Contains(v1.EventsOf(Events.StartupConfiguration), l => l["ContentRoot"] == release1);

        await using var ab = LoadTool.Start("ab", "-r", "-c", "16", "-t", "120", "-n", "100000000", "-s", "30", new Uri(scope.BaseUri, "/").ToString());
        await v1.WaitForEventAsync(Events.FirstConnectionAccepted);

        // As README showed it: by path, from another directory.
        await using var v2 = SampleApp.Start("v2", shared with { SampleDirectory = release2, WorkingDirectory = releases.Root }, output);
        Assert.Equal(ZeroDowntimeExitCodes.NoEndpointKept, await v2.WaitForExitAsync(TimeSpan.FromSeconds(60)));

        var refusal = Assert.Single(v2.EventsOf(Events.NoEndpointKept));
        Assert.Equal(v1.Pid.ToString(CultureInfo.InvariantCulture), refusal["ProcessId"]);
        Assert.Contains($"tcp:127.0.0.1:{scope.Port}", refusal["InheritedEndpoints"], StringComparison.Ordinal);
        Assert.Contains($"tcp:[::1]:{scope.Port}", refusal["InheritedEndpoints"], StringComparison.Ordinal);
        Assert.Contains($":{fallback}", refusal["ConfiguredEndpoints"], StringComparison.Ordinal);
        Assert.Equal(releases.Root, refusal["ContentRoot"]);
        Assert.Equal("Production", refusal["EnvironmentName"]);
        Assert.Contains(Path.Combine(releases.Root, "appsettings.json") + " (not found)", refusal["ConfigurationFiles"], StringComparison.Ordinal);
        Assert.Contains("--contentRoot", refusal.Text, StringComparison.Ordinal);
        Assert.Contains(v2.Lines, l => l.StartsWith("stderr: ZeroDowntime: not taking over from pid", StringComparison.Ordinal));
        Assert.Empty(v2.EventsOf(Events.SentReady));
        Assert.Empty(v2.EventsOf(Events.HandoffAbandoned)); // its own decision, said once, not "the predecessor abandoned"

        // The old process heard why, and still serves the port.
        var failed = await v1.WaitForEventAsync(Events.SuccessorFailed);
        Assert.Contains("none of the endpoints", failed.Text, StringComparison.Ordinal);
        Assert.Contains(releases.Root, failed.Text, StringComparison.Ordinal);
        Assert.False(v1.HasExited);
        Assert.Equal(v1.Pid, await GetPidAsync(scope));

        // Started as the README shows now, in its own folder, the same release takes over.
        var (v3, oldExit) = await HandOverAsync(v1, "v3", shared with { SampleDirectory = release2, RelativeEntryPoint = true }, output);
        await using var _ = v3;
        Assert.Equal(0, oldExit);
        Assert.Contains(v3.EventsOf(Events.StartupConfiguration), l => l["ContentRoot"] == release2 && l["ConfigurationFiles"]!.StartsWith(Path.Combine(release2, "appsettings.json") + ",", StringComparison.Ordinal));
        Assert.Equal(2, v3.EventsOf(Events.ListenerInherited).Count);
        Assert.Equal(v3.Pid, await GetPidAsync(scope));

        Assert.False(ab.HasExited, "ab stopped early: " + ab.Output);
        var result = LoadTool.AbResult.Parse(await ab.InterruptAsync(TimeSpan.FromSeconds(60)));
        output.WriteLine($"ab -r -c 16: {result.Complete} complete, {result.Failed} failed, {result.Non2xx} non-2xx (v2 refused, v3 took over)");
        Assert.True(result.Complete > 100, $"ab completed only {result.Complete} requests");
        Assert.True(result.Failed == 0 && result.Non2xx == 0, $"ab: {result}");
    }

    /// <summary>
    /// Each doc example that starts a new release, done exactly as written: the new process reads the new release's
    /// appsettings.json (its content root is the release folder, resolved), keeps the port and takes over under load,
    /// and the old one exits 0. Each release marks its appsettings.json (<c>Sample:StartupDelayMs</c>), and the new
    /// process must log that warm-up, so a process that read another configuration fails the test.
    /// </summary>
    [Theory]
    [InlineData(DocExample.CdIntoReleaseThenStart)]
    [InlineData(DocExample.StartByPathWithContentRoot)]
    [InlineData(DocExample.CurrentLinkThenZerodowntimeUpgrade)]
    [InlineData(DocExample.CurrentLinkThenSighup)]
    [InlineData(DocExample.ContainerSupervisorThenSighup)]
    public async Task DocExample_NewReleaseReadsItsOwnConfiguration_TakesOverUnderLoad(DocExample example)
    {
        using var scope = new TestScope();
        var releases = new Releases(scope);
        string release1 = releases.Create("1", json => json["Urls"] = $"http://127.0.0.1:{scope.Port}");
        string release2 = releases.Create("2", json =>
        {
            json["Urls"] = $"http://127.0.0.1:{scope.Port}";
            json["Sample"]!["StartupDelayMs"] = 24;
        });
        var config = new SampleConfig(scope.SocketPath, []);
        bool byLink = example is not (DocExample.CdIntoReleaseThenStart or DocExample.StartByPathWithContentRoot);
        if (byLink)
        {
            // As systemd and container runtimes start it: in current, by a relative path, with no $PWD naming it.
            releases.Switch(release1);
            config = (config with { SampleDirectory = releases.Current, RelativeEntryPoint = true })
                .With("PWD", "")
                .With("ZeroDowntime__Upgrade__WorkingDirectory", releases.Current);
            if (example == DocExample.ContainerSupervisorThenSighup)
            {
                config = config with { Launcher = [ZeroDowntimeTool.DotnetPath(), ZeroDowntimeTool.DllPath, "run", "--"] };
            }
        }
        else
        {
            config = config with { SampleDirectory = release1, RelativeEntryPoint = true };
        }

        await using var v1 = await StartFirstAsync("v1", config, output);
        int firstPid = await GetPidAsync(scope);
        var pids = new List<int>();
        try
        {
            await using var load = HttpLoad.Start(scope.BaseUri, workers: 8, newConnectionPerRequest: true);
            await load.WaitForMoreSuccessesAsync(200);
            int successor;
            SampleApp? started = null;
            switch (example)
            {
                case DocExample.CdIntoReleaseThenStart:
                    started = SampleApp.Start("v2", new SampleConfig(scope.SocketPath, []) { SampleDirectory = release2, RelativeEntryPoint = true }, output);
                    successor = started.Pid;
                    break;
                case DocExample.StartByPathWithContentRoot:
                    started = SampleApp.Start("v2", new SampleConfig(scope.SocketPath, ["--contentRoot", release2]) { SampleDirectory = release2, WorkingDirectory = scope.Directory }, output);
                    successor = started.Pid;
                    break;
                case DocExample.CurrentLinkThenZerodowntimeUpgrade:
                    releases.Switch(release2);
                    var upgrade = await ZeroDowntimeTool.RunAsync(output, UpgradeWait, "upgrade", "--socket", scope.SocketPath, "--json");
                    Assert.True(upgrade.ExitCode == 0, $"upgrade exited {upgrade.ExitCode}: {upgrade.Stdout}{upgrade.Stderr}");
                    successor = upgrade.Json.GetProperty("successorPid").GetInt32();
                    break;
                default:
                    releases.Switch(release2);
                    v1.Signal(Posix.SIGHUP); // to the app, or to the supervisor, which forwards it
                    successor = (int)(await v1.WaitForOutputEventAsync(Events.UpgradeCommitted, 1, UpgradeWait)).Number("ProcessId");
                    break;
            }

            pids.Add(successor);
            await using var _ = started;
            var source = started ?? v1;
            var committed = await source.WaitForOutputEventAsync(Events.Committed, 1, UpgradeWait);
            var configuration = await source.WaitForOutputEventAsync(Events.StartupConfiguration, started is null ? 2 : 1, UpgradeWait);
            output.WriteLine($"{example}: successor pid {successor}: {configuration.Text}");
            string expectedRoot = example == DocExample.StartByPathWithContentRoot ? release2 : Path.GetFullPath(release2);
            Assert.Equal(expectedRoot, configuration["ContentRoot"]);
            Assert.StartsWith(Path.Combine(expectedRoot, "appsettings.json") + ",", configuration["ConfigurationFiles"], StringComparison.Ordinal);
            await source.WaitForOutputLineAsync(l => l.Contains("Warming up for 24 ms", StringComparison.Ordinal), "release 2's warm-up line");
            Assert.Empty(source.EventsOf(Events.NoEndpointKept));
            Assert.Empty(source.EventsOf(Events.InheritedListenerUnused));
            Assert.NotNull(committed);

            // The old process drains and exits 0; then only the new release answers.
            using (var old = new AdoptedProcess(firstPid))
            {
                await old.WaitForExitAsync(TimeSpan.FromSeconds(60));
            }

            if (example is not DocExample.ContainerSupervisorThenSighup)
            {
                Assert.Equal(0, await v1.WaitForExitAsync(TimeSpan.FromSeconds(60)));
            }
            else
            {
                await v1.WaitForOutputLineAsync(l => l.Contains($"pid {firstPid}", StringComparison.Ordinal) && l.Contains("exited with code 0", StringComparison.Ordinal), $"the supervisor reaping pid {firstPid} with code 0");
            }

            Assert.Equal(successor, await GetPidAsync(scope));
            await load.WaitForMoreSuccessesAsync(200);
            await load.StopAsync();
            output.WriteLine($"{example}: load {load}");
            load.AssertNoFailures();
        }
        finally
        {
            foreach (int pid in pids.Where(p => ProcessWatch.IsAlive(p)))
            {
                using var process = new AdoptedProcess(pid);
                process.Signal(Posix.SIGTERM);
                await process.WaitForExitAsync(TimeSpan.FromSeconds(40));
            }
        }
    }

    private static async Task<int> GetPidAsync(TestScope scope)
    {
        using var client = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        return int.Parse(await client.GetStringAsync(new Uri(scope.BaseUri, "/pid")), CultureInfo.InvariantCulture);
    }
}
