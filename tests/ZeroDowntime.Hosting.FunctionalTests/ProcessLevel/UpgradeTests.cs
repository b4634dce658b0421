using System.Globalization;
using System.Text.RegularExpressions;
using Xunit.Abstractions;
using ZeroDowntime.Hosting.FunctionalTests.Infrastructure;
using ZeroDowntime.Hosting.Tests.Infrastructure;
using static ZeroDowntime.Hosting.FunctionalTests.Infrastructure.HandoffSteps;

namespace ZeroDowntime.Hosting.FunctionalTests;

/// <summary>
/// The running service starts its successor itself (issue 10): on SIGHUP, one at a time, and a failed successor
/// leaves it serving. A successor started this way inherits the old process's stdout and stderr, so its lines arrive
/// in the first process's captured output; the test follows it by pid (<see cref="AdoptedProcess"/>).
/// </summary>
public sealed partial class UpgradeTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Sighup_ThreeUpgradesUnderAb_NoRequestFails_EachSuccessorIsNew()
    {
        using var scope = new TestScope();
        var config = scope.Config();
        await using var v1 = await StartFirstAsync("v1", config, output);
        var adopted = new List<AdoptedProcess>();
        try
        {
            await using var ab = LoadTool.Start("ab", "-r", "-c", "16", "-t", "120", "-n", "100000000", "-s", "30", new Uri(scope.BaseUri, "/").ToString());
            int current = v1.Pid;
            var pids = new List<int> { current };
            for (int upgrade = 1; upgrade <= 3; upgrade++)
            {
                Posix.Kill(current, Posix.SIGHUP);
                var committed = await v1.WaitForOutputEventAsync(Events.UpgradeCommitted, upgrade, TimeSpan.FromSeconds(60));
                int successor = int.Parse(SuccessorPid().Match(committed).Groups[1].Value, CultureInfo.InvariantCulture);
                output.WriteLine($"upgrade {upgrade}: pid {current} -> {successor}: {committed}");
                Assert.DoesNotContain(successor, pids);
                var old = current == v1.Pid ? null : adopted.Single(p => p.Pid == current);
                if (old is null)
                {
                    Assert.Equal(0, await v1.WaitForExitAsync(TimeSpan.FromSeconds(60)));
                }
                else
                {
                    await old.WaitForExitAsync(TimeSpan.FromSeconds(60));
                }

                adopted.Add(new AdoptedProcess(successor));
                pids.Add(successor);
                current = successor;
                await v1.WaitForOutputEventAsync(Events.ServingHandoffSocket, upgrade + 1, TimeSpan.FromSeconds(30));
            }

            Assert.False(ab.HasExited, $"ab stopped early:\n{ab.Output}");
            string text = await ab.InterruptAsync(TimeSpan.FromSeconds(30));
            output.WriteLine(text);
            var result = LoadTool.AbResult.Parse(text);
            Assert.True(result.Complete > 1000, $"ab completed only {result.Complete} requests");
            Assert.True(result.Failed == 0 && result.Non2xx == 0, $"ab: {result}");

            using var client = new HttpClient();
            Assert.Equal(current.ToString(CultureInfo.InvariantCulture), await client.GetStringAsync(new Uri(scope.BaseUri, "/pid")));
            Assert.Equal(4, pids.Distinct().Count());
        }
        finally
        {
            foreach (var process in adopted)
            {
                process.Dispose();
            }
        }
    }

    // One upgrade at a time: a second SIGHUP while a (slow) successor starts is logged and refused; a SIGHUP with
    // Upgrade:Signal=None is only logged; a successor that fails is logged with its exit code and reason, and the old
    // process goes on serving.
    // Found while running the suite under nohup: a process started with SIGHUP ignored never sees it (the runtime keeps
    // an inherited SIG_IGN), so "kill -HUP" upgraded nothing and nothing said why. It is now said at start.
    [Fact]
    public async Task StartedUnderNohup_UpgradeSignalIgnored_SaysSoAtStart_ServesOnAfterSighup()
    {
        using var scope = new TestScope();
        var config = scope.Config() with { Launcher = ["nohup"] };
        await using var v1 = await StartFirstAsync("v1", config, output);
        var warning = v1.EventsOf(Events.UpgradeSignalIgnoredFromStart);
        Assert.Single(warning);
        Assert.Contains("SIGHUP", warning[0].Text, StringComparison.Ordinal);

        await using var load = HttpLoad.Start(scope.BaseUri, workers: 2, newConnectionPerRequest: true);
        await load.WaitForMoreSuccessesAsync(50);
        v1.Signal(Posix.SIGHUP);
        await load.WaitForMoreSuccessesAsync(200);
        await load.StopAsync();
        load.AssertNoFailures();
        Assert.False(v1.HasExited);
        Assert.Empty(v1.EventsOf(Events.UpgradeStarted));

        // Started as usual, the same configuration says nothing.
        using var other = new TestScope();
        await using var plain = await StartFirstAsync("plain", other.Config(), output);
        Assert.Empty(plain.EventsOf(Events.UpgradeSignalIgnoredFromStart));
    }

    [Fact]
    public async Task SecondSighupWhileUpgrading_Refused_FailingSuccessor_LoggedWithExitCode_OldServes()
    {
        using var scope = new TestScope();
        string dll = Path.Combine(SampleApp.SampleDirectory, "WebApi.dll");

        // The successor is started by the configured command: the same build, told to fail after a 2 s warm-up.
        var config = scope.Config()
            .With("ZeroDowntime__Upgrade__Command", $"exec dotnet '{dll}' --urls http://127.0.0.1:{scope.Port} --Sample:StartupDelayMs=2000 --Sample:FailStartup=true");
        await using var v1 = await StartFirstAsync("v1", config, output);
        await using var load = HttpLoad.Start(scope.BaseUri, workers: 4, newConnectionPerRequest: true);
        await load.WaitForMoreSuccessesAsync(100);

        v1.Signal(Posix.SIGHUP);
        var started = await v1.WaitForEventAsync(Events.UpgradeStarted);
        using var successor = new AdoptedProcess(int.Parse(SuccessorPid().Match(started).Groups[1].Value, CultureInfo.InvariantCulture));
        await v1.WaitForEventAsync(Events.HandoffRequested); // it connected and holds the handoff slot
        v1.Signal(Posix.SIGHUP);
        var refused = await v1.WaitForEventAsync(Events.UpgradeRefused);
        Assert.Contains("still running", refused, StringComparison.Ordinal);

        var failed = await v1.WaitForEventAsync(Events.UpgradeFailed, timeout: TimeSpan.FromSeconds(60));
        output.WriteLine(failed);
        Assert.Contains($"successor pid {successor.Pid} Failed (exit code 134)", failed, StringComparison.Ordinal);
        Assert.Contains("Start-up failed on purpose", failed, StringComparison.Ordinal);
        await successor.WaitForExitAsync(TimeSpan.FromSeconds(10));

        await load.WaitForMoreSuccessesAsync(200);
        await load.StopAsync();
        output.WriteLine($"load: {load}");
        load.AssertNoFailures();
        Assert.False(v1.HasExited);
        using var client = new HttpClient();
        Assert.Equal(v1.Pid.ToString(CultureInfo.InvariantCulture), await client.GetStringAsync(new Uri(scope.BaseUri, "/pid")));
    }

    /// <summary>
    /// Issue 18 item 4: a successor that never greets (<c>exec sleep 3600</c>) held the upgrade slot for good. The
    /// upgrade now ends at the running process's HandoffTimeout (from the launch): the child is stopped and reaped,
    /// <c>zerodowntime upgrade</c> gets the reason and exit 1 before its own --timeout, the SIGHUP path
    /// (Type=notify-reload) follows RELOADING=1 with READY=1, and the next upgrade, with a working command, commits; 0
    /// failed requests. The command is a script that the test rewrites between upgrades, as a deploy switches releases.
    /// HandoffTimeout is 8 s, not the issue's 3 s: the working successor must greet within it, and inside the suite
    /// (classes in parallel on 2 cores) a whole upgrade of the sample took up to 4.5 s (README, "Measured").
    /// </summary>
    [Fact]
    public async Task SuccessorThatNeverGreets_StoppedAtHandoffTimeout_UpgradeFailsWithTheReason_NextUpgradeCommits()
    {
        using var scope = new TestScope();
        await using var notify = new NotifySocketRecorder(Path.Combine(scope.Directory, "notify.sock"));
        string script = Path.Combine(scope.Directory, "successor.sh");
        File.WriteAllText(script, "exec sleep 3600\n");
        var config = scope.Config()
            .With("ZeroDowntime__HandoffTimeout", "00:00:08")
            .With("ZeroDowntime__Upgrade__Command", $". '{script}'")
            .With("NOTIFY_SOCKET", notify.Path);
        await using var v1 = await StartFirstAsync("v1", config, output);
        var successors = new List<int>();
        try
        {
            await using var load = HttpLoad.Start(scope.BaseUri, workers: 4, newConnectionPerRequest: true);
            await load.WaitForMoreSuccessesAsync(100);

            // zerodowntime upgrade, as reproduced in the issue: it used to exit 5 at its --timeout with the child alive.
            var failed = await ZeroDowntimeTool.RunAsync(output, TimeSpan.FromSeconds(60), "upgrade", "--socket", scope.SocketPath, "--timeout", "20s", "--json");
            int hung = int.Parse(SuccessorPid().Match((await v1.WaitForEventAsync(Events.UpgradeStarted)).Text).Groups[1].Value, CultureInfo.InvariantCulture);
            successors.Add(hung);
            Assert.True(failed.ExitCode == 1, $"exit code {failed.ExitCode}: {failed.Stdout}{failed.Stderr}");
            Assert.Equal(hung, failed.Json.GetProperty("successorPid").GetInt32());
            Assert.True(failed.Elapsed >= TimeSpan.FromSeconds(8), $"ended at {failed.Elapsed}, before the HandoffTimeout");
            Assert.Equal("failed", failed.Json.GetProperty("outcome").GetString());
            Assert.Equal($"the successor pid {hung} did not greet within HandoffTimeout (00:00:08); stopped it", failed.Json.GetProperty("reason").GetString());
            Assert.Equal(128 + Posix.SIGTERM, failed.Json.GetProperty("successorExitCode").GetInt32());
            Assert.Null(ProcessWatch.State(hung)); // gone and reaped: no zombie left
            Assert.Contains(v1.EventsOf(Events.UpgradeSuccessorNotGreeting), l => l.Text.Contains($"pid {hung} ", StringComparison.Ordinal));

            // The upgrade signal (systemctl reload under Type=notify-reload): the slot is free, so it starts a successor,
            // and READY=1 follows RELOADING=1 once the upgrade ended.
            v1.Signal(Posix.SIGHUP);
            var started = await v1.WaitForEventCountAsync(Events.UpgradeStarted, 2);
            int second = int.Parse(SuccessorPid().Match(started.Text).Groups[1].Value, CultureInfo.InvariantCulture);
            successors.Add(second);
            var ended = await v1.WaitForEventCountAsync(Events.UpgradeFailed, 2, TimeSpan.FromSeconds(30));
            Assert.Contains($"the successor pid {second} did not greet within HandoffTimeout", ended.Text, StringComparison.Ordinal);
            Assert.Null(ProcessWatch.State(second));
            await notify.FlushAsync();
            var datagrams = notify.Datagrams;
            foreach (string datagram in datagrams)
            {
                output.WriteLine("sd_notify: " + datagram.Replace('\n', ' '));
            }

            int reloading = datagrams.ToList().FindLastIndex(d => d.Contains("RELOADING=1", StringComparison.Ordinal));
            int ready = datagrams.ToList().FindLastIndex(d => d.Contains("READY=1", StringComparison.Ordinal));
            Assert.True(reloading >= 0 && ready > reloading, "READY=1 must follow RELOADING=1: " + string.Join(" | ", datagrams));
            Assert.Contains($"STATUS=Upgrade failed (the successor pid {second} did not greet", datagrams[ready], StringComparison.Ordinal);

            // A working successor: the next upgrade commits.
            string dll = Path.Combine(SampleApp.SampleDirectory, "WebApi.dll");
            File.WriteAllText(script, $"exec dotnet '{dll}' --urls http://127.0.0.1:{scope.Port}\n");
            var upgrade = await ZeroDowntimeTool.RunAsync(output, TimeSpan.FromSeconds(90), "upgrade", "--socket", scope.SocketPath, "--json");
            Assert.True(upgrade.ExitCode == 0, upgrade.Stdout + upgrade.Stderr);
            int good = upgrade.Json.GetProperty("successorPid").GetInt32();
            successors.Add(good);
            Assert.Equal(0, await v1.WaitForExitAsync(TimeSpan.FromSeconds(60)));

            await load.WaitForMoreSuccessesAsync(100);
            await load.StopAsync();
            output.WriteLine($"load: {load}");
            load.AssertNoFailures();
            using var client = new HttpClient();
            Assert.Equal(good.ToString(CultureInfo.InvariantCulture), await client.GetStringAsync(new Uri(scope.BaseUri, "/pid")));
        }
        finally
        {
            foreach (int pid in successors.Where(ProcessWatch.IsAlive))
            {
                using var process = new AdoptedProcess(pid);
                process.Signal(Posix.SIGTERM);
                await process.WaitForExitAsync(TimeSpan.FromSeconds(40));
            }
        }
    }

    [GeneratedRegex(@"successor pid (\d+)")]
    private static partial Regex SuccessorPid();

    // Item 4: SIGHUP (a closed terminal, or an operator's habit: HUP means reload elsewhere) must not kill the server.
    // It now means "upgrade" by default (UpgradeTests); where upgrades by signal are off, it is logged and ignored.
    [Fact]
    public async Task Sighup_UpgradeSignalNone_IsLoggedAndIgnored_ServerKeepsServing()
    {
        using var scope = new TestScope();
        var config = scope.Config().With("ZeroDowntime__Upgrade__Signal", "None");
        await using var v1 = await StartFirstAsync("v1", config, output);
        await using var load = HttpLoad.Start(scope.BaseUri, workers: 4, newConnectionPerRequest: true);
        await load.WaitForMoreSuccessesAsync(100);

        v1.Signal(Posix.SIGHUP);
        await v1.WaitForEventAsync(Events.HangupIgnored);
        v1.Signal(Posix.SIGHUP);
        await load.WaitForMoreSuccessesAsync(500);
        await load.StopAsync();

        output.WriteLine($"load: {load}");
        load.AssertNoFailures();
        Assert.False(v1.HasExited);
        Assert.Equal(2, v1.Entries.Count(l => l.Is(Events.HangupIgnored)));
    }
}
