using System.Globalization;
using Xunit.Abstractions;
using ZeroDowntime.Hosting.FunctionalTests.Infrastructure;
using ZeroDowntime.Hosting.Tests.Infrastructure;

namespace ZeroDowntime.Hosting.FunctionalTests;

/// <summary>
/// Issue 20 under <c>zerodowntime run</c>: it forwards SIGUSR1, the library's rollback signal, to the main process as
/// it is (SIGUSR1's default action ends a process, so a supervisor that did not handle it would die of it, exit 138),
/// and after a rollback it follows the old process again, which is the owner for <c>run</c> as for systemd.
/// </summary>
public sealed class SupervisorRollbackSignalTests(ITestOutputHelper output)
{
    private const int SIGUSR1 = 10;

    /// <summary>The app: says when it runs (a file), exits 3 on SIGUSR1.</summary>
    private const string Script = """
        trap 'echo "app: SIGUSR1" >&2; exit 3' USR1
        touch "$1"
        while :; do sleep 0.05; done
        """;

    [Fact]
    public async Task Run_Sigusr1_IsForwardedToTheMainProcess_SupervisorSurvivesIt()
    {
        using var scope = new TestScope();
        string running = Path.Combine(scope.Directory, "running");
        await using var run = ZeroDowntimeTool.Start(output, "dotnet", [ZeroDowntimeTool.DllPath, "run", "--", "/bin/sh", "-c", Script, "app", running]);
        await Task.WhenAny(Until.TrueAsync(() => File.Exists(running), "the app's start", TimeSpan.FromSeconds(60)), run.Exited);
        Assert.True(File.Exists(running), "the app never started (the tool's output says why)");

        Posix.Kill(run.Pid, SIGUSR1);
        var result = await run.WaitForExitAsync(TimeSpan.FromSeconds(30));

        Assert.Contains("app: SIGUSR1\n", result.Stderr, StringComparison.Ordinal);
        Assert.Matches(@"zerodowntime run\[\d+\]: signal 10 forwarded to pid \d+\n", result.Stderr);
        Assert.Equal(3, result.ExitCode);
    }

    /// <summary>
    /// The sample under <c>run</c>: SIGHUP to the supervisor upgrades it (the new release on probation), SIGUSR1 to the
    /// supervisor rolls it back. The supervisor follows MAINPID= to the new process and back to the old one; the
    /// rolled-back one exits only after the old one said MAINPID=, so the supervisor never sees its main process die;
    /// no request fails, and a SIGTERM then stops the old process and the supervisor with 0.
    /// </summary>
    [Fact]
    public async Task Run_UpgradeThenRollback_FollowsTheOldProcessAgain_RolledBackOneGone_NoRequestFails()
    {
        using var scope = new TestScope();
        var config = (scope.Config() with { Launcher = [ZeroDowntimeTool.DotnetPath(), ZeroDowntimeTool.DllPath, "run", "--"] })
            .With("ZeroDowntime__Probation__Duration", "00:02:00");
        await using var run = SampleApp.Start("run", config, output);
        await run.WaitForEventAsync(Events.ServingHandoffSocket);
        int old = await SupervisorTests.PidAsync(scope);
        Assert.NotEqual(run.Pid, old);
        await using var load = HttpLoad.Start(scope.BaseUri, workers: 4, newConnectionPerRequest: true);
        await load.WaitForMoreSuccessesAsync(100);

        Posix.Kill(run.Pid, Posix.SIGHUP);
        string toNew = await SupervisorTests.WaitForSupervisorLineAsync(run, "main pid is now ", 1);
        output.WriteLine(toNew);
        var followed = System.Text.RegularExpressions.Regex.Match(toNew, @"main pid is now (\d+) \(was (\d+)\)");
        Assert.Equal(old.ToString(CultureInfo.InvariantCulture), followed.Groups[2].Value);
        int successor = int.Parse(followed.Groups[1].Value, CultureInfo.InvariantCulture);
        await run.WaitForEventAsync(Events.StandingBy); // the old process drained and stands by
        Assert.Equal(successor, await SupervisorTests.PidAsync(scope));
        await load.WaitForMoreSuccessesAsync(100);

        Posix.Kill(run.Pid, SIGUSR1);
        string back = await SupervisorTests.WaitForSupervisorLineAsync(run, "main pid is now ", 2);
        output.WriteLine(back);
        Assert.Contains($"main pid is now {old} (was {successor})", back, StringComparison.Ordinal);
        // The rolled-back process is the old one's child (it was started by the upgrade), so the old one reaps it, not
        // the supervisor: it is gone, and the supervisor never took its exit for the main process's.
        await run.WaitForEventAsync(Events.HandedBack);
        await Until.TrueAsync(() => !ProcessWatch.IsAlive(successor), $"the rolled-back pid {successor} gone", TimeSpan.FromSeconds(60));
        Assert.DoesNotContain(run.Lines, l => l.Contains($"main pid {successor} exited", StringComparison.Ordinal));
        Assert.Equal(old, await SupervisorTests.PidAsync(scope));
        await load.WaitForMoreSuccessesAsync(100);
        await load.StopAsync();
        output.WriteLine($"load: {load}");
        load.AssertNoFailures();

        Posix.Kill(run.Pid, Posix.SIGTERM);
        Assert.Equal(0, await run.WaitForExitAsync(TimeSpan.FromSeconds(60)));
    }
}
