using Xunit.Abstractions;
using ZeroDowntime.Hosting.FunctionalTests.Infrastructure;
using ZeroDowntime.Hosting.Tests.Infrastructure;

namespace ZeroDowntime.Hosting.FunctionalTests;

/// <summary>
/// Issue 20: <c>zerodowntime run</c> forwards SIGUSR1, the library's rollback signal, to the main process as it is.
/// SIGUSR1's default action ends a process, so a supervisor that did not handle it would die of it (exit 138).
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
}
