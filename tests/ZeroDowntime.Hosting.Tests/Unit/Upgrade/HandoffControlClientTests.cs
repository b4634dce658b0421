using ZeroDowntime.Hosting.Protocol;
using ZeroDowntime.Hosting.Tests.Infrastructure;
using ZeroDowntime.Hosting.Upgrade;

namespace ZeroDowntime.Hosting.Tests.Unit;

/// <summary>
/// Issue 20, the control client's side of probation (docs/probation-design.md 2.1, 2.3, 8) against a server played
/// by the test over a real Unix socket (<see cref="FakeControlServer"/>): a status of this build carries
/// <see cref="ProbationStatusMessage"/> and one of an earlier build ends after <see cref="StatusMessage"/>; a rollback
/// asks for status first and sends nothing new to a build without probation; an upgrade waits through the probation
/// updates that follow a committed result.
/// </summary>
public sealed class HandoffControlClientTests : IDisposable
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(10);

    private static readonly long EndsInAMinute = DateTimeOffset.UtcNow.AddMinutes(1).ToUnixTimeMilliseconds();

    private readonly TestScope _scope = new();

    [Fact]
    public async Task StatusWithProbation_ThisBuild_ReturnsTheProbationFrame()
    {
        var probation = new ProbationStatusMessage(ProbationState.OnProbation, 3044, EndsInAMinute, "");
        await using var server = new FakeControlServer(_scope.SocketPath, (_, channel) =>
        {
            FakeControlServer.AnswerStatus(channel, probation);
            return Task.CompletedTask;
        });

        var status = await HandoffControlClient.StatusWithProbationAsync(_scope.SocketPath, Bound);

        Assert.Equal(FakeControlServer.Status().ProcessId, status.Status.ProcessId);
        Assert.Equal(probation, status.Probation);
        Assert.IsType<StatusRequestMessage>(Assert.Single(server.Requests));
    }

    [Fact]
    public async Task StatusWithProbation_EarlierBuildClosesAfterStatus_ProbationIsNull()
    {
        await using var server = new FakeControlServer(_scope.SocketPath, (_, channel) =>
        {
            FakeControlServer.AnswerStatus(channel, probation: null);
            return Task.CompletedTask;
        });

        var status = await HandoffControlClient.StatusWithProbationAsync(_scope.SocketPath, Bound);

        Assert.Equal(ServingState.Serving, status.Status.State);
        Assert.Null(status.Probation);
    }

    [Fact]
    public async Task StatusWithProbation_AnotherFrameAfterStatus_IsAProtocolError()
    {
        await using var server = new FakeControlServer(_scope.SocketPath, (_, channel) =>
        {
            channel.Send(FakeControlServer.Status());
            channel.Send(new HeartbeatMessage());
            return Task.CompletedTask;
        });

        var ex = await Assert.ThrowsAsync<ControlException>(() => HandoffControlClient.StatusWithProbationAsync(_scope.SocketPath, Bound));

        Assert.Equal(ControlError.Protocol, ex.Error);
        Assert.Contains("Heartbeat", ex.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData((byte)RollbackOutcome.RolledBack, 3044, "zerodowntime rollback: bad deploy", 14L)]
    [InlineData((byte)RollbackOutcome.Refused, 3077, "no generation on probation", -1L)]
    [InlineData((byte)RollbackOutcome.Failed, 3077, "pid 3044 did not answer within 5 s; it was released", -1L)]
    public async Task Rollback_ThisBuild_AsksStatusThenSendsTheCommandWithTheNote_ReturnsTheResult(byte outcome, int servingPid, string reason, long switchMs)
    {
        var probation = new ProbationStatusMessage(ProbationState.OnProbation, 3044, EndsInAMinute, "");
        var result = new RollbackResultMessage((RollbackOutcome)outcome, servingPid, reason, switchMs);
        await using var server = new FakeControlServer(_scope.SocketPath, (request, channel) =>
        {
            if (request is RollbackCommandMessage)
            {
                channel.Send(result);
            }
            else
            {
                FakeControlServer.AnswerStatus(channel, probation);
            }

            return Task.CompletedTask;
        });

        var reply = await HandoffControlClient.RollbackAsync(_scope.SocketPath, Bound, "bad deploy");

        Assert.Equal(result, reply.Result);
        Assert.Equal(probation, reply.Probation);
        Assert.Equal(3077, reply.Before.ProcessId);
        Assert.Collection(server.Requests,
            first => Assert.Equal(new StatusRequestMessage(HandoffProtocol.Version), first),
            second => Assert.Equal(new RollbackCommandMessage(HandoffProtocol.Version, "bad deploy"), second));
    }

    [Fact]
    public async Task Rollback_EarlierBuild_NoProbationError_AndNoRollbackCommandReachesIt()
    {
        await using var server = new FakeControlServer(_scope.SocketPath, (_, channel) =>
        {
            FakeControlServer.AnswerStatus(channel, probation: null);
            return Task.CompletedTask;
        });

        var ex = await Assert.ThrowsAsync<ControlException>(() => HandoffControlClient.RollbackAsync(_scope.SocketPath, Bound, "note"));

        Assert.Equal(ControlError.NoProbation, ex.Error);
        Assert.Contains("without probation", ex.Message, StringComparison.Ordinal);
        Assert.Contains("Nothing was asked", ex.Message, StringComparison.Ordinal);
        Assert.IsType<StatusRequestMessage>(Assert.Single(server.Requests));
    }

    [Fact]
    public async Task Rollback_DrainingAnswerWhileTheSuccessorTakesThePathOver_AsksAgainThenSendsTheCommand()
    {
        int statusAnswers = 0;
        await using var server = new FakeControlServer(_scope.SocketPath, (request, channel) =>
        {
            if (request is RollbackCommandMessage)
            {
                channel.Send(new RollbackResultMessage(RollbackOutcome.RolledBack, 3044, "r", 3));
            }
            else
            {
                // The first answer comes from the old process still on the path right after a commit.
                var state = Interlocked.Increment(ref statusAnswers) == 1 ? ServingState.Draining : ServingState.Serving;
                FakeControlServer.AnswerStatus(channel, new ProbationStatusMessage(ProbationState.OnProbation, 3044, EndsInAMinute, ""),
                    FakeControlServer.Status(state: state));
            }

            return Task.CompletedTask;
        });

        var reply = await HandoffControlClient.RollbackAsync(_scope.SocketPath, Bound, "", handedOverWait: Bound);

        Assert.Equal(ServingState.Serving, reply.Before.State);
        Assert.Equal(3, server.Requests.Count);
        Assert.IsType<RollbackCommandMessage>(server.Requests[^1]);
    }

    [Fact]
    public async Task Rollback_RefusedFrame_IsARefusal()
    {
        await using var server = new FakeControlServer(_scope.SocketPath, (request, channel) =>
        {
            if (request is RollbackCommandMessage)
            {
                channel.Send(new RefusedMessage(RefusalReason.Busy, HandoffProtocol.Version, "a handoff is in progress"));
            }
            else
            {
                FakeControlServer.AnswerStatus(channel, new ProbationStatusMessage(ProbationState.None, 0, 0, ""));
            }

            return Task.CompletedTask;
        });

        var ex = await Assert.ThrowsAsync<ControlException>(() => HandoffControlClient.RollbackAsync(_scope.SocketPath, Bound, ""));

        Assert.Equal(ControlError.Refused, ex.Error);
    }

    [Theory]
    [InlineData((byte)ProbationProgress.Passed, (byte)RollbackOrigin.None, "the probation window of 00:01:00 ended")]
    [InlineData((byte)ProbationProgress.RolledBack, (byte)RollbackOrigin.ErrorRatio, "5xx ratio 0.250 (25 of 100 responses in the last 00:00:30) is above MaxErrorRatio 0.05")]
    [InlineData((byte)ProbationProgress.EndedEarly, (byte)RollbackOrigin.None, "pid 3077 is stopping")]
    public async Task UpgradeThroughProbation_Started_TellsTheCallbackThenReturnsTheFinalUpdate(byte progress, byte origin, string reason)
    {
        var committed = new UpgradeResultMessage(UpgradeOutcome.Committed, 3100, -1, "", 900, 950);
        var started = new ProbationUpdateMessage(ProbationProgress.Started, EndsInAMinute, RollbackOrigin.None, "");
        var final = new ProbationUpdateMessage((ProbationProgress)progress, EndsInAMinute, (RollbackOrigin)origin, reason);
        var toldStarted = new TaskCompletionSource<ProbationUpdateMessage>(TaskCreationOptions.RunContinuationsAsynchronously);
        var order = new List<string>();
        await using var server = new FakeControlServer(_scope.SocketPath, async (_, channel) =>
        {
            channel.Send(new UpgradeStartedMessage(3100));
            channel.Send(committed);
            channel.Send(started);

            // The final update only once the tool has shown the start: the two are told in this order.
            await toldStarted.Task;
            channel.Send(final);
        });

        var reply = await HandoffControlClient.UpgradeThroughProbationAsync(_scope.SocketPath, Bound,
            pid => order.Add($"started {pid}"),
            result => order.Add($"committed {result.SuccessorPid}"),
            update =>
            {
                order.Add($"probation {update.Progress}");
                toldStarted.SetResult(update);
            }).WaitAsync(Bound);

        Assert.Equal(committed, reply.Result);
        Assert.Equal(final, reply.Probation);
        Assert.Equal(["started 3100", "committed 3100", "probation Started"], order);
    }

    [Fact]
    public async Task UpgradeThroughProbation_FinalUpdateWithoutAnEnd_CarriesTheAnnouncedEnd()
    {
        await using var server = new FakeControlServer(_scope.SocketPath, (_, channel) =>
        {
            channel.Send(new UpgradeResultMessage(UpgradeOutcome.Committed, 3100, -1, "", 900, 950));
            channel.Send(new ProbationUpdateMessage(ProbationProgress.Started, EndsInAMinute, RollbackOrigin.None, ""));
            channel.Send(new ProbationUpdateMessage(ProbationProgress.RolledBack, 0, RollbackOrigin.Tool, "by hand"));
            return Task.CompletedTask;
        });

        var reply = await HandoffControlClient.UpgradeThroughProbationAsync(_scope.SocketPath, Bound, null, null, null);

        Assert.Equal(new ProbationUpdateMessage(ProbationProgress.RolledBack, EndsInAMinute, RollbackOrigin.Tool, "by hand"), reply.Probation);
    }

    [Fact]
    public async Task UpgradeThroughProbation_NoneAtOnce_ReturnsItWithoutWaiting()
    {
        var none = new ProbationUpdateMessage(ProbationProgress.None, 0, RollbackOrigin.None, "the new release asks for no probation (Duration 0)");
        bool toldStarted = false;
        await using var server = new FakeControlServer(_scope.SocketPath, (_, channel) =>
        {
            channel.Send(new UpgradeResultMessage(UpgradeOutcome.Committed, 3100, -1, "", 900, 950));
            channel.Send(none);
            return Task.CompletedTask;
        });

        var reply = await HandoffControlClient.UpgradeThroughProbationAsync(_scope.SocketPath, Bound, null, null, _ => toldStarted = true);

        Assert.Equal(none, reply.Probation);
        Assert.False(toldStarted);
    }

    [Fact]
    public async Task UpgradeThroughProbation_EarlierBuildClosesAfterTheResult_ProbationIsNull()
    {
        await using var server = new FakeControlServer(_scope.SocketPath, (_, channel) =>
        {
            channel.Send(new UpgradeResultMessage(UpgradeOutcome.Committed, 3100, -1, "", 900, 950));
            return Task.CompletedTask;
        });

        var reply = await HandoffControlClient.UpgradeThroughProbationAsync(_scope.SocketPath, Bound, null, null, null);

        Assert.Equal(UpgradeOutcome.Committed, reply.Result.Outcome);
        Assert.Null(reply.Probation);
    }

    [Fact]
    public async Task UpgradeThroughProbation_ConnectionClosedDuringTheWindow_EndsEarly()
    {
        await using var server = new FakeControlServer(_scope.SocketPath, (_, channel) =>
        {
            channel.Send(new UpgradeResultMessage(UpgradeOutcome.Committed, 3100, -1, "", 900, 950));
            channel.Send(new ProbationUpdateMessage(ProbationProgress.Started, EndsInAMinute, RollbackOrigin.None, ""));
            return Task.CompletedTask; // closed: the old process was killed during its probation
        });

        var reply = await HandoffControlClient.UpgradeThroughProbationAsync(_scope.SocketPath, Bound, null, null, null).WaitAsync(Bound);

        Assert.Equal(ProbationProgress.EndedEarly, reply.Probation?.Progress);
        Assert.Equal(EndsInAMinute, reply.Probation?.EndsUnixMilliseconds);
        Assert.Contains("closed the connection before the probation ended", reply.Probation?.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task UpgradeThroughProbation_NotCommitted_ReadsNoProbation()
    {
        var failed = new UpgradeResultMessage(UpgradeOutcome.Failed, 3100, 134, "start-up failed", -1, -1);
        await using var server = new FakeControlServer(_scope.SocketPath, async (_, channel) =>
        {
            channel.Send(failed);

            // A stray frame after a failed result is never read: the client is done at the result.
            channel.Send(new ProbationUpdateMessage(ProbationProgress.None, 0, RollbackOrigin.None, ""));
            await Task.CompletedTask;
        });

        var reply = await HandoffControlClient.UpgradeThroughProbationAsync(_scope.SocketPath, Bound, null, null, null);

        Assert.Equal(failed, reply.Result);
        Assert.Null(reply.Probation);
    }

    [Fact]
    public async Task Upgrade_WithoutTheWait_IgnoresTheProbationUpdatesOfThisBuild()
    {
        var committed = new UpgradeResultMessage(UpgradeOutcome.Committed, 3100, -1, "", 900, 950);
        await using var server = new FakeControlServer(_scope.SocketPath, (_, channel) =>
        {
            channel.Send(committed);
            channel.TrySend(new ProbationUpdateMessage(ProbationProgress.Started, EndsInAMinute, RollbackOrigin.None, ""));
            return Task.CompletedTask;
        });

        Assert.Equal(committed, await HandoffControlClient.UpgradeAsync(_scope.SocketPath, Bound));
    }

    public void Dispose() => _scope.Dispose();
}
