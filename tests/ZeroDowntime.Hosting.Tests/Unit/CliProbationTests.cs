using System.Text.Json;
using ZeroDowntime.Cli;
using ZeroDowntime.Hosting.Protocol;
using ZeroDowntime.Hosting.Tests.Infrastructure;

namespace ZeroDowntime.Hosting.Tests.Unit;

/// <summary>
/// Issue 20, the <c>zerodowntime</c> tool's verbs against a server played by the test over a real Unix socket
/// (<see cref="FakeControlServer"/>): <c>rollback</c> (exit 0 rolled back, 1 did not complete, 4 refused, 7 a build
/// without probation, which is sent nothing new), <c>upgrade --wait-probation</c> (0 passed, 9 rolled back, 10 no
/// probation ran to its end) and <c>status</c>'s probation line and field, text and JSON (docs/probation-design.md 8).
/// </summary>
public sealed class CliProbationTests : IDisposable
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(10);

    private readonly TestScope _scope = new();
    private readonly StringWriter _stdout = new();
    private readonly StringWriter _stderr = new();

    private static long EndsInFiveMinutes => DateTimeOffset.UtcNow.AddMinutes(5).ToUnixTimeMilliseconds();

    [Fact]
    public async Task Rollback_RolledBack_ExitsZeroAndSaysWhoServesAgain()
    {
        await using var server = RollbackServer(new RollbackResultMessage(RollbackOutcome.RolledBack, 3044, "zerodowntime rollback: bad deploy", 14));

        int exitCode = await RollbackAsync(json: false, note: "bad deploy");

        Assert.Equal(ExitCodes.Ok, exitCode);
        Assert.Equal("rolled back: pid 3044 serves again (pid 3077 drains and exits 81); switch 14 ms; reason: zerodowntime rollback: bad deploy\n", Out);
        Assert.Equal("", Err);
        Assert.Equal(new RollbackCommandMessage(HandoffProtocol.Version, "bad deploy"), server.Requests[^1]);
    }

    [Fact]
    public async Task Rollback_RolledBackJson_HasTheDesignsFields()
    {
        await using var server = RollbackServer(new RollbackResultMessage(RollbackOutcome.RolledBack, 3044, "zerodowntime rollback", 14));

        Assert.Equal(ExitCodes.Ok, await RollbackAsync(json: true));

        var json = JsonDocument.Parse(Out).RootElement;
        Assert.Equal(_scope.SocketPath, json.GetProperty("socket").GetString());
        Assert.Equal("rolled-back", json.GetProperty("outcome").GetString());
        Assert.Equal(0, json.GetProperty("exitCode").GetInt32());
        Assert.Equal(3044, json.GetProperty("servingPid").GetInt32());
        Assert.Equal(3077, json.GetProperty("rolledBackPid").GetInt32());
        Assert.Equal("zerodowntime rollback", json.GetProperty("reason").GetString());
        Assert.Equal(14, json.GetProperty("switchMilliseconds").GetInt64());
        Assert.Equal("", Err);
    }

    [Fact]
    public async Task Rollback_Refused_ExitsFourWithTheReason()
    {
        await using var server = RollbackServer(new RollbackResultMessage(RollbackOutcome.Refused, 3077, "no generation on probation", -1));

        Assert.Equal(ExitCodes.Refused, await RollbackAsync(json: false));

        Assert.Equal("zerodowntime: rollback refused by pid 3077: no generation on probation\n", Err);
        Assert.Equal("", Out);
    }

    [Fact]
    public async Task Rollback_Failed_ExitsOneAndSaysThereIsNoWayBack()
    {
        await using var server = RollbackServer(new RollbackResultMessage(RollbackOutcome.Failed, 3077, "pid 3044 did not answer within 5 s; it was released", -1));

        Assert.Equal(ExitCodes.RollbackIncomplete, await RollbackAsync(json: false));

        Assert.Equal("zerodowntime: rollback did not complete: pid 3044 did not answer within 5 s; it was released; pid 3077 serves on with no way back\n", Err);
    }

    [Fact]
    public async Task Rollback_FailedJson_HasNoRolledBackPidNorSwitch()
    {
        await using var server = RollbackServer(new RollbackResultMessage(RollbackOutcome.Failed, 3077, "pid 3044 exited", -1));

        Assert.Equal(1, await RollbackAsync(json: true));

        var json = JsonDocument.Parse(Out).RootElement;
        Assert.Equal("failed", json.GetProperty("outcome").GetString());
        Assert.Equal(1, json.GetProperty("exitCode").GetInt32());
        Assert.Equal(JsonValueKind.Null, json.GetProperty("rolledBackPid").ValueKind);
        Assert.Equal(JsonValueKind.Null, json.GetProperty("switchMilliseconds").ValueKind);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Rollback_EarlierBuild_ExitsSevenAndSendsItNoRollbackCommand(bool json)
    {
        await using var server = new FakeControlServer(_scope.SocketPath, (_, channel) =>
        {
            FakeControlServer.AnswerStatus(channel, probation: null);
            return Task.CompletedTask;
        });

        Assert.Equal(ExitCodes.Protocol, await RollbackAsync(json));

        Assert.All(server.Requests, request => Assert.IsType<StatusRequestMessage>(request));
        Assert.Single(server.Requests);
        Assert.Contains("runs a build without probation", Err, StringComparison.Ordinal);
        if (json)
        {
            var body = JsonDocument.Parse(Out).RootElement;
            Assert.Equal("no-probation", body.GetProperty("error").GetString());
            Assert.Equal(7, body.GetProperty("exitCode").GetInt32());
        }
    }

    [Fact]
    public async Task Rollback_NobodyServes_ExitsThree()
    {
        Assert.Equal(ExitCodes.NoServer, await RollbackAsync(json: false));
    }

    [Fact]
    public async Task UpgradeWaitProbation_Passed_ExitsZeroAfterPrintingTheCommitTheStartAndTheEnd()
    {
        await using var server = UpgradeServer(
            new ProbationUpdateMessage(ProbationProgress.Started, EndsInFiveMinutes, RollbackOrigin.None, ""),
            new ProbationUpdateMessage(ProbationProgress.Passed, 0, RollbackOrigin.None, "the probation window of 00:05:00 ended"));

        Assert.Equal(ExitCodes.Ok, await UpgradeAsync(json: false));

        var lines = Out.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(3, lines.Length);
        Assert.StartsWith("Upgraded: pid 3100 serves (took over from pid 3077, generation 3)", lines[0], StringComparison.Ordinal);
        Assert.Matches(@"^on probation until 20\d\d-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \(pid 3077 stands by\)$", lines[1]);
        Assert.Equal("probation passed: the probation window of 00:05:00 ended; pid 3100 serves, pid 3077 exits", lines[2]);
    }

    [Fact]
    public async Task UpgradeWaitProbation_RolledBack_ExitsNineAndNamesTheReason()
    {
        const string Reason = "5xx ratio 0.250 (25 of 100 responses in the last 00:00:30) is above MaxErrorRatio 0.05";
        long ends = EndsInFiveMinutes;
        await using var server = UpgradeServer(
            new ProbationUpdateMessage(ProbationProgress.Started, ends, RollbackOrigin.None, ""),
            new ProbationUpdateMessage(ProbationProgress.RolledBack, ends, RollbackOrigin.ErrorRatio, Reason));

        Assert.Equal(ExitCodes.RolledBackDuringProbation, await UpgradeAsync(json: false));

        Assert.Equal($"zerodowntime: rolled back during probation (error-ratio): {Reason}; pid 3077 serves again\n", Err.Split("\n", 2)[1]);
    }

    [Fact]
    public async Task UpgradeWaitProbation_RolledBackJson_AddsTheProbationObject()
    {
        long ends = EndsInFiveMinutes;
        await using var server = UpgradeServer(
            new ProbationUpdateMessage(ProbationProgress.Started, ends, RollbackOrigin.None, ""),
            new ProbationUpdateMessage(ProbationProgress.RolledBack, ends, RollbackOrigin.HealthCheck, "health check 'db'"));

        Assert.Equal(9, await UpgradeAsync(json: true));

        var json = JsonDocument.Parse(Out).RootElement;
        Assert.Equal("committed", json.GetProperty("outcome").GetString());
        Assert.Equal(9, json.GetProperty("exitCode").GetInt32());
        var probation = json.GetProperty("probation");
        Assert.Equal("rolled-back", probation.GetProperty("outcome").GetString());
        Assert.Equal("health check 'db'", probation.GetProperty("reason").GetString());
        Assert.Equal("health-check", probation.GetProperty("origin").GetString());
        Assert.Equal(ends, DateTimeOffset.Parse(probation.GetProperty("endsAt").GetString()!, System.Globalization.CultureInfo.InvariantCulture).ToUnixTimeMilliseconds());
    }

    [Fact]
    public async Task UpgradeWaitProbation_None_ExitsTen()
    {
        await using var server = UpgradeServer(new ProbationUpdateMessage(ProbationProgress.None, 0, RollbackOrigin.None, "the new release asks for no probation"));

        Assert.Equal(ExitCodes.NoProbationCompleted, await UpgradeAsync(json: false));

        Assert.StartsWith("Upgraded: pid 3100 serves", Out, StringComparison.Ordinal);
        Assert.EndsWith("zerodowntime: no probation: the new release asks for no probation; pid 3100 serves with no way back\n", Err, StringComparison.Ordinal);
    }

    [Fact]
    public async Task UpgradeWaitProbation_EarlierBuild_ExitsTenAndJsonSaysNone()
    {
        await using var server = UpgradeServer();

        Assert.Equal(10, await UpgradeAsync(json: true));

        var probation = JsonDocument.Parse(Out).RootElement.GetProperty("probation");
        Assert.Equal("none", probation.GetProperty("outcome").GetString());
        Assert.Contains("has no probation", probation.GetProperty("reason").GetString(), StringComparison.Ordinal);
        Assert.Equal(JsonValueKind.Null, probation.GetProperty("origin").ValueKind);
        Assert.Equal(JsonValueKind.Null, probation.GetProperty("endsAt").ValueKind);
    }

    [Fact]
    public async Task UpgradeWaitProbation_NoUpdateAfterTheCommit_ExitsFiveSayingItCommitted()
    {
        // A server that neither sends the probation's start nor closes: bounded by ProbationStartTimeout (5 s).
        var never = new TaskCompletionSource();
        await using var server = new FakeControlServer(_scope.SocketPath, async (request, channel) =>
        {
            if (request is UpgradeRequestMessage)
            {
                channel.Send(new UpgradeResultMessage(UpgradeOutcome.Committed, 3100, -1, "", 900, 950));
                await never.Task;
            }
            else
            {
                FakeControlServer.AnswerStatus(channel, new ProbationStatusMessage(ProbationState.None, 0, 0, ""));
            }
        });

        Assert.Equal(ExitCodes.TimedOut, await UpgradeAsync(json: false));

        Assert.StartsWith("Upgraded: pid 3100 serves", Out, StringComparison.Ordinal);
        Assert.Contains("zerodowntime: Successor pid 3100 committed, but the end of its probation was not reported in time", Err, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Upgrade_WithoutTheWait_ExitsZeroAtTheCommitAndHasNoProbationField()
    {
        await using var server = UpgradeServer(new ProbationUpdateMessage(ProbationProgress.Started, EndsInFiveMinutes, RollbackOrigin.None, ""));

        Assert.Equal(0, await Cli.Cli.UpgradeAsync(new ControlOptions(_scope.SocketPath, Bound, Json: true), _stdout, _stderr).WaitAsync(Bound));

        Assert.False(JsonDocument.Parse(Out).RootElement.TryGetProperty("probation", out _));
    }

    [Fact]
    public async Task Status_OnProbation_PrintsTheProbationLine()
    {
        await using var server = StatusServer(new ProbationStatusMessage(ProbationState.OnProbation, 3044, DateTimeOffset.UtcNow.AddSeconds(252.5).ToUnixTimeMilliseconds(), ""));

        Assert.Equal(0, await StatusAsync(json: false));

        var lines = Out.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.StartsWith("WebApi: pid 3077, serving since", lines[0], StringComparison.Ordinal);
        Assert.Equal("  listener tcp:127.0.0.1:8080 on 127.0.0.1:8080", lines[1]);
        Assert.Matches(@"^  probation: pid 3044 stands by until \S+Z \(4 min 1[12] s left\)$", lines[2]);
        Assert.Equal(3, lines.Length);
    }

    [Theory]
    [InlineData((byte)ProbationState.RollingBack, 0L, "", "  probation: rolling back to pid 3044")]
    [InlineData((byte)ProbationState.RolledBack, 1_765_000_483_000L, "5xx ratio 0.250", "  probation: rolled back from pid 3044 at 2025-12-06T05:54:43.000Z: 5xx ratio 0.250")]
    public async Task Status_RollingOrRolledBack_PrintsWhat(byte state, long at, string reason, string line)
    {
        await using var server = StatusServer(new ProbationStatusMessage((ProbationState)state, 3044, at, reason));

        Assert.Equal(0, await StatusAsync(json: false));

        Assert.Contains(line, Out.Split('\n'));
    }

    [Fact]
    public async Task Status_OnProbationJson_AddsTheProbationObjectAndKeepsEveryField()
    {
        long ends = DateTimeOffset.UtcNow.AddMinutes(4).ToUnixTimeMilliseconds();
        await using var server = StatusServer(new ProbationStatusMessage(ProbationState.OnProbation, 3044, ends, ""));

        Assert.Equal(0, await StatusAsync(json: true));

        var json = JsonDocument.Parse(Out).RootElement;
        string[] fields = ["socket", "serving", "pid", "applicationId", "state", "generation", "servingSince", "firstStart", "listeners",
            "drainingPredecessorPid", "successorPid", "drainingGenerations", "probation"];
        Assert.Equal(fields, json.EnumerateObject().Select(property => property.Name));
        Assert.Equal("serving", json.GetProperty("state").GetString());
        var probation = json.GetProperty("probation");
        Assert.Equal("on-probation", probation.GetProperty("state").GetString());
        Assert.Equal(3044, probation.GetProperty("peerPid").GetInt32());
        Assert.InRange(probation.GetProperty("remainingMs").GetInt64(), 200_000, 240_000);
        Assert.Equal(JsonValueKind.Null, probation.GetProperty("reason").ValueKind);
        Assert.Equal(ends, DateTimeOffset.Parse(probation.GetProperty("endsAt").GetString()!, System.Globalization.CultureInfo.InvariantCulture).ToUnixTimeMilliseconds());
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Status_NoProbation_NoLineAndJsonNull(bool earlierBuild)
    {
        await using var server = StatusServer(earlierBuild ? null : new ProbationStatusMessage(ProbationState.None, 0, 0, ""));

        Assert.Equal(0, await StatusAsync(json: false));
        Assert.DoesNotContain("probation", Out, StringComparison.Ordinal);

        _stdout.GetStringBuilder().Clear();
        Assert.Equal(0, await StatusAsync(json: true));
        Assert.Equal(JsonValueKind.Null, JsonDocument.Parse(Out).RootElement.GetProperty("probation").ValueKind);
    }

    public void Dispose()
    {
        _stdout.Dispose();
        _stderr.Dispose();
        _scope.Dispose();
    }

    private string Out => _stdout.ToString().ReplaceLineEndings("\n");

    private string Err => _stderr.ToString().ReplaceLineEndings("\n");

    private Task<int> RollbackAsync(bool json, string note = "") =>
        Cli.Cli.RollbackAsync(new ControlOptions(_scope.SocketPath, Bound, json, Note: note), _stdout, _stderr).WaitAsync(Bound);

    private Task<int> UpgradeAsync(bool json) =>
        Cli.Cli.UpgradeAsync(new ControlOptions(_scope.SocketPath, Bound, json, WaitProbation: true), _stdout, _stderr).WaitAsync(Bound);

    private Task<int> StatusAsync(bool json) =>
        Cli.Cli.StatusAsync(new ControlOptions(_scope.SocketPath, Bound, json), _stdout, _stderr).WaitAsync(Bound);

    /// <summary>A process of this build on probation: status with its probation, and <paramref name="result"/> to a rollback command.</summary>
    private FakeControlServer RollbackServer(RollbackResultMessage result) => new(_scope.SocketPath, (request, channel) =>
    {
        if (request is RollbackCommandMessage)
        {
            channel.Send(result);
        }
        else
        {
            FakeControlServer.AnswerStatus(channel, new ProbationStatusMessage(ProbationState.OnProbation, 3044, EndsInFiveMinutes, ""));
        }

        return Task.CompletedTask;
    });

    /// <summary>A status request answered with <paramref name="probation"/> (null: an earlier build).</summary>
    private FakeControlServer StatusServer(ProbationStatusMessage? probation) => new(_scope.SocketPath, (_, channel) =>
    {
        FakeControlServer.AnswerStatus(channel, probation);
        return Task.CompletedTask;
    });

    /// <summary>An upgrade that commits, followed by <paramref name="updates"/> (none: an earlier build, which closes).</summary>
    private FakeControlServer UpgradeServer(params ProbationUpdateMessage[] updates) => new(_scope.SocketPath, (request, channel) =>
    {
        if (request is UpgradeRequestMessage)
        {
            channel.Send(new UpgradeStartedMessage(3100));
            channel.Send(new UpgradeResultMessage(UpgradeOutcome.Committed, 3100, -1, "", 900, 950));
            foreach (var update in updates)
            {
                channel.TrySend(update);
            }
        }
        else
        {
            FakeControlServer.AnswerStatus(channel, updates.Length > 0 ? new ProbationStatusMessage(ProbationState.None, 0, 0, "") : null);
        }

        return Task.CompletedTask;
    });
}
