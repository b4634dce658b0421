using System.Globalization;
using System.Text.Json;
using Xunit.Abstractions;
using ZeroDowntime.Hosting.FunctionalTests.Infrastructure;
using ZeroDowntime.Hosting.Tests.Infrastructure;
using static ZeroDowntime.Hosting.FunctionalTests.Infrastructure.HandoffSteps;

namespace ZeroDowntime.Hosting.FunctionalTests;

/// <summary>
/// Issue 20, the <c>zerodowntime</c> tool against the real sample of this build with probation on
/// (<c>ZeroDowntime:Probation:Duration</c>): <c>upgrade --wait-probation</c> reports the start of the probation and
/// how it ended (exit 0 when the window passes, 9 when it is rolled back), <c>status</c> shows the generation on
/// probation, and <c>rollback</c> hands back to it (exit 0, the switch in ms), under load with no failed request.
/// </summary>
public sealed class ToolProbationTests(ITestOutputHelper output)
{
    private static readonly TimeSpan ToolWait = TimeSpan.FromSeconds(120);

    [Fact]
    public async Task UpgradeWaitProbation_ThenRollback_StatusShowsIt_OldServesAgain_UpgradeExitsNine()
    {
        using var scope = new TestScope();
        var config = scope.Config().With("ZeroDowntime__Probation__Duration", "00:02:00");
        await using var old = await StartFirstAsync("v1", config, output);
        int successor = 0;
        try
        {
            await using var load = HttpLoad.Start(scope.BaseUri, workers: 4, newConnectionPerRequest: true);
            await load.WaitForMoreSuccessesAsync(100);
            var upgrade = ZeroDowntimeTool.RunAsync(output, ToolWait, "upgrade", "--socket", scope.SocketPath, "--wait-probation", "--json");
            await Task.WhenAny(old.WaitForEventAsync(Events.StandingBy), upgrade);
            if (upgrade.IsCompleted)
            {
                var early = await upgrade;
                Assert.Fail($"upgrade --wait-probation exited {early.ExitCode} before the old process stood by: {early.Stdout}{early.Stderr}");
            }

            await load.WaitForMoreSuccessesAsync(100);

            var status = await ZeroDowntimeTool.RunAsync(output, ToolWait, "status", "--socket", scope.SocketPath, "--json");
            Assert.True(status.ExitCode == 0, status.Stdout + status.Stderr);
            successor = status.Json.GetProperty("pid").GetInt32();
            Assert.NotEqual(old.Pid, successor);
            var probation = status.Json.GetProperty("probation");
            Assert.Equal("on-probation", probation.GetProperty("state").GetString());
            Assert.Equal(old.Pid, probation.GetProperty("peerPid").GetInt32());
            Assert.InRange(probation.GetProperty("remainingMs").GetInt64(), 1, 120_000);
            var text = await ZeroDowntimeTool.RunAsync(output, ToolWait, "status", "--socket", scope.SocketPath);
            Assert.Contains($"  probation: pid {old.Pid} stands by until ", text.Stdout, StringComparison.Ordinal);

            var rollback = await ZeroDowntimeTool.RunAsync(output, ToolWait, "rollback", "--socket", scope.SocketPath, "--note", "end-to-end", "--json");
            Assert.True(rollback.ExitCode == 0, rollback.Stdout + rollback.Stderr);
            Assert.Equal("rolled-back", rollback.Json.GetProperty("outcome").GetString());
            Assert.Equal(old.Pid, rollback.Json.GetProperty("servingPid").GetInt32());
            Assert.Equal(successor, rollback.Json.GetProperty("rolledBackPid").GetInt32());
            Assert.Contains("end-to-end", rollback.Json.GetProperty("reason").GetString(), StringComparison.Ordinal);
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"rollback: switch {rollback.Json.GetProperty("switchMilliseconds")} ms (request to HandedBack, on the new process's clock), {rollback.Json.GetProperty("totalMs")} ms in the tool, {rollback.Elapsed.TotalMilliseconds:0} ms wall time of the command"));

