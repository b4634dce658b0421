using System.Text.Json;
using Xunit.Abstractions;
using ZeroDowntime.Hosting.FunctionalTests.Infrastructure;
using ZeroDowntime.Hosting.Tests.Infrastructure;
using static ZeroDowntime.Hosting.FunctionalTests.Infrastructure.HandoffSteps;

namespace ZeroDowntime.Hosting.FunctionalTests;

/// <summary>
/// Issue 20: this build's <c>zerodowntime</c> tool against the sample built from the last landed commit, which knows
/// no probation (docs/probation-design.md 2.1): <c>status</c> works as before with <c>"probation": null</c>,
/// <c>rollback</c> exits 7 without sending the earlier build anything it does not know (it logs no protocol error),
/// and <c>upgrade --wait-probation</c> commits and exits 10 (no probation ran).
/// </summary>
public sealed class ToolAgainstEarlierBuildTests(ITestOutputHelper output, LastLandedBuild landed) : IClassFixture<LastLandedBuild>
{
    private static readonly TimeSpan ToolWait = TimeSpan.FromSeconds(90);

    [Fact]
    public async Task StatusRollbackAndWaitProbation_AgainstTheLastLandedBuild_SendNothingNew_Exit0Then7Then10()
    {
        using var scope = new TestScope();
        var config = scope.Config() with { SampleDirectory = landed.SampleDirectory };
        await using var old = await StartFirstAsync("v1-landed", config, output);
        int successor = 0;
        try
        {
            var status = await ZeroDowntimeTool.RunAsync(output, ToolWait, "status", "--socket", scope.SocketPath, "--json");
            Assert.True(status.ExitCode == 0, status.Stdout + status.Stderr);
            Assert.Equal(old.Pid, status.Json.GetProperty("pid").GetInt32());
            Assert.Equal("serving", status.Json.GetProperty("state").GetString());
            Assert.Equal(JsonValueKind.Null, status.Json.GetProperty("probation").ValueKind);

            var rollback = await ZeroDowntimeTool.RunAsync(output, ToolWait, "rollback", "--socket", scope.SocketPath, "--json");
            Assert.Equal(7, rollback.ExitCode);
            Assert.Equal("no-probation", rollback.Json.GetProperty("error").GetString());
            Assert.Contains($"pid {old.Pid}", rollback.Stderr, StringComparison.Ordinal);

            var upgrade = await ZeroDowntimeTool.RunAsync(output, ToolWait, "upgrade", "--socket", scope.SocketPath, "--wait-probation", "--json");
            Assert.True(upgrade.ExitCode == 10, $"upgrade --wait-probation exited {upgrade.ExitCode}: {upgrade.Stdout}{upgrade.Stderr}");
            successor = upgrade.Json.GetProperty("successorPid").GetInt32();
            Assert.Equal("committed", upgrade.Json.GetProperty("outcome").GetString());
            Assert.Equal("none", upgrade.Json.GetProperty("probation").GetProperty("outcome").GetString());
            Assert.Equal(0, await old.WaitForExitAsync(TimeSpan.FromSeconds(60)));

            // Every connection of the tool got what the earlier build knows: not one protocol error in its log.
            Assert.Equal(0, old.CountEvent(Events.HandoffProtocolError));
        }
        finally
        {
            await AdoptedProcess.StopIfAliveAsync(successor, output);
        }
    }
}
