using ZeroDowntime.Hosting.Handoff;
using ZeroDowntime.Hosting.Interop;
using ZeroDowntime.Hosting.Protocol;
using ZeroDowntime.Hosting.Tests.Infrastructure;

namespace ZeroDowntime.Hosting.Tests.Unit;

/// <summary>
/// The new process's machine, in process: the real coordinator as the successor, the test as its predecessor on a real
/// Unix socket, a fake clock for every deadline.
/// </summary>
public sealed class PredecessorLinkTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task Probing_NoSocketFile_StartsAloneAndServesTheHandoffSocket()
    {
        await using var process = new InProcessCoordinator();
        await process.StartAloneAsync();

        Assert.Equal(ProcessRole.Owner, process.Coordinator.Role);
        Assert.True(process.Gate.IsOpen);
        Assert.Single(process.Logger.Named("NoPredecessor"));
        Assert.True(File.Exists(process.SocketPath));
    }

    [Fact]
    public async Task AwaitingCommit_Committed_OwnsHeartbeatsAndServesTheSocket()
    {
        await using var process = new InProcessCoordinator();
        using var predecessor = new FakePredecessor(process.SocketPath);
        var starting = process.Coordinator.StartingAsync(CancellationToken.None);
        using var channel = await predecessor.WelcomeAsync();
        await starting.WaitAsync(Bound);
        Assert.Equal(ProcessRole.Successor, process.Coordinator.Role);
        Assert.False(process.Gate.IsOpen, "nothing is accepted before ApplicationStarted");

        process.Application.Start();
        Assert.IsType<ReadyMessage>(await channel.ReadAsync(Bound, CancellationToken.None));
        Assert.True(process.Gate.IsOpen, "the gate opens before Ready");
        channel.Send(new CommittedMessage());

        Assert.IsType<HeartbeatMessage>(await channel.ReadAsync(Bound, CancellationToken.None));
        await process.Logger.WaitForAsync(e => e.EventId.Name == "ServingHandoffSocket", Bound);
        Assert.Equal(ProcessRole.Owner, process.Coordinator.Role);

        // The next heartbeat comes on the fake clock's second, not the real one's.
        await process.Time.WaitForTimerAsync(PredecessorLink.HeartbeatInterval, Bound);
        process.Time.Advance(PredecessorLink.HeartbeatInterval);
        Assert.IsType<HeartbeatMessage>(await channel.ReadAsync(Bound, CancellationToken.None));
    }

    [Fact]
    public async Task AwaitingCommit_NoAnswerWithinHandoffTimeoutPlus5s_SendsFailedAndExits77()
    {
        await using var process = new InProcessCoordinator(handoffTimeout: TimeSpan.FromSeconds(20));
        using var predecessor = new FakePredecessor(process.SocketPath);
        using var channel = await AwaitingCommitAsync(process, predecessor);

        var wait = TimeSpan.FromSeconds(20) + PredecessorLink.ReadTimeout;
        await process.Time.WaitForTimerAsync(wait, Bound);
        process.Time.Advance(wait);

        var failed = Assert.IsType<FailedMessage>(await channel.ReadAsync(Bound, CancellationToken.None));
        Assert.Contains("no answer to Ready", failed.Reason, StringComparison.Ordinal);
        await process.Application.StopRequested.Task.WaitAsync(Bound);
        Assert.Equal(ZeroDowntimeExitCodes.HandoffAbandoned, Environment.ExitCode);
        Assert.Equal(ProcessRole.Leaving, process.Coordinator.Role);
    }

    [Fact]
    public async Task AwaitingCommit_HostStopping_SendsFailedAtOnceAndClosesTheGate()
    {
        await using var process = new InProcessCoordinator();
        using var predecessor = new FakePredecessor(process.SocketPath);
        using var channel = await AwaitingCommitAsync(process, predecessor);

        process.Application.BeginStopping();

        var failed = Assert.IsType<FailedMessage>(await channel.ReadAsync(Bound, CancellationToken.None));
        Assert.Contains("stopping", failed.Reason, StringComparison.Ordinal);
        Assert.False(process.Gate.IsOpen);
        Assert.Equal(ProcessRole.Leaving, process.Coordinator.Role);

        // A Committed that crosses the Failed on the wire is too late: this process never owns anything.
        channel.Send(new CommittedMessage());
        Assert.Empty(process.Logger.Named("Committed"));
    }

    [Fact]
    public async Task AwaitingCommit_PredecessorVanishes_CarriesOnAlone()
    {
        await using var process = new InProcessCoordinator();
        using var predecessor = new FakePredecessor(process.SocketPath);
        var starting = process.Coordinator.StartingAsync(CancellationToken.None);
        var channel = await predecessor.WelcomeAsync();
        await starting.WaitAsync(Bound);
        process.Application.Start();
        Assert.IsType<ReadyMessage>(await channel.ReadAsync(Bound, CancellationToken.None));
        predecessor.Dispose();
        channel.Dispose();

        await process.Logger.WaitForAsync(e => e.EventId.Name == "PredecessorVanished", Bound);
        await process.Logger.WaitForAsync(e => e.EventId.Name == "ServingHandoffSocket", Bound);
        Assert.Equal(ProcessRole.Owner, process.Coordinator.Role);
        Assert.True(process.Gate.IsOpen);
    }

    [Fact]
    public async Task TakingOver_AbandonedWaitingAtApplicationStarted_Exits77WithoutAccepting()
    {
        await using var process = new InProcessCoordinator();
        using var predecessor = new FakePredecessor(process.SocketPath);
        var starting = process.Coordinator.StartingAsync(CancellationToken.None);
        using var channel = await predecessor.WelcomeAsync();
        await starting.WaitAsync(Bound);
        channel.Send(new AbandonedMessage("too slow"));

        process.Application.Start();

        await process.Application.StopRequested.Task.WaitAsync(Bound);
        Assert.False(process.Gate.HasOpened, "an abandoned successor never accepts");
        Assert.Equal(ZeroDowntimeExitCodes.HandoffAbandoned, Environment.ExitCode);
    }

    [Fact]
    public async Task Owner_Revoked_Exits77()
    {
        await using var process = new InProcessCoordinator();
        using var predecessor = new FakePredecessor(process.SocketPath);
        using var channel = await AwaitingCommitAsync(process, predecessor);
        channel.Send(new CommittedMessage());
        Assert.IsType<HeartbeatMessage>(await channel.ReadAsync(Bound, CancellationToken.None));

        channel.Send(new RevokedMessage("taken for lost"));

        await process.Application.StopRequested.Task.WaitAsync(Bound);
        Assert.Equal(ZeroDowntimeExitCodes.HandoffAbandoned, Environment.ExitCode);
        Assert.Equal(ProcessRole.Leaving, process.Coordinator.Role);
        Assert.False(process.Gate.IsOpen);
    }

    [Fact]
    public async Task AwaitingCommit_Committed_AnnouncesItselfAsTheMainProcess()
    {
        using var notify = new NotifySocketListener();
        await using var process = new InProcessCoordinator(notifySocketPath: notify.Path);
        using var predecessor = new FakePredecessor(process.SocketPath);
        using var channel = await AwaitingCommitAsync(process, predecessor);

        channel.Send(new CommittedMessage());

        await process.Logger.WaitForAsync(e => e.EventId.Name == "ServingHandoffSocket", Bound);
        Assert.Contains(notify.ReceivedSoFar(), m => m.StartsWith($"MAINPID={Environment.ProcessId}\nREADY=1", StringComparison.Ordinal));
    }

    // Issue 18 item 5: revoked while its participants acquire (the predecessor heard no heartbeat for 5 s), the
    // successor used to go on to MAINPID, READY=1 and its own handoff socket over the path the old process serves again.
    [Fact]
    public async Task Owner_RevokedWhileAcquiring_ClaimsNothingAndExits77()
    {
        using var notify = new NotifySocketListener();
        var participant = new GatedParticipant();
        participant.Reset(); // hold the acquisition
        await using var process = new InProcessCoordinator(participants: [participant], notifySocketPath: notify.Path);
        using var predecessor = new FakePredecessor(process.SocketPath);
        ulong predecessorSocket = Interop.Libc.TryStat(process.SocketPath)!.Value.Inode;
        using var channel = await AwaitingCommitAsync(process, predecessor);
        channel.Send(new CommittedMessage());
        await participant.Acquiring.Task.WaitAsync(Bound);
        Assert.Equal(HandoffAcquireReason.PredecessorReleased, participant.LastReason);

        channel.Send(new RevokedMessage("no heartbeat for 5 s"));
        await process.Application.StopRequested.Task.WaitAsync(Bound);
        Assert.Equal(ProcessRole.Leaving, process.Coordinator.Role);
        participant.FinishAcquire.SetResult();

        // Whichever comes: the claims withdrawn, or (the defect) the handoff socket served.
        var outcome = await process.Logger.WaitForAsync(e => e.EventId.Name is "OwnershipWithdrawn" or "ServingHandoffSocket", Bound);
        Assert.Equal("OwnershipWithdrawn", outcome.EventId.Name);
        Assert.DoesNotContain(notify.ReceivedSoFar(), m => m.Contains("MAINPID=", StringComparison.Ordinal));
        Assert.Equal(predecessorSocket, Interop.Libc.TryStat(process.SocketPath)!.Value.Inode);
        Assert.Equal(ZeroDowntimeExitCodes.HandoffAbandoned, Environment.ExitCode);
    }

    // Issue 18 item 1: one fallback at a time. A successor of this process greets it while the predecessor still
    // drains: the predecessor is released (and answers by closing) before the successor receives anything, so that it
    // can never resume beside that successor should this process die now.
    [Fact]
    public async Task Owner_SuccessorGreets_ReleasesTheDrainingPredecessorBeforeSendingTheListeners()
    {
        await using var process = new InProcessCoordinator();
        using var predecessor = new FakePredecessor(process.SocketPath);
        using var channel = await CommittedAsync(process, predecessor);

        var greeting = process.GreetAsync();
        await ReadReleaseAsync(channel);
        Assert.False(greeting.IsCompleted, "the listeners go out only once the predecessor has answered the Release");

        channel.Dispose(); // this build's answer: the connection closes
        using var successor = await greeting.WaitAsync(Bound);
        Assert.Equal(ProcessRole.HandingOver, process.Coordinator.Role);
        Assert.Single(process.Logger.Named("ToldPredecessorStopping"));
    }

    // Issue 18 items 1 and 6: the predecessor had taken this process for lost (no heartbeat for 5 s) and its Revoked
    // crossed the Release on the wire. This process must hand nothing on: the successor is refused and greets the
    // predecessor, which serves the path again; this process leaves with 77.
    [Fact]
    public async Task Owner_RevokedAcrossTheRelease_RefusesTheSuccessorAndExits77()
    {
        await using var process = new InProcessCoordinator();
        using var predecessor = new FakePredecessor(process.SocketPath);
        using var channel = await CommittedAsync(process, predecessor);

        var greeting = process.ConnectAsync();
        using var successor = await greeting.WaitAsync(Bound);
        successor.Send(new HelloMessage(HandoffProtocol.Version, Environment.ProcessId, process.Options.ApplicationId!));
        await ReadReleaseAsync(channel);
        channel.Send(new RevokedMessage("no heartbeat for 5 s"));

        var refused = Assert.IsType<RefusedMessage>(await successor.ReadAsync(Bound, CancellationToken.None));
        Assert.Equal(RefusalReason.AlreadyHandedOver, refused.Reason);
        Assert.Contains("revoked", refused.Detail, StringComparison.Ordinal);
        await process.Application.StopRequested.Task.WaitAsync(Bound);
        Assert.Equal(ProcessRole.Leaving, process.Coordinator.Role);
        Assert.Equal(ZeroDowntimeExitCodes.HandoffAbandoned, Environment.ExitCode);
        Assert.False(process.Gate.IsOpen);
    }

    // A predecessor of an earlier build keeps the connection open after a Release until it exits: the successor gets
    // the listeners after the answer timeout, on the fake clock.
    [Fact]
    public async Task Owner_SuccessorGreetsAndAnEarlierBuildDoesNotAnswerTheRelease_WelcomesAfterTheAnswerTimeout()
    {
        await using var process = new InProcessCoordinator();
        using var predecessor = new FakePredecessor(process.SocketPath);
        using var channel = await CommittedAsync(process, predecessor);

        var greeting = process.GreetAsync();
        await ReadReleaseAsync(channel);
        await process.Time.WaitForTimerAsync(PredecessorLink.ReleaseAnswerTimeout, Bound);
        Assert.False(greeting.IsCompleted);
        process.Time.Advance(PredecessorLink.ReleaseAnswerTimeout);

        using var successor = await greeting.WaitAsync(Bound);
        Assert.Equal(ProcessRole.HandingOver, process.Coordinator.Role);
    }

    // A plain shutdown releases a predecessor that still drains, so that it neither resumes nor keeps its copies of
    // the listeners (issue 18 item 3: a port kept listening in the old process after the new one got SIGTERM).
    [Fact]
    public async Task Owner_PlainShutdown_ReleasesTheDrainingPredecessorFirst()
    {
        await using var process = new InProcessCoordinator();
        using var predecessor = new FakePredecessor(process.SocketPath);
        using var channel = await CommittedAsync(process, predecessor);

        var stopping = process.Coordinator.StoppingAsync(CancellationToken.None);
        await ReadReleaseAsync(channel);
        channel.Dispose();

        await stopping.WaitAsync(Bound);
        Assert.Equal(ProcessRole.ShuttingDown, process.Coordinator.Role);
    }

    /// <summary>Reads the successor's frames (heartbeats) until its Release.</summary>
    private static async Task ReadReleaseAsync(HandoffChannel channel)
    {
        HandoffMessage message;
        do
        {
            message = await channel.ReadAsync(Bound, CancellationToken.None);
        }
        while (message is HeartbeatMessage);

        Assert.IsType<ReleaseMessage>(message);
    }

    /// <summary>Takes over from <paramref name="predecessor"/>, which commits; returns once this process serves.</summary>
    private static async Task<HandoffChannel> CommittedAsync(InProcessCoordinator process, FakePredecessor predecessor)
    {
        var channel = await AwaitingCommitAsync(process, predecessor);
        channel.Send(new CommittedMessage());
        await process.Logger.WaitForAsync(e => e.EventId.Name == "ServingHandoffSocket", Bound);
        return channel;
    }

    // Issue 18 item 9: the successor recorded its process age as zerodowntime.handoff.duration, documented (and measured
    // by the predecessor) as the greeting to the commit.
    [Fact]
    public async Task AwaitingCommit_Committed_RecordsTheHandoffDurationFromTheGreeting()
    {
        await using var process = new InProcessCoordinator();
        using var recorder = new MeasurementRecorder(process.MeterFactory);
        using var predecessor = new FakePredecessor(process.SocketPath);
        using var channel = await AwaitingCommitAsync(process, predecessor);

        process.Time.Advance(TimeSpan.FromSeconds(3)); // start-up and Ready took 3 s on this clock
        channel.Send(new CommittedMessage());
        await process.Logger.WaitForAsync(e => e.EventId.Name == "ServingHandoffSocket", Bound);

        var duration = Assert.Single(recorder.Of("zerodowntime.handoff.duration"));
        Assert.Equal("successor", duration.Tags["zerodowntime.role"]);
        Assert.Equal(3.0, duration.Value);
    }

    // Issue 18 item 9: an abandoned successor drains what it accepted, but it never handed anything over: the public
    // flag and the health check must not say so.
    [Fact]
    public async Task AwaitingCommit_Abandoned_DrainsWithoutSayingItHandedOver()
    {
        await using var process = new InProcessCoordinator();
        using var predecessor = new FakePredecessor(process.SocketPath);
        using var channel = await AwaitingCommitAsync(process, predecessor);

        channel.Send(new AbandonedMessage("too slow"));

        await process.Application.StopRequested.Task.WaitAsync(Bound);
        Assert.True(process.Lifetime.IsDraining);
        Assert.False(process.Lifetime.HasHandedOver);
        Assert.Equal(ZeroDowntimeExitCodes.HandoffAbandoned, Environment.ExitCode);
    }

    /// <summary>Starts the process as the successor of <paramref name="predecessor"/> and reads its Ready.</summary>
    private static async Task<HandoffChannel> AwaitingCommitAsync(InProcessCoordinator process, FakePredecessor predecessor)
    {
        var starting = process.Coordinator.StartingAsync(CancellationToken.None);
        var channel = await predecessor.WelcomeAsync();
        await starting.WaitAsync(Bound);
        process.Application.Start();
        Assert.IsType<ReadyMessage>(await channel.ReadAsync(Bound, CancellationToken.None));
        return channel;
    }

    [Fact]
    public async Task Probing_RefusedBusy_FailsStartWithExit75()
    {
        await using var process = new InProcessCoordinator();
        using var predecessor = new FakePredecessor(process.SocketPath);
        var starting = process.Coordinator.StartingAsync(CancellationToken.None);
        using var channel = await predecessor.AcceptAsync();
        Assert.IsType<HelloMessage>(await channel.ReadAsync(Bound, CancellationToken.None));
        channel.Send(new RefusedMessage(RefusalReason.Busy, HandoffProtocol.Version, "another handoff"));

        var ex = await Assert.ThrowsAsync<ZeroDowntimeStartupException>(() => starting.WaitAsync(Bound));
        Assert.Equal(ZeroDowntimeExitCodes.RefusedByPredecessor, ex.ExitCode);
    }
}
