using System.Globalization;
using System.Text.RegularExpressions;
using Xunit.Abstractions;
using ZeroDowntime.Hosting.FunctionalTests.Infrastructure;
using ZeroDowntime.Hosting.Tests.Infrastructure;
using static ZeroDowntime.Hosting.FunctionalTests.Infrastructure.Handoff;

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

    [GeneratedRegex(@"successor pid (\d+)")]
    private static partial Regex SuccessorPid();
}
