using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using ZeroDowntime.Hosting.Diagnostics;
using ZeroDowntime.Hosting.Handoff;
using ZeroDowntime.Hosting.Listeners;
using ZeroDowntime.Hosting.Probation;
using ZeroDowntime.Hosting.Protocol;
using ZeroDowntime.Hosting.Tests.Infrastructure;

namespace ZeroDowntime.Hosting.Tests.Unit;

/// <summary>
/// Probation and rollback (issue 20; docs/probation-design.md sections 3 and 6), one side at a time: the real
/// coordinator as the old process that stands by (its <see cref="SuccessorSession"/>) or as the new one on probation
/// (its <see cref="PredecessorLink"/>), the test as the other process over a real Unix socket, every deadline on the
/// fake clock. Each test checks the machines (their logged arrows, the role) and what went on the wire.
/// </summary>
public sealed class ProbationTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(10);

    /// <summary>Shorter than the heartbeat timeout: the window ends before the silence of a successor could count.</summary>
    private static readonly TimeSpan ShortWindow = TimeSpan.FromSeconds(3);

    /// <summary>Longer than every other deadline in play: the window never ends within a test.</summary>
    private static readonly TimeSpan LongWindow = TimeSpan.FromMinutes(5);

    private const string Session = nameof(SuccessorSession);
    private const string Link = nameof(PredecessorLinkState);

    // ---- The old process that stands by (SuccessorSession); the test plays the new one. ----

    [Fact]
    public async Task Greeting_HelloWithProbation_WelcomeCarriesTheFeatureAfterTheV2Fields()
    {
        await using var process = new InProcessCoordinator();
        await process.StartAloneAsync();

        var (type, payload) = await GreetRawAsync(process, new HelloMessage(HandoffProtocol.Version, Environment.ProcessId,
            process.Options.ApplicationId!, HandoffFeatures.Probation, 60_000));

        Assert.Equal(MessageType.Welcome, type);
        Assert.Equal(PlainV2WelcomeLength() + sizeof(uint), payload.Length);
        Assert.Equal((uint)HandoffFeatures.Probation, BinaryPrimitives.ReadUInt32BigEndian(payload.AsSpan(payload.Length - sizeof(uint))));
        Assert.Equal(HandoffFeatures.Probation, Assert.IsType<WelcomeMessage>(HandoffProtocol.Decode(type, payload)).Features);
    }

    [Fact]
    public async Task Greeting_HelloWithoutFeatures_WelcomeIsThePlainV2Layout()
    {
        await using var process = new InProcessCoordinator();
        await process.StartAloneAsync();

        var (type, payload) = await GreetRawAsync(process, new HelloMessage(HandoffProtocol.Version, Environment.ProcessId, process.Options.ApplicationId!));

        Assert.Equal(MessageType.Welcome, type);
        Assert.Equal(PlainV2WelcomeLength(), payload.Length); // what an earlier build decodes exactly
        Assert.Null(Assert.IsType<WelcomeMessage>(HandoffProtocol.Decode(type, payload)).Features);
    }

    [Fact]
    public async Task Committing_BothAnnounceProbation_DrainsThenStandsByWithTheGateClosed()
    {
        var participant = new RecordingParticipant();
        await using var process = new InProcessCoordinator(participants: [participant]);
        using var successor = await StandingByAsync(process, LongWindow);

        Assert.Equal(
            new[]
            {
                "Greeting --ListenersSent--> Negotiating", "Negotiating --Ready--> Committing",
                "Committing --CommittedOnProbation--> DrainingOnProbation", "DrainingOnProbation --Drained--> OnProbation",
            },
            Arrows(process, Session));
        Assert.Equal(ProcessRole.HandedOver, process.Coordinator.Role);
        Assert.False(process.Gate.IsOpen, "standing by accepts nothing");
        Assert.Single(process.Logger.Named("StandingBy"));
        Assert.Empty(process.Logger.Named("Exiting"));
        Assert.False(process.Application.StopRequested.Task.IsCompleted, "the drain is over, the window is not: no exit");
        Assert.Equal(new[] { "acquire FirstStart", "release" }, participant.Calls);
        Assert.False(successor.Channel.HasPendingData, "nothing new on the wire before the window ends");

        await ReleaseAndWaitForExitAsync(process, successor);
    }

    // The new release's Duration decides (design section 2.2): 0 asks for none, even from a build that knows probation.
    [Fact]
    public async Task Committing_HelloWithProbationOfZero_PlainCommitAndExitAfterTheDrain()
    {
        await using var process = new InProcessCoordinator();
        await process.StartAloneAsync();
        using var successor = await process.ConnectAsync();
        successor.Send(new HelloMessage(HandoffProtocol.Version, Environment.ProcessId, process.Options.ApplicationId!, HandoffFeatures.Probation, 0));
        Assert.Equal(HandoffFeatures.Probation, Assert.IsType<WelcomeMessage>(await successor.ReadAsync(Bound, CancellationToken.None)).Features);
        successor.Send(new ReadyMessage());
        Assert.IsType<CommittedMessage>(await successor.ReadAsync(Bound, CancellationToken.None));
        using var served = process.ServePathAsSuccessor();
        successor.Send(new HeartbeatMessage());

        await process.Application.StopRequested.Task.WaitAsync(Bound);
        Assert.Equal("Draining --Drained--> Completed", Arrows(process, Session)[^1]);
        Assert.Contains("Committing --CommittedSent--> Draining", Arrows(process, Session));
        Assert.Empty(process.Logger.Named("StandingBy"));
        Assert.Empty(await ReadUntilClosedAsync(successor)); // no ProbationEnded, nothing new on the wire
    }

    // A window beyond ProbationSettingsValidator.MaxDuration (1 day) from a peer is held to it.
    [Fact]
    public async Task Committing_ProbationAskedBeyondTheMaximum_StandsByForOneDayAtMost()
    {
        await using var process = new InProcessCoordinator();
        var committedAt = process.Time.GetUtcNow();
        using var successor = await StandingByAsync(process, TimeSpan.FromDays(30));

        var standingBy = Assert.Single(process.Logger.Named("StandingBy"));
        Assert.Equal(committedAt + ProbationSettingsValidator.MaxDuration, (DateTimeOffset)standingBy.Fields["EndsAt"]!);
        await process.Time.WaitForTimerAsync(ProbationSettingsValidator.MaxDuration, Bound);

        await ReleaseAndWaitForExitAsync(process, successor);
    }

    [Fact]
    public async Task OnProbation_WindowEnds_SendsProbationEndedAndExits0()
    {
        int exitCodeBefore = Environment.ExitCode;
        await using var process = new InProcessCoordinator();
        using var successor = await StandingByAsync(process, ShortWindow);
        await process.Time.WaitForTimerAsync(ShortWindow, Bound);

        process.Time.Advance(ShortWindow - TimeSpan.FromMilliseconds(1));
        await process.Time.WaitForTimerAsync(ShortWindow, Bound); // still pending: not a millisecond early
        Assert.False(process.Application.StopRequested.Task.IsCompleted);
        process.Time.Advance(TimeSpan.FromMilliseconds(1));

        var ended = Assert.IsType<ProbationEndedMessage>(await successor.Channel.ReadAsync(Bound, CancellationToken.None));
        Assert.Equal("the probation window of 00:00:03 ended", ended.Reason);
        await process.Application.StopRequested.Task.WaitAsync(Bound);
        await AssertClosedAsync(successor.Channel);
        Assert.Equal("OnProbation --ProbationEnded--> Completed", Arrows(process, Session)[^1]);
        await process.Logger.WaitForAsync(e => e.EventId.Name == "Exiting", Bound);
        Assert.Single(process.Logger.Named("ProbationPassed"));
        Assert.Equal(ProcessRole.HandedOver, process.Coordinator.Role);
        Assert.False(process.Gate.IsOpen);
        Assert.Equal(exitCodeBefore, Environment.ExitCode); // no code of the library's: 0
    }

    // Design section 6, "rollback after the window", on the old process's side: the window ends while it still drains
    // (the successor has not confirmed yet); a RollbackRequest read after that finds no arrow, and the ProbationEnded
    // sent before it is the answer. The drain then ends as an ordinary one.
    [Fact]
    public async Task DrainingOnProbation_WindowEndsFirst_ARollbackRequestReadAfterItChangesNothing()
    {
        await using var process = new InProcessCoordinator();
        await process.StartAloneAsync();
        using var successor = await CommittedOnProbationAsync(process, ShortWindow);
        await WaitForArrowAsync(process, Session, "Committing --CommittedOnProbation--> DrainingOnProbation");
        Assert.False(process.Application.StopRequested.Task.IsCompleted, "the drain waits for the successor's first heartbeat");
        await process.Time.WaitForTimerAsync(ShortWindow, Bound);

        process.Time.Advance(ShortWindow);
        var ended = Assert.IsType<ProbationEndedMessage>(await successor.ReadAsync(Bound, CancellationToken.None));
        Assert.Contains("probation window", ended.Reason, StringComparison.Ordinal);
        await WaitForArrowAsync(process, Session, "DrainingOnProbation --ProbationEnded--> Draining");

        successor.Send(new RollbackRequestMessage(RollbackOrigin.Tool, "too late"));
        using var served = process.ServePathAsSuccessor();
        successor.Send(new HeartbeatMessage());

        await process.Application.StopRequested.Task.WaitAsync(Bound);
        await AssertClosedAsync(successor); // no RollbackAccepted
        Assert.Equal("Draining --Drained--> Completed", Arrows(process, Session)[^1]);
        Assert.DoesNotContain(Arrows(process, Session), a => a.Contains("RollingBack", StringComparison.Ordinal));
        Assert.Empty(process.Logger.Named("RollbackAccepted"));
        Assert.False(process.Gate.IsOpen);
        Assert.Equal(ProcessRole.HandedOver, process.Coordinator.Role);
    }

    [Theory]
    [InlineData(true, HandoffAcquireReason.RolledBack)]
    [InlineData(false, HandoffAcquireReason.Reclaimed)]
    public async Task OnProbation_RollbackRequestThenHandedBack_OpensTheGateFirstThenOwnsEverythingAgain(bool allReleased, HandoffAcquireReason acquired)
    {
        var participant = new RecordingParticipant();
        await using var process = new InProcessCoordinator(participants: [participant]);
        using var recorder = new MeasurementRecorder(process.MeterFactory);
        using var successor = await StandingByAsync(process, LongWindow);

        successor.Channel.Send(new RollbackRequestMessage(RollbackOrigin.ErrorRatio, "5xx ratio 0.250"));

        Assert.IsType<RollbackAcceptedMessage>(await successor.Channel.ReadAsync(Bound, CancellationToken.None));
        Assert.True(process.Gate.IsOpen, "the gate is open before RollbackAccepted goes out");
        Assert.Equal(ProcessRole.HandingOver, process.Coordinator.Role);
        Assert.False(process.Lifetime.IsDraining, "the drain's goodbye is over");
        Assert.Equal(new[] { "acquire FirstStart", "release" }, participant.Calls); // nothing acquired before HandedBack
        Assert.Equal("OnProbation --RollbackRequested--> RollingBack", Arrows(process, Session)[^1]);

        successor.Channel.Send(new HandedBackMessage(allReleased));

        await process.Logger.WaitForAsync(e => e.EventId.Name == "RolledBack", Bound);
        await SuccessorSessionTests.WaitForRoleAsync(process, ProcessRole.Owner);
        Assert.Equal("RollingBack --HandedBack--> RolledBack", Arrows(process, Session)[^1]);
        Assert.Equal(new[] { "acquire FirstStart", "release", $"acquire {acquired}" }, participant.Calls);
        Assert.True(process.Gate.IsOpen);
        Assert.False(process.Application.StopRequested.Task.IsCompleted, "the old process serves again");
        await AssertClosedAsync(successor.Channel); // after HandedBack the old process no longer watches the new one
        Assert.Contains(recorder.Of("zerodowntime.handoffs"), m => Equals(m.Tags[ZeroDowntimeMetrics.RoleTag], HandoffTags.Predecessor)
            && Equals(m.Tags[ZeroDowntimeMetrics.OutcomeTag], "rolled-back"));

        // It serves the handoff socket again (the path names its socket), and says what it rolled back from.
        Assert.Equal(2, process.Logger.Named("ServingHandoffSocket").Count());
        var (status, probation) = await StatusAsync(process);
        Assert.Equal(ServingState.Serving, status.State);
        Assert.Equal(Environment.ProcessId, status.ProcessId);
        // The time of the rollback (the fake clock has not moved since).
        Assert.Equal(new ProbationStatusMessage(ProbationState.RolledBack, Environment.ProcessId, process.Time.GetUtcNow().ToUnixTimeMilliseconds(), "5xx ratio 0.250"), probation);

        // A second rollback, now asked of the old process: nothing stands by behind it.
        using var tool = await RollbackCommandAsync(process, "again");
        var refused = Assert.IsType<RollbackResultMessage>(await tool.ReadAsync(Bound, CancellationToken.None));
        Assert.Equal(RollbackOutcome.Refused, refused.Outcome);
        Assert.Equal($"no generation on probation: pid {Environment.ProcessId} serves; it rolled back from pid {Environment.ProcessId} (5xx ratio 0.250)", refused.Reason);
        Assert.Equal(ProcessRole.Owner, process.Coordinator.Role);
    }

    // Design section 2.4: an endpoint that the new process dropped (and so shut down, the old process's copy with it) is
    // bound anew before the old process's gate opens and RollbackAccepted goes out.
    [Fact]
    public async Task OnProbation_RollbackRequest_RevivesAListenerTheSuccessorShutDownBeforeRollbackAccepted()
    {
        await using var process = new InProcessCoordinator();
        var listener = ListenOnLoopback(process);
        int port = ListenerTestKit.Port(listener);
        using var successor = await StandingByAsync(process, LongWindow);
        Interop.Libc.shutdown(Assert.Single(successor.Fds), Interop.Libc.SHUT_RDWR); // the successor dropped this endpoint
        Assert.False(ListenerTestKit.IsListening(listener.Fd));

        successor.Channel.Send(new RollbackRequestMessage(RollbackOrigin.Tool, "manual"));

        Assert.IsType<RollbackAcceptedMessage>(await successor.Channel.ReadAsync(Bound, CancellationToken.None));
        Assert.True(ListenerTestKit.IsListening(listener.Fd), "bound anew before RollbackAccepted");
        Assert.Equal(port, ListenerTestKit.Port(listener));
        Assert.True(process.Gate.IsOpen);
        successor.Channel.Send(new HandedBackMessage(true));
        await process.Logger.WaitForAsync(e => e.EventId.Name == "RolledBack", Bound);
        await SuccessorSessionTests.WaitForRoleAsync(process, ProcessRole.Owner);
    }

    // The window's end finds the rollback accepted already: no arrow, nothing sent; HandedBack completes it.
    [Fact]
    public async Task RollingBack_WindowEnds_ChangesNothingAndHandedBackCompletesTheRollback()
    {
        var participant = new RecordingParticipant();
        await using var process = new InProcessCoordinator(participants: [participant]);
        using var successor = await StandingByAsync(process, ShortWindow);
        successor.Channel.Send(new RollbackRequestMessage(RollbackOrigin.Signal, "SIGUSR1"));
        Assert.IsType<RollbackAcceptedMessage>(await successor.Channel.ReadAsync(Bound, CancellationToken.None));
        await process.Time.WaitForTimerAsync(ShortWindow, Bound);

        process.Time.Advance(ShortWindow); // within the heartbeat timeout
        successor.Channel.Send(new HandedBackMessage(true));

        await process.Logger.WaitForAsync(e => e.EventId.Name == "RolledBack", Bound);
        await SuccessorSessionTests.WaitForRoleAsync(process, ProcessRole.Owner);
        await AssertClosedAsync(successor.Channel); // no ProbationEnded
        Assert.Empty(process.Logger.Named("ProbationPassed"));
        Assert.Equal("RollingBack --HandedBack--> RolledBack", Arrows(process, Session)[^1]);
        Assert.Equal("acquire RolledBack", participant.Calls[^1]);
    }

    // Design section 6, "S frozen after RollbackAccepted": the old process, its gate open, waits for HandedBack; 5 s
    // without a heartbeat and it serves anyway (Reclaimed), and revokes the new one.
    [Fact]
    public async Task RollingBack_NoHeartbeatFor5Seconds_ServesAgainReclaimedAndRevokes()
    {
        var participant = new RecordingParticipant();
        await using var process = new InProcessCoordinator(participants: [participant]);
        using var successor = await StandingByAsync(process, LongWindow);
        successor.Channel.Send(new RollbackRequestMessage(RollbackOrigin.HealthCheck, "db unhealthy"));
        Assert.IsType<RollbackAcceptedMessage>(await successor.Channel.ReadAsync(Bound, CancellationToken.None));
        await process.Time.WaitForTimerAsync(SuccessorSession.HeartbeatTimeout, Bound);

        process.Time.Advance(SuccessorSession.HeartbeatTimeout);

        var revoked = Assert.IsType<RevokedMessage>(await successor.Channel.ReadAsync(Bound, CancellationToken.None));
        Assert.Equal("no heartbeat for 5 s", revoked.Reason);
        await SuccessorSessionTests.WaitForRoleAsync(process, ProcessRole.Owner);
        await participant.WaitForAsync("acquire Reclaimed", Bound);
        Assert.Equal(new[] { "acquire FirstStart", "release", "acquire Reclaimed" }, participant.Calls);
        Assert.Equal("RollingBack --SuccessorLost--> Resumed", Arrows(process, Session)[^1]);
        Assert.True(process.Gate.IsOpen);
        Assert.Empty(process.Logger.Named("RolledBack"));
        Assert.False(process.Application.StopRequested.Task.IsCompleted);
    }

    [Fact]
    public async Task OnProbation_SuccessorClosesTheConnection_ServesAgainAtOnceAndRevokes()
    {
        var participant = new RecordingParticipant();
        await using var process = new InProcessCoordinator(participants: [participant]);
        using var recorder = new MeasurementRecorder(process.MeterFactory);
        using var successor = await StandingByAsync(process, LongWindow);

        successor.Socket.Shutdown(SocketShutdown.Send); // end of stream, no Release: it died

        var revoked = Assert.IsType<RevokedMessage>(await successor.Channel.ReadAsync(Bound, CancellationToken.None));
        Assert.Contains("closed the handoff connection", revoked.Reason, StringComparison.Ordinal);
        await SuccessorSessionTests.WaitForRoleAsync(process, ProcessRole.Owner);
        await participant.WaitForAsync("acquire Reclaimed", Bound);
        Assert.Equal(new[] { "acquire FirstStart", "release", "acquire Reclaimed" }, participant.Calls);
        Assert.Equal("OnProbation --SuccessorLost--> Resumed", Arrows(process, Session)[^1]);
        Assert.True(process.Gate.IsOpen);
        Assert.False(process.Lifetime.HasHandedOver);
        Assert.Contains(recorder.Of("zerodowntime.handoffs"), m => Equals(m.Tags[ZeroDowntimeMetrics.OutcomeTag], HandoffTags.Revoked));
        Assert.False(process.Application.StopRequested.Task.IsCompleted);
    }

    [Fact]
    public async Task OnProbation_NoHeartbeatFor5Seconds_ServesAgainAfterExactlyTheHeartbeatTimeout()
    {
        var participant = new RecordingParticipant();
        await using var process = new InProcessCoordinator(participants: [participant]);
        using var successor = await StandingByAsync(process, LongWindow);
        await process.Time.WaitForTimerAsync(SuccessorSession.HeartbeatTimeout, Bound);

        // The last heartbeat came at this instant of the fake clock (nothing has advanced it since the commit).
        process.Time.Advance(SuccessorSession.HeartbeatTimeout - TimeSpan.FromMilliseconds(1));
        await process.Time.WaitForTimerAsync(SuccessorSession.HeartbeatTimeout, Bound); // still pending
        Assert.Empty(process.Logger.Named("SuccessorLost"));
        process.Time.Advance(TimeSpan.FromMilliseconds(1));

        var revoked = Assert.IsType<RevokedMessage>(await successor.Channel.ReadAsync(Bound, CancellationToken.None));
        Assert.Equal("no heartbeat for 5 s", revoked.Reason);
        await SuccessorSessionTests.WaitForRoleAsync(process, ProcessRole.Owner);
        await participant.WaitForAsync("acquire Reclaimed", Bound);
        Assert.Equal("OnProbation --SuccessorLost--> Resumed", Arrows(process, Session)[^1]);
        Assert.True(process.Gate.IsOpen);
    }

    // Design section 6, "rollback racing SIGTERM" (b) on the old process's side: it had opened its gate and said
    // RollbackAccepted when the successor's Release arrived (SIGTERM to the new process, or its answer wait ended).
    [Fact]
    public async Task RollingBack_ReleaseCrossesRollbackAccepted_ClosesTheGateAndTheCopiesAgainAndExits0()
    {
        int exitCodeBefore = Environment.ExitCode;
        var participant = new RecordingParticipant();
        await using var process = new InProcessCoordinator(participants: [participant]);
        var listener = ListenOnLoopback(process);
        using var successor = await StandingByAsync(process, LongWindow);
        Assert.True(ListenerTestKit.IsListening(listener.Fd), "standing by keeps the listener copies");

        successor.Channel.Send(new RollbackRequestMessage(RollbackOrigin.Tool, "manual"));
        Assert.IsType<RollbackAcceptedMessage>(await successor.Channel.ReadAsync(Bound, CancellationToken.None));
        Assert.True(process.Gate.IsOpen);
        successor.Channel.Send(new ReleaseMessage());

        await process.Application.StopRequested.Task.WaitAsync(Bound);
        await AssertClosedAsync(successor.Channel);
        Assert.Equal("RollingBack --SuccessorReleased--> Released", Arrows(process, Session)[^1]);
        Assert.Single(process.Logger.Named("RollbackWithdrawn"));
        Assert.False(process.Gate.IsOpen, "the gate closed again");
        Assert.Equal(ListenerState.Refusing, listener.State);
        Assert.False(ListenerTestKit.IsListening(listener.Fd), "its copy of the listener is closed");
        Assert.Equal(ProcessRole.HandedOver, process.Coordinator.Role);
        Assert.Equal(new[] { "acquire FirstStart", "release" }, participant.Calls); // never took anything back
        Assert.Equal(exitCodeBefore, Environment.ExitCode);
    }

    // Design section 6, "P frozen when asked to roll back", as the old process wakes up: the request and the Release
    // that gave it up are read together, and the gate never opens.
    [Fact]
    public async Task OnProbation_RollbackRequestReadLateWithTheReleaseBehindIt_NeverOpensTheGate()
    {
        await using var process = new InProcessCoordinator();
        var listener = ListenOnLoopback(process);
        using var successor = await StandingByAsync(process, LongWindow);

        // One write: both frames are queued before the old process reads the first.
        await successor.Socket.SendAsync(
            HandoffProtocol.Encode(new RollbackRequestMessage(RollbackOrigin.Signal, "SIGUSR1")).Concat(HandoffProtocol.Encode(new ReleaseMessage())).ToArray());

        await process.Application.StopRequested.Task.WaitAsync(Bound);
        await AssertClosedAsync(successor.Channel); // no RollbackAccepted
        Assert.Equal("OnProbation --SuccessorReleased--> Released", Arrows(process, Session)[^1]);
        Assert.Empty(process.Logger.Named("RollbackAccepted"));
        Assert.DoesNotContain(process.Logger.Named("StateChanged"), e => e.Message == "ProcessRole: HandedOver --Resumed--> HandingOver");
        Assert.False(process.Gate.IsOpen);
        Assert.False(ListenerTestKit.IsListening(listener.Fd));
    }

    // The read-late rule's other branch: what is queued behind the request is only a heartbeat (the old process was
    // slow, not given up on), so the request is honoured once the queue is read.
    [Fact]
    public async Task OnProbation_RollbackRequestReadLateWithAHeartbeatBehindIt_IsAccepted()
    {
        await using var process = new InProcessCoordinator();
        using var successor = await StandingByAsync(process, LongWindow);

        await successor.Socket.SendAsync(
            HandoffProtocol.Encode(new RollbackRequestMessage(RollbackOrigin.Signal, "SIGUSR1")).Concat(HandoffProtocol.Encode(new HeartbeatMessage())).ToArray());

        Assert.IsType<RollbackAcceptedMessage>(await successor.Channel.ReadAsync(Bound, CancellationToken.None));
        Assert.True(process.Gate.IsOpen);
        Assert.Equal("OnProbation --RollbackRequested--> RollingBack", Arrows(process, Session)[^1]);
        successor.Channel.Send(new HandedBackMessage(true));
        await process.Logger.WaitForAsync(e => e.EventId.Name == "RolledBack", Bound);
        await SuccessorSessionTests.WaitForRoleAsync(process, ProcessRole.Owner);
    }

    // Design section 6, "plain SIGTERM to the new generation during probation", on the old process's side.
    [Fact]
    public async Task OnProbation_SuccessorReleases_ClosesItsCopiesAtOnceAndNeverServesAgain()
    {
        await using var process = new InProcessCoordinator();
        var listener = ListenOnLoopback(process);
        using var successor = await StandingByAsync(process, LongWindow);

        successor.Channel.Send(new ReleaseMessage());

        await process.Application.StopRequested.Task.WaitAsync(Bound);
        await AssertClosedAsync(successor.Channel); // the answer to Release: the connection closes
        Assert.Equal("OnProbation --SuccessorReleased--> Released", Arrows(process, Session)[^1]);
        Assert.False(ListenerTestKit.IsListening(listener.Fd));
        Assert.False(process.Gate.IsOpen);
        Assert.Equal(ProcessRole.HandedOver, process.Coordinator.Role);
    }

    // Design section 6, "SIGTERM to P during probation".
    [Fact]
    public async Task OnProbation_HostStopping_SendsProbationEndedNamingTheStopAndExits()
    {
        await using var process = new InProcessCoordinator();
        using var successor = await StandingByAsync(process, LongWindow);

        process.Application.BeginStopping(); // then the host's StoppingAsync and StopAsync, as on SIGTERM
        await process.Coordinator.StoppingAsync(CancellationToken.None).WaitAsync(Bound);

        var ended = Assert.IsType<ProbationEndedMessage>(await successor.Channel.ReadAsync(Bound, CancellationToken.None));
        Assert.Equal($"pid {Environment.ProcessId} is stopping", ended.Reason);
        await process.Application.StopRequested.Task.WaitAsync(Bound);
        await process.Coordinator.StopAsync(CancellationToken.None).WaitAsync(Bound);
        await AssertClosedAsync(successor.Channel); // no Revoked
        Assert.Equal("OnProbation --ProbationEnded--> Completed", Arrows(process, Session)[^1]);
        Assert.False(process.Gate.IsOpen);
        Assert.Empty(process.Logger.Named("SuccessorLost"));
        Assert.Equal(ProcessRole.HandedOver, process.Coordinator.Role);
    }

    // ---- The new process on probation (PredecessorLink); the test plays the old one. ----

    [Fact]
    public async Task AwaitingCommit_CommittedWithProbationAgreed_OnProbationAndTheStatusSaysUntilWhen()
    {
        var participant = new RecordingParticipant();
        await using var process = new InProcessCoordinator(participants: [participant]);
        using var predecessor = new FakePredecessor(process.SocketPath);
        var started = process.Time.GetUtcNow();
        using var channel = await OnProbationAsync(process, predecessor, LongWindow);

        Assert.Equal("AwaitingCommit --CommittedOnProbation--> OnProbation", Arrows(process, Link)[^1]);
        Assert.Equal(ProcessRole.Owner, process.Coordinator.Role);
        Assert.True(process.Gate.IsOpen);
        Assert.Single(process.Logger.Named("ProbationStarted"));
        await participant.WaitForAsync("acquire PredecessorReleased", Bound);

        var (status, probation) = await StatusAsync(process);
        Assert.Equal(ServingState.Serving, status.State);
        Assert.Equal(new ProbationStatusMessage(ProbationState.OnProbation, Environment.ProcessId, (started + LongWindow).ToUnixTimeMilliseconds(), ""), probation);
    }

    [Fact]
    public async Task OnProbation_RollbackCommandThenRollbackAccepted_HandsBackAndExits81()
    {
        var participant = new RecordingParticipant();
        await using var process = new InProcessCoordinator(participants: [participant]);
        using var recorder = new MeasurementRecorder(process.MeterFactory);
        using var predecessor = new FakePredecessor(process.SocketPath);
        using var channel = await OnProbationAsync(process, predecessor, LongWindow);
        await participant.WaitForAsync("acquire PredecessorReleased", Bound);

        using var tool = await RollbackCommandAsync(process, "bad release");
        var request = Assert.IsType<RollbackRequestMessage>(await ReadSkippingHeartbeatsAsync(channel));
        Assert.Equal(RollbackOrigin.Tool, request.Origin);
        Assert.Equal($"zerodowntime rollback (pid {Environment.ProcessId}): bad release", request.Reason);
        Assert.Equal(ProcessRole.HandingBack, process.Coordinator.Role);
        Assert.True(process.Gate.IsOpen, "the gate stays open until the predecessor has opened its own");
        var (_, rollingBack) = await StatusAsync(process);
        Assert.Equal(ProbationState.RollingBack, rollingBack.State);

        channel.Send(new RollbackAcceptedMessage());

        var handedBack = Assert.IsType<HandedBackMessage>(await ReadSkippingHeartbeatsAsync(channel));
        Assert.True(handedBack.AllReleased);
        Assert.Equal(new[] { "acquire PredecessorReleased", "release" }, participant.Calls); // released before HandedBack
        var result = Assert.IsType<RollbackResultMessage>(await tool.ReadAsync(Bound, CancellationToken.None));
        Assert.Equal(RollbackOutcome.RolledBack, result.Outcome);
        Assert.Equal(Environment.ProcessId, result.ServingPid); // the predecessor's pid (the test's)
        Assert.Equal(0L, result.SwitchMilliseconds); // on the fake clock, which nothing advanced

        // It drains, then exits only once the predecessor serves the handoff socket's path again (after its MAINPID).
        await process.Time.WaitForTimerAsync(TimeSpan.FromMilliseconds(10), Bound); // looking at the path
        Assert.False(process.Application.StopRequested.Task.IsCompleted, "the path still names this process's socket");
        using var served = process.ServePathAsSuccessor(); // the predecessor's socket, renamed over the path
        process.Time.Advance(TimeSpan.FromMilliseconds(10));
        await process.Application.StopRequested.Task.WaitAsync(Bound);
        Assert.Equal(ZeroDowntimeExitCodes.RolledBack, Environment.ExitCode);
        Assert.Equal(81, ZeroDowntimeExitCodes.RolledBack);
        Assert.Equal(ProcessRole.Leaving, process.Coordinator.Role);
        Assert.False(process.Gate.IsOpen);
        Assert.True(process.Lifetime.IsDraining);
        Assert.Equal(new[] { "OnProbation --RollbackRequested--> RollingBack", "RollingBack --RollbackAccepted--> HandedBack" }, Arrows(process, Link)[^2..]);
        Assert.Contains(recorder.Of("zerodowntime.handoffs"), m => Equals(m.Tags[ZeroDowntimeMetrics.RoleTag], HandoffTags.Successor)
            && Equals(m.Tags[ZeroDowntimeMetrics.OutcomeTag], "rolled-back"));
        Assert.Empty(await ReadUntilClosedAsync(channel)); // nothing after HandedBack but heartbeats, then the end

        // Design section 6, "rollback racing SIGTERM" (c): a SIGTERM after HandedBack finds no arrow; it drains and exits 81.
        await process.Coordinator.StoppingAsync(CancellationToken.None).WaitAsync(Bound);
        Assert.Equal(ProcessRole.Leaving, process.Coordinator.Role);
        Assert.Equal(ZeroDowntimeExitCodes.RolledBack, Environment.ExitCode);
    }

    [Fact]
    public async Task RollingBack_ProbationEndedCrossesTheRequest_RefusedAndServesOnAsOwner()
    {
        await using var process = new InProcessCoordinator();
        using var predecessor = new FakePredecessor(process.SocketPath);
        using var channel = await OnProbationAsync(process, predecessor, LongWindow);

        using var tool = await RollbackRequestedAsync(process, channel);
        channel.Send(new ProbationEndedMessage("the probation window of 00:05:00 ended"));

        var result = Assert.IsType<RollbackResultMessage>(await tool.ReadAsync(Bound, CancellationToken.None));
        Assert.Equal(RollbackOutcome.Refused, result.Outcome);
        Assert.Contains("ended its probation first", result.Reason, StringComparison.Ordinal);
        Assert.Equal(-1L, result.SwitchMilliseconds);
        await SuccessorSessionTests.WaitForRoleAsync(process, ProcessRole.Owner);
        Assert.Equal("RollingBack --ProbationEnded--> Owner", Arrows(process, Link)[^1]);
        Assert.True(process.Gate.IsOpen);
        Assert.False(process.Application.StopRequested.Task.IsCompleted);
        var (_, probation) = await StatusAsync(process);
        Assert.Equal(ProbationState.None, probation.State);

        // It still heartbeats to the predecessor, which finishes and exits, and it asks nothing more of it.
        await process.Time.WaitForTimerAsync(PredecessorLink.HeartbeatInterval, Bound);
        process.Time.Advance(PredecessorLink.HeartbeatInterval);
        Assert.IsType<HeartbeatMessage>(await channel.ReadAsync(Bound, CancellationToken.None));
    }

    // Design section 6, "old process killed during probation".
    [Fact]
    public async Task OnProbation_PredecessorClosesTheConnection_CarriesOnAloneWithoutARelease()
    {
        await using var process = new InProcessCoordinator();
        using var predecessor = new FakePredecessor(process.SocketPath);
        var (channel, socket) = await BeginOnProbationAsync(process, predecessor, LongWindow);
        using var disposeChannel = channel;
        await CommitOnProbationAsync(process, channel);

        socket.Shutdown(SocketShutdown.Send); // the predecessor is gone: end of stream

        Assert.Empty(await ReadUntilClosedAsync(channel)); // heartbeats, then the end: no Release, nothing else
        await WaitForArrowAsync(process, Link, "OnProbation --PredecessorExited--> Alone");
        Assert.Equal(ProcessRole.Owner, process.Coordinator.Role);
        Assert.True(process.Gate.IsOpen);
        var (_, probation) = await StatusAsync(process);
        Assert.Equal(ProbationState.None, probation.State);
        using var tool = await RollbackCommandAsync(process, "");
        var result = Assert.IsType<RollbackResultMessage>(await tool.ReadAsync(Bound, CancellationToken.None));
        Assert.Equal(RollbackOutcome.Refused, result.Outcome);
        Assert.Contains("no generation on probation", result.Reason, StringComparison.Ordinal);
    }

    // Design section 6, "P frozen when asked to roll back", on the new process's side.
    [Fact]
    public async Task RollingBack_NoAnswerWithin5Seconds_ReleasesThePredecessorAndFails()
    {
        await using var process = new InProcessCoordinator();
        using var predecessor = new FakePredecessor(process.SocketPath);
        using var channel = await OnProbationAsync(process, predecessor, LongWindow);
        using var tool = await RollbackRequestedAsync(process, channel);
        await process.Time.WaitForTimerAsync(PredecessorLink.ReadTimeout, Bound);

        process.Time.Advance(PredecessorLink.ReadTimeout);

        var result = Assert.IsType<RollbackResultMessage>(await tool.ReadAsync(Bound, CancellationToken.None));
        Assert.Equal(RollbackOutcome.Failed, result.Outcome);
        Assert.Equal(Environment.ProcessId, result.ServingPid);
        Assert.Contains("did not answer within 5 s; it was released", result.Reason, StringComparison.Ordinal);
        Assert.IsType<ReleaseMessage>(await ReadSkippingHeartbeatsAsync(channel));
        channel.Dispose(); // the predecessor's answer to the Release
        Assert.Single(process.Logger.Named("RollbackGivenUp"));
        await WaitForArrowAsync(process, Link, "RollingBack --ReleasedPredecessor--> Released");
        Assert.Equal(ProcessRole.Owner, process.Coordinator.Role);
        Assert.True(process.Gate.IsOpen);
        Assert.False(process.Application.StopRequested.Task.IsCompleted);
    }

    [Fact]
    public async Task RollingBack_SecondRequest_IsRefusedAndChangesNothing()
    {
        await using var process = new InProcessCoordinator();
        using var predecessor = new FakePredecessor(process.SocketPath);
        using var channel = await OnProbationAsync(process, predecessor, LongWindow);
        using var first = await RollbackRequestedAsync(process, channel, "first");

        using (var second = await RollbackCommandAsync(process, "second"))
        {
            var refused = Assert.IsType<RollbackResultMessage>(await second.ReadAsync(Bound, CancellationToken.None));
            Assert.Equal(RollbackOutcome.Refused, refused.Outcome);
            Assert.Equal($"a rollback to pid {Environment.ProcessId} is in progress", refused.Reason);
        }

        Assert.Equal(ProcessRole.HandingBack, process.Coordinator.Role);
        Assert.Equal("OnProbation --RollbackRequested--> RollingBack", Arrows(process, Link)[^1]);
        Assert.Single(process.Logger.Named("RollbackRequested"));
        Assert.False(channel.HasPendingData, "one RollbackRequest went out");

        // The first goes on as if the second had not come.
        using var served = ServePathAsTheOldProcess(process);
        channel.Send(new RollbackAcceptedMessage());
        Assert.IsType<HandedBackMessage>(await ReadSkippingHeartbeatsAsync(channel));
        Assert.Equal(RollbackOutcome.RolledBack, Assert.IsType<RollbackResultMessage>(await first.ReadAsync(Bound, CancellationToken.None)).Outcome);
        await process.Application.StopRequested.Task.WaitAsync(Bound); // its exit code is set before the test ends
    }

    [Fact]
    public async Task Owner_RollbackCommandWithoutProbation_IsRefusedAndNothingGoesToThePredecessor()
    {
        await using var process = new InProcessCoordinator(); // Probation:Duration 0: it asks for none
        using var predecessor = new FakePredecessor(process.SocketPath);
        var starting = process.Coordinator.StartingAsync(CancellationToken.None);
        using var channel = await predecessor.AcceptAsync();
        var hello = Assert.IsType<HelloMessage>(await channel.ReadAsync(Bound, CancellationToken.None));
        Assert.Equal(HandoffFeatures.Probation, hello.Features); // it knows probation, and asks for 0 ms of it
        Assert.Equal(0L, hello.ProbationMilliseconds);
        channel.Send(new WelcomeMessage(hello.Version, Environment.ProcessId, [], 1, 0, HandoffFeatures.Probation));
        await starting.WaitAsync(Bound);
        await CommitAsync(process, channel);
        Assert.Equal("AwaitingCommit --Committed--> Owner", Arrows(process, Link)[^1]);

        using var tool = await RollbackCommandAsync(process, "");
        var result = Assert.IsType<RollbackResultMessage>(await tool.ReadAsync(Bound, CancellationToken.None));

        Assert.Equal(RollbackOutcome.Refused, result.Outcome);
        Assert.Equal($"no generation on probation: pid {Environment.ProcessId} did not take over on probation", result.Reason);
        Assert.Equal(ProcessRole.Owner, process.Coordinator.Role);
        Assert.Empty(process.Logger.Named("RollbackRequested"));
        Assert.False(channel.HasPendingData);
    }

    [Fact]
    public async Task Probing_EarlierBuildWelcomesWithoutFeatures_PlainCommitAndNoProbation()
    {
        await using var process = new InProcessCoordinator();
        process.Options.Probation = ProbationSettings.Default with { Duration = LongWindow };
        using var predecessor = new FakePredecessor(process.SocketPath);
        var starting = process.Coordinator.StartingAsync(CancellationToken.None);
        using var channel = await predecessor.AcceptAsync();
        var hello = Assert.IsType<HelloMessage>(await channel.ReadAsync(Bound, CancellationToken.None));
        Assert.Equal(HandoffFeatures.Probation, hello.Features);
        Assert.Equal((long)LongWindow.TotalMilliseconds, hello.ProbationMilliseconds);
        channel.Send(new WelcomeMessage(hello.Version, Environment.ProcessId, [], 1, 0)); // an earlier build's Welcome
        await starting.WaitAsync(Bound);
        Assert.Single(process.Logger.Named("ProbationNotAgreed"));

        await CommitAsync(process, channel);

        Assert.Equal("AwaitingCommit --Committed--> Owner", Arrows(process, Link)[^1]);
        Assert.Empty(process.Logger.Named("ProbationStarted"));
        var (_, probation) = await StatusAsync(process);
        Assert.Equal(ProbationState.None, probation.State);
        using var tool = await RollbackCommandAsync(process, "");
        Assert.Equal(RollbackOutcome.Refused, Assert.IsType<RollbackResultMessage>(await tool.ReadAsync(Bound, CancellationToken.None)).Outcome);
        Assert.False(channel.HasPendingData, "nothing new goes to an earlier build");
    }

    // Design section 6, "plain SIGTERM to the new generation during probation", on the new process's side.
    [Fact]
    public async Task OnProbation_PlainShutdown_ReleasesThePredecessorFirst()
    {
        await using var process = new InProcessCoordinator();
        using var predecessor = new FakePredecessor(process.SocketPath);
        using var channel = await OnProbationAsync(process, predecessor, LongWindow);

        var stopping = process.Coordinator.StoppingAsync(CancellationToken.None);

        Assert.IsType<ReleaseMessage>(await ReadSkippingHeartbeatsAsync(channel));
        channel.Dispose();
        await stopping.WaitAsync(Bound);
        Assert.Equal("OnProbation --ReleasedPredecessor--> Released", Arrows(process, Link)[^1]);
        Assert.Equal(ProcessRole.ShuttingDown, process.Coordinator.Role);
        Assert.Empty(process.Logger.Named("RollbackRequested"));
    }

    // Design section 6, "rollback racing SIGTERM" (a): the shutdown began first; the rollback is refused and nothing goes
    // to the old process but the Release.
    [Fact]
    public async Task ShuttingDown_RollbackCommand_IsRefusedAndOnlyTheReleaseGoesToThePredecessor()
    {
        await using var process = new InProcessCoordinator();
        using var predecessor = new FakePredecessor(process.SocketPath);
        using var channel = await OnProbationAsync(process, predecessor, LongWindow);
        var stopping = process.Coordinator.StoppingAsync(CancellationToken.None);
        Assert.IsType<ReleaseMessage>(await ReadSkippingHeartbeatsAsync(channel)); // its answer is held back: the handoff socket still answers

        using (var tool = await RollbackCommandAsync(process, ""))
        {
            var result = Assert.IsType<RollbackResultMessage>(await tool.ReadAsync(Bound, CancellationToken.None));
            Assert.Equal(RollbackOutcome.Refused, result.Outcome);
            Assert.Contains("no generation on probation", result.Reason, StringComparison.Ordinal);
        }

        Assert.Equal(ProcessRole.ShuttingDown, process.Coordinator.Role);
        Assert.Empty(process.Logger.Named("RollbackRequested"));
        Assert.False(channel.HasPendingData, "no RollbackRequest after the Release (the heartbeats ended before it)");
        channel.Dispose(); // the answer to the Release
        await stopping.WaitAsync(Bound);
    }

    // Design section 6, "rollback racing SIGTERM" (b): the rollback began, the shutdown came before RollbackAccepted.
    [Fact]
    public async Task RollingBack_ShutdownBeforeRollbackAccepted_GivesTheRollbackUpAndReleasesThePredecessor()
    {
        int exitCodeBefore = Environment.ExitCode;
        await using var process = new InProcessCoordinator();
        using var predecessor = new FakePredecessor(process.SocketPath);
        using var channel = await OnProbationAsync(process, predecessor, LongWindow);
        using var tool = await RollbackRequestedAsync(process, channel);

        var stopping = process.Coordinator.StoppingAsync(CancellationToken.None);

        var result = Assert.IsType<RollbackResultMessage>(await tool.ReadAsync(Bound, CancellationToken.None));
        Assert.Equal(RollbackOutcome.Refused, result.Outcome);
        Assert.Contains("shutting down", result.Reason, StringComparison.Ordinal);
        Assert.IsType<ReleaseMessage>(await ReadSkippingHeartbeatsAsync(channel));
        channel.Send(new RollbackAcceptedMessage()); // crossed the Release: too late, no arrow
        channel.Dispose();
        await stopping.WaitAsync(Bound);
        Assert.Equal("RollingBack --ReleasedPredecessor--> Released", Arrows(process, Link)[^1]);
        Assert.Contains(process.Logger.Named("StateChanged"), e => e.Message == "ProcessRole: HandingBack --ShutdownBegan--> ShuttingDown");
        Assert.Equal(ProcessRole.ShuttingDown, process.Coordinator.Role);
        Assert.Equal(exitCodeBefore, Environment.ExitCode); // not 81: it stops as the owner
    }

    // Design section 6, "a participant overruns its release at the rollback".
    [Fact]
    public async Task RollingBack_ParticipantOverrunsItsRelease_HandedBackSaysNotAllReleased()
    {
        var participant = new GatedParticipant();
        await using var process = new InProcessCoordinator(participants: [participant]);
        using var predecessor = new FakePredecessor(process.SocketPath);
        using var channel = await OnProbationAsync(process, predecessor, LongWindow);
        await participant.Acquired.Task.WaitAsync(Bound);
        using var tool = await RollbackRequestedAsync(process, channel);
        using var served = ServePathAsTheOldProcess(process);
        channel.Send(new RollbackAcceptedMessage());
        await participant.Releasing.Task.WaitAsync(Bound);
        await process.Time.WaitForTimerAsync(ParticipantRunner.Timeout, Bound);

        process.Time.Advance(ParticipantRunner.Timeout); // the release overran its 5 s
        await process.Logger.WaitForAsync(e => e.EventId.Name == "ParticipantOverran", Bound);
        Assert.Empty(process.Logger.Named("HandedBack")); // not while the release still runs
        participant.FinishRelease.SetResult();

        var handedBack = Assert.IsType<HandedBackMessage>(await ReadSkippingHeartbeatsAsync(channel));
        Assert.False(handedBack.AllReleased);
        Assert.Equal(RollbackOutcome.RolledBack, Assert.IsType<RollbackResultMessage>(await tool.ReadAsync(Bound, CancellationToken.None)).Outcome);
        await process.Application.StopRequested.Task.WaitAsync(Bound);
        Assert.Equal(ZeroDowntimeExitCodes.RolledBack, Environment.ExitCode);
    }

    // Design section 6, "SIGTERM to P during probation", on the new process's side, and "rollback after the window"
    // once it has read ProbationEnded: it refuses by itself and sends nothing.
    [Fact]
    public async Task OnProbation_ProbationEnded_ServesOnAndRefusesARollbackByItself()
    {
        await using var process = new InProcessCoordinator();
        using var predecessor = new FakePredecessor(process.SocketPath);
        using var channel = await OnProbationAsync(process, predecessor, LongWindow);

        channel.Send(new ProbationEndedMessage("pid 1234 is stopping"));

        await WaitForArrowAsync(process, Link, "OnProbation --ProbationEnded--> Owner");
        await process.Logger.WaitForAsync(e => e.EventId.Name == "ProbationEndedForSuccessor", Bound); // logged after the arrow
        Assert.Equal(ProcessRole.Owner, process.Coordinator.Role);
        var (_, probation) = await StatusAsync(process);
        Assert.Equal(ProbationState.None, probation.State);
        using var tool = await RollbackCommandAsync(process, "");
        var result = Assert.IsType<RollbackResultMessage>(await tool.ReadAsync(Bound, CancellationToken.None));
        Assert.Equal(RollbackOutcome.Refused, result.Outcome);
        Assert.Equal($"no generation on probation: pid {Environment.ProcessId} no longer stands by (Owner)", result.Reason);
        Assert.Empty(process.Logger.Named("RollbackRequested"));

        // Heartbeats go on until the old process exits; nothing else goes to it.
        await process.Time.WaitForTimerAsync(PredecessorLink.HeartbeatInterval, Bound);
        process.Time.Advance(PredecessorLink.HeartbeatInterval);
        Assert.IsType<HeartbeatMessage>(await channel.ReadAsync(Bound, CancellationToken.None));
    }

    [Fact]
    public async Task OnProbation_Revoked_LeavesWith77()
    {
        await using var process = new InProcessCoordinator();
        using var predecessor = new FakePredecessor(process.SocketPath);
        using var channel = await OnProbationAsync(process, predecessor, LongWindow);

        channel.Send(new RevokedMessage("no heartbeat for 5 s"));

        await process.Application.StopRequested.Task.WaitAsync(Bound);
        Assert.Equal(ZeroDowntimeExitCodes.HandoffAbandoned, Environment.ExitCode);
        Assert.Equal("OnProbation --Revoked--> Abandoned", Arrows(process, Link)[^1]);
        Assert.Equal(ProcessRole.Leaving, process.Coordinator.Role);
        Assert.False(process.Gate.IsOpen);
    }

    // Design section 3.3, "RollingBack --Revoked--> Abandoned": the old process had taken this one for lost, and its
    // Revoked crossed the request.
    [Fact]
    public async Task RollingBack_RevokedCrossesTheRequest_FailsAndLeavesWith77()
    {
        await using var process = new InProcessCoordinator();
        using var predecessor = new FakePredecessor(process.SocketPath);
        using var channel = await OnProbationAsync(process, predecessor, LongWindow);
        using var tool = await RollbackRequestedAsync(process, channel);

        channel.Send(new RevokedMessage("no heartbeat for 5 s"));

        var result = Assert.IsType<RollbackResultMessage>(await tool.ReadAsync(Bound, CancellationToken.None));
        Assert.Equal(RollbackOutcome.Failed, result.Outcome);
        Assert.Contains("serves again", result.Reason, StringComparison.Ordinal);
        await process.Application.StopRequested.Task.WaitAsync(Bound);
        Assert.Equal(ZeroDowntimeExitCodes.HandoffAbandoned, Environment.ExitCode);
        Assert.Equal("RollingBack --Revoked--> Abandoned", Arrows(process, Link)[^1]);
        Assert.Contains(process.Logger.Named("StateChanged"), e => e.Message == "ProcessRole: HandingBack --Revoked--> Leaving");
    }

    // Design section 6, "a further upgrade during probation": a successor of the new process greets it; the old one
    // is released first (its probation ends), and then the new one may stand by in turn for the newest.
    [Fact]
    public async Task OnProbation_ItsOwnSuccessorGreets_ReleasesThePredecessorFirstThenStandsByInTurn()
    {
        await using var process = new InProcessCoordinator();
        using var predecessor = new FakePredecessor(process.SocketPath);
        using var channel = await OnProbationAsync(process, predecessor, LongWindow);

        var newest = await ConnectSocketAsync(process);
        using var newestChannel = new HandoffChannel(newest);
        var greeting = GreetOnProbationUntilCommittedAsync(process, newestChannel, ShortWindow, []);

        Assert.IsType<ReleaseMessage>(await ReadSkippingHeartbeatsAsync(channel));
        Assert.False(greeting.IsCompleted, "the listeners go out only once the old process has answered the Release");
        channel.Dispose(); // its answer: the connection closes
        await greeting.WaitAsync(Bound);

        Assert.Contains("OnProbation --ReleasedPredecessor--> Released", Arrows(process, Link));
        using var served = process.ServePathAsSuccessor();
        newestChannel.Send(new HeartbeatMessage());
        await WaitForArrowAsync(process, Session, "DrainingOnProbation --Drained--> OnProbation");
        Assert.Equal(ProcessRole.HandedOver, process.Coordinator.Role);
        Assert.False(process.Gate.IsOpen);

        newestChannel.Send(new ReleaseMessage());
        await process.Application.StopRequested.Task.WaitAsync(Bound);
    }

    // Issue 20 item 3: the 5xx ratio above MaxErrorRatio with MinRequests responses rolls back by itself, at the first
    // evaluation (every 250 ms on the process's clock), with the reading as the reason.
    [Fact]
    public async Task OnProbation_ErrorRatioAboveTheLimit_RollsBackByItselfAtTheNextEvaluation()
    {
        await using var process = new InProcessCoordinator(watchProbation: true);
        using var predecessor = new FakePredecessor(process.SocketPath);
        using var channel = await OnProbationAsync(process, predecessor, LongWindow);
        var evaluation = TimeSpan.FromMilliseconds(250);
        await process.Time.WaitForTimerAsync(evaluation, Bound); // the monitor is in place once its evaluation timer is
        var monitor = process.ProbationWatch!.ErrorRatio!;
        int minRequests = process.Options.Probation.MinRequests;
        for (int i = 0; i < minRequests; i++)
        {
            monitor.Record(i % 2 == 0 ? 500 : 200, isWarmup: false);
        }

        for (int i = 0; i < 100; i++)
        {
            monitor.Record(500, isWarmup: true); // warm-up requests do not count
        }

        process.Time.Advance(evaluation - TimeSpan.FromMilliseconds(1));
        await process.Time.WaitForTimerAsync(evaluation, Bound); // not evaluated yet
        Assert.Empty(process.Logger.Named("RollbackErrorRatio"));
        process.Time.Advance(TimeSpan.FromMilliseconds(1));

        var request = Assert.IsType<RollbackRequestMessage>(await ReadSkippingHeartbeatsAsync(channel));
        Assert.Equal(RollbackOrigin.ErrorRatio, request.Origin);
        Assert.StartsWith($"5xx ratio 0.500 ({minRequests / 2} of {minRequests} responses", request.Reason, StringComparison.Ordinal);
        var logged = Assert.Single(process.Logger.Named("RollbackErrorRatio"));
        Assert.Equal((long)minRequests, Convert.ToInt64(logged.Fields["Requests"], System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal(ProcessRole.HandingBack, process.Coordinator.Role);

        using var served = ServePathAsTheOldProcess(process);
        channel.Send(new RollbackAcceptedMessage());
        Assert.IsType<HandedBackMessage>(await ReadSkippingHeartbeatsAsync(channel));
        await process.Application.StopRequested.Task.WaitAsync(Bound);
        Assert.Equal(ZeroDowntimeExitCodes.RolledBack, Environment.ExitCode);
        Assert.Null(process.ProbationWatch.ErrorRatio); // the request path records nothing any more
    }

    // Design section 4: from RollbackBegan until the old process serves the path again, a newcomer that reaches the new
    // process is told "already handed over" (it retries, and then finds whoever serves), never given the slot.
    [Fact]
    public async Task RollingBack_NewcomerGreets_IsRefusedAsAlreadyHandedOverAndNothingChanges()
    {
        await using var process = new InProcessCoordinator();
        using var predecessor = new FakePredecessor(process.SocketPath);
        using var channel = await OnProbationAsync(process, predecessor, LongWindow);
        using var tool = await RollbackRequestedAsync(process, channel);

        using (var newcomer = await process.ConnectAsync())
        {
            newcomer.Send(new HelloMessage(HandoffProtocol.Version, Environment.ProcessId, process.Options.ApplicationId!, HandoffFeatures.Probation, 60_000));
            var refused = Assert.IsType<RefusedMessage>(await newcomer.ReadAsync(Bound, CancellationToken.None));
            Assert.Equal(RefusalReason.AlreadyHandedOver, refused.Reason);
            Assert.Equal($"pid {Environment.ProcessId} is rolling back to its predecessor", refused.Detail);
        }

        Assert.Equal(ProcessRole.HandingBack, process.Coordinator.Role);
        Assert.False(channel.HasPendingData, "no Release: the predecessor still stands by");
        channel.Send(new ProbationEndedMessage("the probation window of 00:05:00 ended"));
        Assert.Equal(RollbackOutcome.Refused, Assert.IsType<RollbackResultMessage>(await tool.ReadAsync(Bound, CancellationToken.None)).Outcome);
    }

    // ---- Helpers ----

    /// <summary>The arrows that <paramref name="machine"/> took so far, in order, as "From --Trigger--> To".</summary>
    private static string[] Arrows(InProcessCoordinator process, string machine) => process.Logger.Named("StateChanged")
        .Select(e => e.Message)
        .Where(m => m.StartsWith(machine + ": ", StringComparison.Ordinal))
        .Select(m => m[(machine.Length + 2)..])
        .ToArray();

    private static Task<LogEntry> WaitForArrowAsync(InProcessCoordinator process, string machine, string arrow) =>
        process.Logger.WaitForAsync(e => e.EventId.Name == "StateChanged" && e.Message == $"{machine}: {arrow}", Bound);

    private static async Task AssertClosedAsync(HandoffChannel channel)
    {
        var closed = await Assert.ThrowsAsync<HandoffChannelException>(() => channel.ReadAsync(Bound, CancellationToken.None));
        Assert.Equal(HandoffChannelError.Closed, closed.Error);
    }

    /// <summary>The frames other than heartbeats that arrive until the connection closes.</summary>
    // Found by review: a HandedBack read while this process still waited for its successor to serve the path held the
    // rollback until HandoffTimeout (the path wait only ended on a lost successor).
    [Fact]
    public async Task DrainingOnProbation_HandedBackWhileWaitingForThePath_CompletesTheRollbackAtOnce()
    {
        var participant = new RecordingParticipant();
        await using var process = new InProcessCoordinator(participants: [participant]);
        await process.StartAloneAsync();
        using var successor = await CommittedOnProbationAsync(process, LongWindow);
        successor.Send(new HeartbeatMessage()); // confirmed; the path still names the old process's socket
        await process.Time.WaitForTimerAsync(TimeSpan.FromMilliseconds(10), Bound); // looking at the path
        successor.Send(new RollbackRequestMessage(RollbackOrigin.Signal, "SIGUSR1"));
        Assert.IsType<RollbackAcceptedMessage>(await successor.ReadAsync(Bound, CancellationToken.None));
        successor.Send(new HandedBackMessage(true));
        await WaitForArrowAsync(process, Session, "RollingBack --HandedBack--> RolledBack");
        for (int i = 0; i < 5; i++)
        {
            process.Time.Advance(TimeSpan.FromMilliseconds(10));
        }

        await process.Logger.WaitForAsync(e => e.EventId.Name == "RolledBack", Bound);
        await participant.WaitForAsync("acquire RolledBack", Bound);
        await SuccessorSessionTests.WaitForRoleAsync(process, ProcessRole.Owner);
    }

    // Found by review: a SIGTERM to the old process after RollbackAccepted took the end of its watch for a lost
    // successor: it sent Revoked("unknown"), reopened its gate after the shutdown's drain closed it, and bound the
    // handoff socket again after StopAsync. The service is being stopped: it must do none of that.
    [Fact]
    public async Task RollingBack_OldProcessStopped_NeitherRevokesNorServesAgain()
    {
        using var notify = new NotifySocketListener();
        await using var process = new InProcessCoordinator(notifySocketPath: notify.Path);
        using var successor = await StandingByAsync(process, LongWindow);
        successor.Channel.Send(new RollbackRequestMessage(RollbackOrigin.Tool, "manual"));
        Assert.IsType<RollbackAcceptedMessage>(await successor.Channel.ReadAsync(Bound, CancellationToken.None));
        int notifiedBefore = notify.ReceivedSoFar().Count;
        process.Application.BeginStopping();
        await process.Coordinator.StoppingAsync(CancellationToken.None).WaitAsync(Bound);
        await process.Coordinator.StopAsync(CancellationToken.None).WaitAsync(Bound);
        var frames = await ReadUntilClosedAsync(successor.Channel);
        Assert.Equal(Array.Empty<string>(), frames.Select(f => f.ToString()).ToArray());
        Assert.Empty(process.Logger.Named("SuccessorLost"));
        Assert.False(process.Gate.IsOpen);
        Assert.Single(process.Logger.Named("ServingHandoffSocket"));
        Assert.Equal(Array.Empty<string>(), notify.ReceivedSoFar().Skip(notifiedBefore).Where(m => !m.StartsWith("STATUS=", StringComparison.Ordinal)).ToArray());
    }

    // Found by review: the old process killed right after RollbackAccepted. The new one had closed its gate and reported
    // "rolled back" naming the dead pid, then exited 81: nobody served. It must say the rollback failed and serve again.
    [Fact]
    public async Task HandedBack_PredecessorDiedAfterRollbackAccepted_ServesAgainAndSaysTheRollbackFailed()
    {
        int exitCodeBefore = Environment.ExitCode;
        var participant = new HeldReleaseParticipant();
        await using var process = new InProcessCoordinator(participants: [participant]);
        using var predecessor = new FakePredecessor(process.SocketPath);
        using var channel = await OnProbationAsync(process, predecessor, LongWindow);
        using var tool = await RollbackCommandAsync(process, "");
        Assert.IsType<RollbackRequestMessage>(await ReadSkippingHeartbeatsAsync(channel));
        channel.Send(new RollbackAcceptedMessage());
        await participant.Releasing.Task.WaitAsync(Bound); // the gate is closed, HandedBack not sent yet
        channel.Dispose(); // the old process is killed now
        participant.Release.SetResult();
        var result = Assert.IsType<RollbackResultMessage>(await tool.ReadAsync(Bound, CancellationToken.None));
        Assert.Equal(RollbackOutcome.Failed, result.Outcome);
        Assert.Equal(Environment.ProcessId, result.ServingPid);
        await SuccessorSessionTests.WaitForRoleAsync(process, ProcessRole.Owner);
        Assert.True(process.Gate.IsOpen);
        Assert.Equal(exitCodeBefore, Environment.ExitCode);
    }

    /// <summary>A participant whose release waits until the test lets it go, so that the test can act at that step.</summary>
    private sealed class HeldReleaseParticipant : IHandoffParticipant
    {
        public TaskCompletionSource Releasing { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public TaskCompletionSource Release { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Task AcquireAsync(HandoffAcquireReason reason, CancellationToken cancellationToken) => Task.CompletedTask;

        public Task ReleaseAsync(CancellationToken cancellationToken)
        {
            Releasing.TrySetResult();
            return Release.Task;
        }

        public Task AbandonAsync(string reason, CancellationToken cancellationToken) => Task.CompletedTask;
    }

    private static async Task<List<HandoffMessage>> ReadUntilClosedAsync(HandoffChannel channel)
    {
        var others = new List<HandoffMessage>();
        while (true)
        {
            HandoffMessage message;
            try
            {
                message = await channel.ReadAsync(Bound, CancellationToken.None);
            }
            catch (HandoffChannelException ex) when (ex.Error == HandoffChannelError.Closed)
            {
                return others;
            }

            if (message is not HeartbeatMessage)
            {
                others.Add(message);
            }
        }
    }

    private static async Task<HandoffMessage> ReadSkippingHeartbeatsAsync(HandoffChannel channel)
    {
        HandoffMessage message;
        do
        {
            message = await channel.ReadAsync(Bound, CancellationToken.None);
        }
        while (message is HeartbeatMessage);

        return message;
    }

    /// <summary>What `zerodowntime status` reads: Status, then (from this build) ProbationStatus.</summary>
    private static async Task<(StatusMessage Status, ProbationStatusMessage Probation)> StatusAsync(InProcessCoordinator process)
    {
        using var tool = await process.ConnectAsync();
        tool.Send(new StatusRequestMessage(HandoffProtocol.Version));
        var status = Assert.IsType<StatusMessage>(await tool.ReadAsync(Bound, CancellationToken.None));
        var probation = Assert.IsType<ProbationStatusMessage>(await tool.ReadAsync(Bound, CancellationToken.None));
        return (status, probation);
    }

    /// <summary>What `zerodowntime rollback` sends; the caller reads the RollbackResult when it is due.</summary>
    private static async Task<HandoffChannel> RollbackCommandAsync(InProcessCoordinator process, string note)
    {
        var tool = await process.ConnectAsync();
        tool.Send(new RollbackCommandMessage(HandoffProtocol.Version, note));
        return tool;
    }

    /// <summary>
    /// The old process's handoff socket renamed over the path, which it does right after HandedBack: done before the
    /// test accepts a rollback, the rolled-back process finds the path served at once and exits without a look at the
    /// clock (<see cref="OnProbation_RollbackCommandThenRollbackAccepted_HandsBackAndExits81"/> shows the wait).
    /// </summary>
    private static Socket ServePathAsTheOldProcess(InProcessCoordinator process) => process.ServePathAsSuccessor();

    /// <summary>
    /// `zerodowntime rollback` to the process on probation, until its RollbackRequest is on the wire and the request
    /// step is over. The frame goes out before the log line (the switch waits for nothing), so a test that counts the
    /// line right after reading the frame would race the process: it waits for the line too.
    /// </summary>
    private static async Task<HandoffChannel> RollbackRequestedAsync(InProcessCoordinator process, HandoffChannel predecessor, string note = "")
    {
        var tool = await RollbackCommandAsync(process, note);
        Assert.IsType<RollbackRequestMessage>(await ReadSkippingHeartbeatsAsync(predecessor));
        await process.Logger.WaitForAsync(e => e.EventId.Name == "RollbackRequested", Bound);
        return tool;
    }

    /// <summary>A listener of the old process, bound before it starts (it goes to the successor with the Welcome).</summary>
    private static ListenerEntry ListenOnLoopback(InProcessCoordinator process)
    {
        var endPoint = new IPEndPoint(IPAddress.Loopback, 0);
        return process.Registry.Acquire(endPoint, ListenerKey.For(endPoint)!, new SocketTransportOptions());
    }

    private static int PlainV2WelcomeLength() =>
        HandoffProtocol.Encode(new WelcomeMessage(HandoffProtocol.Version, Environment.ProcessId, [], 1, 1)).Length - HandoffProtocol.HeaderLength;

    private static async Task<Socket> ConnectSocketAsync(InProcessCoordinator process)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(process.SocketPath)).WaitAsync(Bound);
        return socket;
    }

    /// <summary>Greets with <paramref name="hello"/> on a bare socket and reads the answer's frame as bytes.</summary>
    private static async Task<(MessageType Type, byte[] Payload)> GreetRawAsync(InProcessCoordinator process, HelloMessage hello)
    {
        using var socket = await ConnectSocketAsync(process);
        await socket.SendAsync(HandoffProtocol.Encode(hello));
        byte[] header = await ReceiveExactlyAsync(socket, HandoffProtocol.HeaderLength);
        Assert.Equal("ZD"u8.ToArray(), header[..2]);
        byte[] payload = await ReceiveExactlyAsync(socket, (int)BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(3)));
        return ((MessageType)header[2], payload);
    }

    private static async Task<byte[]> ReceiveExactlyAsync(Socket socket, int count)
    {
        byte[] buffer = new byte[count];
        using var limit = new CancellationTokenSource(Bound);
        for (int read = 0; read < count;)
        {
            int n = await socket.ReceiveAsync(buffer.AsMemory(read), SocketFlags.None, limit.Token);
            Assert.True(n > 0, "the connection closed within a frame");
            read += n;
        }

        return buffer;
    }

    /// <summary>The new process, played by the test on a bare socket (kept for a half-close) and its channel.</summary>
    private sealed class TestSuccessor(Socket socket, Socket servedPath) : IDisposable
    {
        public Socket Socket { get; } = socket;

        public HandoffChannel Channel { get; } = new(socket);

        /// <summary>Its copies of the listeners that came with the Welcome.</summary>
        public List<int> Fds { get; } = [];

        public void Dispose()
        {
            Channel.Dispose();
            servedPath.Dispose();
            foreach (int fd in Fds)
            {
                Interop.Libc.close(fd);
            }
        }
    }

    /// <summary>
    /// Greets the started process as a successor that asks for <paramref name="window"/> of probation, and is committed;
    /// the test has neither confirmed (no heartbeat) nor served the path yet.
    /// </summary>
    private static async Task<HandoffChannel> CommittedOnProbationAsync(InProcessCoordinator process, TimeSpan window)
    {
        var channel = new HandoffChannel(await ConnectSocketAsync(process));
        await GreetOnProbationUntilCommittedAsync(process, channel, window, []);
        return channel;
    }

    private static async Task GreetOnProbationUntilCommittedAsync(InProcessCoordinator process, HandoffChannel channel, TimeSpan window, List<int> fds)
    {
        channel.Send(new HelloMessage(HandoffProtocol.Version, Environment.ProcessId, process.Options.ApplicationId!, HandoffFeatures.Probation, (long)window.TotalMilliseconds));
        var welcome = Assert.IsType<WelcomeMessage>(await channel.ReadAsync(Bound, CancellationToken.None, fds));
        Assert.Equal(HandoffFeatures.Probation, welcome.Features);
        channel.Send(new ReadyMessage());
        Assert.IsType<CommittedMessage>(await channel.ReadAsync(Bound, CancellationToken.None));
    }

    /// <summary>
    /// As <see cref="CommittedOnProbationAsync"/>, then the path served and the first heartbeat, in that order (so that
    /// the old process needs no look at the clock to see the path served), until it stands by.
    /// </summary>
    private static async Task<TestSuccessor> StandingByAsync(InProcessCoordinator process, TimeSpan window)
    {
        await process.StartAloneAsync();
        var socket = await ConnectSocketAsync(process);
        var successor = new TestSuccessor(socket, process.ServePathAsSuccessor());
        await GreetOnProbationUntilCommittedAsync(process, successor.Channel, window, successor.Fds);
        successor.Channel.Send(new HeartbeatMessage());
        await WaitForArrowAsync(process, Session, "DrainingOnProbation --Drained--> OnProbation");
        return successor;
    }

    /// <summary>Ends a stand-by in order (the successor stops and releases it), so that nothing runs on past the test.</summary>
    private static async Task ReleaseAndWaitForExitAsync(InProcessCoordinator process, TestSuccessor successor)
    {
        successor.Channel.Send(new ReleaseMessage());
        await process.Application.StopRequested.Task.WaitAsync(Bound);
        await AssertClosedAsync(successor.Channel);
    }

    /// <summary>Starts the process as the successor of the test; reads its Hello and welcomes it with probation agreed.</summary>
    private static async Task<(HandoffChannel Channel, Socket Socket)> BeginOnProbationAsync(InProcessCoordinator process, FakePredecessor predecessor, TimeSpan window)
    {
        process.Options.Probation = ProbationSettings.Default with { Duration = window };
        var starting = process.Coordinator.StartingAsync(CancellationToken.None);
        var socket = await predecessor.AcceptSocketAsync();
        var channel = new HandoffChannel(socket);
        var hello = Assert.IsType<HelloMessage>(await channel.ReadAsync(Bound, CancellationToken.None));
        Assert.Equal(HandoffFeatures.Probation, hello.Features);
        Assert.Equal((long)window.TotalMilliseconds, hello.ProbationMilliseconds);
        channel.Send(new WelcomeMessage(hello.Version, Environment.ProcessId, [], 1, 0, HandoffFeatures.Probation));
        await starting.WaitAsync(Bound);
        return (channel, socket);
    }

    /// <summary>ApplicationStarted, Ready, Committed: the process serves, on probation, and heartbeats.</summary>
    private static async Task CommitOnProbationAsync(InProcessCoordinator process, HandoffChannel channel)
    {
        await CommitAsync(process, channel);
        await WaitForArrowAsync(process, Link, "AwaitingCommit --CommittedOnProbation--> OnProbation");
    }

    private static async Task CommitAsync(InProcessCoordinator process, HandoffChannel channel)
    {
        process.Application.Start();
        Assert.IsType<ReadyMessage>(await channel.ReadAsync(Bound, CancellationToken.None));
        channel.Send(new CommittedMessage());
        Assert.IsType<HeartbeatMessage>(await channel.ReadAsync(Bound, CancellationToken.None));
        await process.Logger.WaitForAsync(e => e.EventId.Name == "ServingHandoffSocket", Bound);
    }

    private static async Task<HandoffChannel> OnProbationAsync(InProcessCoordinator process, FakePredecessor predecessor, TimeSpan window)
    {
        var (channel, _) = await BeginOnProbationAsync(process, predecessor, window);
        await CommitOnProbationAsync(process, channel);
        return channel;
    }
}