            var waited = await upgrade;
            Assert.True(waited.ExitCode == 9, $"upgrade --wait-probation exited {waited.ExitCode}: {waited.Stdout}{waited.Stderr}");
            Assert.Equal(successor, waited.Json.GetProperty("successorPid").GetInt32());
            var ended = waited.Json.GetProperty("probation");
            Assert.Equal("rolled-back", ended.GetProperty("outcome").GetString());
            Assert.Equal("manual", ended.GetProperty("origin").GetString());

            // The window's end as the old process announced it; the new one computes its own from the same commit.
            var endsAt = DateTimeOffset.Parse(ended.GetProperty("endsAt").GetString()!, CultureInfo.InvariantCulture);
            var endsAtBySuccessor = DateTimeOffset.Parse(probation.GetProperty("endsAt").GetString()!, CultureInfo.InvariantCulture);
            Assert.InRange((endsAt - endsAtBySuccessor).Duration(), TimeSpan.Zero, TimeSpan.FromSeconds(1));

            using (var client = new HttpClient())
            {
                Assert.Equal(old.Pid.ToString(CultureInfo.InvariantCulture), await client.GetStringAsync(new Uri(scope.BaseUri, "/pid")));
            }

            await load.WaitForMoreSuccessesAsync(100);
            await load.StopAsync();
            output.WriteLine($"load: {load}");
            load.AssertNoFailures();

            var after = await ZeroDowntimeTool.RunAsync(output, ToolWait, "status", "--socket", scope.SocketPath, "--json");
            Assert.True(after.ExitCode == 0, after.Stdout + after.Stderr);
            Assert.Equal(old.Pid, after.Json.GetProperty("pid").GetInt32());
            var second = await ZeroDowntimeTool.RunAsync(output, ToolWait, "rollback", "--socket", scope.SocketPath);
            Assert.Equal(4, second.ExitCode); // nothing on probation any more
        }
        finally
        {
            await AdoptedProcess.StopIfAliveAsync(successor, output);
        }
    }

    [Fact]
    public async Task UpgradeWaitProbation_WindowEndsWithoutRollback_ExitsZero_OldExitsZero()
    {
        using var scope = new TestScope();
        var config = scope.Config().With("ZeroDowntime__Probation__Duration", "00:00:03");
        await using var old = await StartFirstAsync("v1", config, output);
        int successor = 0;
        try
        {
            var upgrade = await ZeroDowntimeTool.RunAsync(output, ToolWait, "upgrade", "--socket", scope.SocketPath, "--wait-probation");
            Assert.True(upgrade.ExitCode == 0, $"upgrade --wait-probation exited {upgrade.ExitCode}: {upgrade.Stdout}{upgrade.Stderr}");
            var lines = upgrade.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.StartsWith("Upgraded: pid ", lines[0], StringComparison.Ordinal);
            successor = int.Parse(lines[0].Split(' ')[2], CultureInfo.InvariantCulture);
            Assert.StartsWith("on probation until ", lines[1], StringComparison.Ordinal);
            Assert.EndsWith($"(pid {old.Pid} stands by)", lines[1], StringComparison.Ordinal);
            Assert.StartsWith("probation passed: ", lines[2], StringComparison.Ordinal);
            Assert.Equal(0, await old.WaitForExitAsync(TimeSpan.FromSeconds(60)));

            var status = await ZeroDowntimeTool.RunAsync(output, ToolWait, "status", "--socket", scope.SocketPath, "--json");
            Assert.Equal(successor, status.Json.GetProperty("pid").GetInt32());
            Assert.Equal(JsonValueKind.Null, status.Json.GetProperty("probation").ValueKind);
        }
        finally
        {
            await AdoptedProcess.StopIfAliveAsync(successor, output);
        }
    }
}
