using ZeroDowntime.Hosting.Handoff;
using ZeroDowntime.Hosting.Protocol;
using ZeroDowntime.Hosting.Tests.Infrastructure;

namespace ZeroDowntime.Hosting.Tests.Unit;

/// <summary>
/// The running process's machine, in process: the real coordinator serving a real handoff socket, the test as the
/// successor, a fake clock for every deadline (a 30 s timeout takes no time).
/// </summary>
public sealed class SuccessorSessionTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task Negotiating_NoReadyWithinHandoffTimeout_SendsAbandonedAndServesOn()
    {
        await using var process = new InProcessCoordinator(handoffTimeout: TimeSpan.FromSeconds(30));
        await process.StartAloneAsync();
        using var successor = await process.GreetAsync();
        Assert.Equal(ProcessRole.HandingOver, process.Coordinator.Role);

        await process.Time.WaitForTimerAsync(TimeSpan.FromSeconds(30), Bound);
        process.Time.Advance(TimeSpan.FromSeconds(30));

        var abandoned = Assert.IsType<AbandonedMessage>(await successor.ReadAsync(Bound, CancellationToken.None));
        Assert.Contains("handoff timeout", abandoned.Reason, StringComparison.Ordinal);
        await process.Logger.WaitForAsync(e => e.EventId.Name == "SuccessorTimedOut", Bound);
        await WaitForRoleAsync(process, ProcessRole.Owner);
        Assert.True(process.Gate.IsOpen, "the running process never stopped accepting");
    }

    [Fact]
    public async Task Negotiating_SuccessorSendsFailed_SlotIsFreeForTheNext()
    {
        await using var process = new InProcessCoordinator();
        await process.StartAloneAsync();
        using (var first = await process.GreetAsync())
        {
            first.Send(new FailedMessage("boom in start-up"));
            var failed = await process.Logger.WaitForAsync(e => e.EventId.Name == "SuccessorFailed", Bound);
            Assert.Contains("boom in start-up", failed.Message, StringComparison.Ordinal);
        }

        await WaitForRoleAsync(process, ProcessRole.Owner);
        using var second = await process.GreetAsync();
        Assert.Equal(ProcessRole.HandingOver, process.Coordinator.Role);
    }

    [Fact]
    public async Task Greeting_SecondSuccessorWhileOneNegotiates_IsRefusedBusy()
    {
        await using var process = new InProcessCoordinator();
        await process.StartAloneAsync();
        using var first = await process.GreetAsync();

        using var second = await process.ConnectAsync();
        second.Send(new HelloMessage(HandoffProtocol.Version, Environment.ProcessId, process.Options.ApplicationId!));
        var refused = Assert.IsType<RefusedMessage>(await second.ReadAsync(Bound, CancellationToken.None));

        Assert.Equal(RefusalReason.Busy, refused.Reason);
        Assert.Equal(ProcessRole.HandingOver, process.Coordinator.Role);
    }

    [Fact]
    public async Task Greeting_OtherApplication_IsRefusedAndTakesNoSlot()
    {
        await using var process = new InProcessCoordinator();
        await process.StartAloneAsync();
        using var other = await process.ConnectAsync();
        other.Send(new HelloMessage(HandoffProtocol.Version, Environment.ProcessId, "billing"));

        var refused = Assert.IsType<RefusedMessage>(await other.ReadAsync(Bound, CancellationToken.None));
        Assert.Equal(RefusalReason.ApplicationMismatch, refused.Reason);
        Assert.Equal(ProcessRole.Owner, process.Coordinator.Role);
    }

    [Fact]
    public async Task Draining_NoHeartbeatFor5Seconds_RevokesAndServesAgain()
    {
        await using var process = new InProcessCoordinator();
        await process.StartAloneAsync();
        using var successor = await process.GreetAsync();
        successor.Send(new ReadyMessage());
        Assert.IsType<CommittedMessage>(await successor.ReadAsync(Bound, CancellationToken.None));
        Assert.Equal(ProcessRole.HandedOver, process.Coordinator.Role);
        Assert.False(process.Gate.IsOpen, "the gate closes before Committed");
        Assert.True(process.Lifetime.HasHandedOver);

        await process.Time.WaitForTimerAsync(SuccessorSession.HeartbeatTimeout, Bound);
        process.Time.Advance(SuccessorSession.HeartbeatTimeout);

        var revoked = Assert.IsType<RevokedMessage>(await successor.ReadAsync(Bound, CancellationToken.None));
        Assert.Contains("no heartbeat", revoked.Reason, StringComparison.Ordinal);
        await WaitForRoleAsync(process, ProcessRole.Owner);
        Assert.True(process.Gate.IsOpen, "serving again");
        Assert.False(process.Lifetime.HasHandedOver);
        Assert.False(process.Application.StopRequested.Task.IsCompleted, "a process that serves again does not exit");
    }

    [Fact]
    public async Task Draining_HeartbeatThenDrainOver_Exits()
    {
        await using var process = new InProcessCoordinator();
        using var successor = await CommittedAndConfirmedAsync(process);
        using var served = await ServePathOnceLookedAtAsync(process);

        await process.Application.StopRequested.Task.WaitAsync(Bound);
        await process.Logger.WaitForAsync(e => e.EventId.Name == "Exiting", Bound);
        Assert.Equal(ProcessRole.HandedOver, process.Coordinator.Role);
    }

    // Found while testing the tool: the old process exited as soon as the drain was over and the successor had sent its
    // first heartbeat, before the successor renamed its handoff socket over the path (it does so after acquiring its
    // resources): for that while the path named a dead socket, which `zerodowntime status` called stale and a newcomer
    // would take for a first start. The old process now exits only once the path names the successor's socket.
    [Fact]
    public async Task Draining_DrainOverBeforeTheSuccessorServesThePath_ExitsOnlyOnceItDoes()
    {
        await using var process = new InProcessCoordinator();
        using var successor = await CommittedAndConfirmedAsync(process);

        await process.Time.WaitForTimerAsync(TimeSpan.FromMilliseconds(10), Bound); // looking at the path
        for (int i = 0; i < 5; i++)
        {
            process.Time.Advance(TimeSpan.FromMilliseconds(10));
        }

        Assert.False(process.Application.StopRequested.Task.IsCompleted, "the path still names this process's socket");
        using (var status = await process.ConnectAsync()) // and it still answers there
        {
            status.Send(new StatusRequestMessage(HandoffProtocol.Version));
            Assert.IsType<StatusMessage>(await status.ReadAsync(Bound, CancellationToken.None));
        }

        using var served = process.ServePathAsSuccessor();
        process.Time.Advance(TimeSpan.FromMilliseconds(10));
        await process.Application.StopRequested.Task.WaitAsync(Bound);
    }

    [Fact]
    public async Task Draining_SuccessorReleasesThenCloses_KeepsDrainingAndNeverResumes()
    {
        await using var process = new InProcessCoordinator();
        await process.StartAloneAsync();
        using var successor = await process.GreetAsync();
        successor.Send(new ReadyMessage());
        Assert.IsType<CommittedMessage>(await successor.ReadAsync(Bound, CancellationToken.None));
        successor.Send(new ReleaseMessage());
        successor.Dispose();

        await process.Application.StopRequested.Task.WaitAsync(Bound);
        Assert.Empty(process.Logger.Named("SuccessorLost"));
        Assert.Equal(ProcessRole.HandedOver, process.Coordinator.Role);
    }

    [Fact]
    public async Task Committing_ShutdownBeganWhileNegotiating_ReadyIsAnsweredAbandoned()
    {
        await using var process = new InProcessCoordinator();
        process.Options.DrainOnShutdown = true;
        await process.StartAloneAsync();
        using var successor = await process.GreetAsync();

        var stopping = process.Coordinator.StoppingAsync(CancellationToken.None);
        await WaitForRoleAsync(process, ProcessRole.ShuttingDown);
        successor.Send(new ReadyMessage());

        var abandoned = Assert.IsType<AbandonedMessage>(await successor.ReadAsync(Bound, CancellationToken.None));
        Assert.Contains("shutting down", abandoned.Reason, StringComparison.Ordinal);
        await stopping.WaitAsync(Bound);
        Assert.Equal(ProcessRole.ShuttingDown, process.Coordinator.Role);
    }

    [Fact]
    public async Task StatusRequest_WhileNegotiating_SaysHandingOverWithTheSuccessorsPid()
    {
        await using var process = new InProcessCoordinator();
        await process.StartAloneAsync();
        using var successor = await process.GreetAsync();

        using var tool = await process.ConnectAsync();
        tool.Send(new StatusRequestMessage(HandoffProtocol.Version));
        var status = Assert.IsType<StatusMessage>(await tool.ReadAsync(Bound, CancellationToken.None));

        Assert.Equal(ServingState.HandingOver, status.State);
        Assert.Equal(Environment.ProcessId, status.SuccessorPid);
    }

    [Fact]
    public async Task Abandoned_ParticipantOverranAtTheCommit_NextSuccessorIsBusyUntilTheSessionHasReacquiredAndSaidSo()
    {
        var participant = new GatedParticipant();
        await using var process = new InProcessCoordinator(participants: [participant]);
        await process.StartAloneAsync();
        await participant.Acquired.Task.WaitAsync(Bound); // FirstStart
        participant.Reset();
        using var first = await process.GreetAsync();
        first.Send(new ReadyMessage());

        await participant.Releasing.Task.WaitAsync(Bound);
        await process.Time.WaitForTimerAsync(ParticipantRunner.Timeout, Bound);
        process.Time.Advance(ParticipantRunner.Timeout); // the release overran its 5 s
        participant.FinishRelease.SetResult();
        await participant.Acquiring.Task.WaitAsync(Bound); // serving again: re-acquiring (NotCommitted), held by the test

        // The race of the review: the slot must still be taken, or this successor's commit could release the participant
        // while the reclaim still runs.
        using (var second = await process.ConnectAsync())
        {
            second.Send(new HelloMessage(HandoffProtocol.Version, Environment.ProcessId, process.Options.ApplicationId!));
            Assert.Equal(RefusalReason.Busy, Assert.IsType<RefusedMessage>(await second.ReadAsync(Bound, CancellationToken.None)).Reason);
        }

        Assert.Equal(ProcessRole.HandingOver, process.Coordinator.Role);
        participant.FinishAcquire.SetResult();
        Assert.IsType<AbandonedMessage>(await first.ReadAsync(Bound, CancellationToken.None));
        await WaitForRoleAsync(process, ProcessRole.Owner);
        Assert.Equal(HandoffAcquireReason.NotCommitted, participant.LastReason);
        Assert.True(process.Gate.IsOpen);
    }

    // Issue 18 item 10: after a normal drain the session had disposed the source that its still-running watch cancels
    // when the successor disconnects: an ObjectDisposedException in a task that nobody observed. Now the watch ends
    // before the exit, and nothing runs on after the session.
    [Fact]
    public async Task Completed_SuccessorDisconnectsAfterTheDrain_NothingEscapes()
    {
        var escaped = new System.Collections.Concurrent.ConcurrentQueue<Exception>();
        EventHandler<UnobservedTaskExceptionEventArgs> record = (_, e) =>
        {
            if (e.Exception.Flatten().InnerExceptions.Any(x => x is ObjectDisposedException && x.Message.Contains(nameof(CancellationTokenSource), StringComparison.Ordinal)))
            {
                escaped.Enqueue(e.Exception);
            }
        };
        TaskScheduler.UnobservedTaskException += record;
        try
        {
            await using var process = new InProcessCoordinator();
            await process.StartAloneAsync();
            using var successor = await process.GreetAsync();
            successor.Send(new ReadyMessage());
            Assert.IsType<CommittedMessage>(await successor.ReadAsync(Bound, CancellationToken.None));
            successor.Send(new HeartbeatMessage()); // it serves: nothing to drain, so this process exits
            using var served = await ServePathOnceLookedAtAsync(process);
            await process.Application.StopRequested.Task.WaitAsync(Bound);

            // The watch ended before the exit, so the successor's disconnect now meets nobody.
            var ended = await process.Logger.WaitForAsync(e => e.EventId.Name == "SuccessorWatchEnded", Bound);
            Assert.Contains("this process stops", ended.Message, StringComparison.Ordinal);
            successor.Dispose();
            for (int i = 0; i < 3; i++)
            {
                GC.Collect();
                GC.WaitForPendingFinalizers();
            }

            Assert.Empty(escaped);
            Assert.Empty(process.Logger.Named("BackgroundWorkFailed"));
        }
        finally
        {
            TaskScheduler.UnobservedTaskException -= record;
        }
    }

    /// <summary>Starts alone, hands over to the test's successor, which is committed and sends its first heartbeat.</summary>
    private static async Task<HandoffChannel> CommittedAndConfirmedAsync(InProcessCoordinator process)
    {
        await process.StartAloneAsync();
        var successor = await process.GreetAsync();
        successor.Send(new ReadyMessage());
        Assert.IsType<CommittedMessage>(await successor.ReadAsync(Bound, CancellationToken.None));
        successor.Send(new HeartbeatMessage());
        return successor;
    }

    /// <summary>
    /// Serves the path as the successor once the drained process looks at it every 10 ms, then lets one look pass. Serving
    /// it right after the heartbeat raced the process's first look: when the look came second the process exited at once,
    /// when it came first it waited for a tick of the fake clock that nobody advanced (CI, stop 25).
    /// </summary>
    private static async Task<System.Net.Sockets.Socket> ServePathOnceLookedAtAsync(InProcessCoordinator process)
    {
        await process.Time.WaitForTimerAsync(TimeSpan.FromMilliseconds(10), Bound);
        var served = process.ServePathAsSuccessor();
        process.Time.Advance(TimeSpan.FromMilliseconds(10));
        return served;
    }

    internal static async Task WaitForRoleAsync(InProcessCoordinator process, ProcessRole role)
    {
        // The role changes on the coordinator's own thread right after the message the test just read; the log line
        // of the transition is the signal.
        await process.Logger.WaitForAsync(e => e.EventId.Name == "StateChanged" && e.Message.StartsWith("ProcessRole:", StringComparison.Ordinal)
            && e.Message.EndsWith("--> " + role, StringComparison.Ordinal) && process.Coordinator.Role == role, Bound)
            .ContinueWith(_ => { }, TaskScheduler.Default);
        Assert.Equal(role, process.Coordinator.Role);
    }
}
