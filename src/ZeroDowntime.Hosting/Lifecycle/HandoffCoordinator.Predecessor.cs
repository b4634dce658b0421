using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using System.Diagnostics;
using ZeroDowntime.Hosting.Diagnostics;
using ZeroDowntime.Hosting.Interop;
using ZeroDowntime.Hosting.Logging;
using ZeroDowntime.Hosting.Protocol;

namespace ZeroDowntime.Hosting.Lifecycle;

/// <summary>The running process's side: hand the listeners to one successor, commit when it is ready, drain.</summary>
internal sealed partial class HandoffCoordinator
{
    private async Task HandleSuccessorAsync(Socket socket)
    {
        HandoffChannel channel;
        try
        {
            channel = new HandoffChannel(socket);
        }
        catch (Exception ex) when (ex is SocketException or InvalidOperationException)
        {
            socket.Dispose();
            _logger.HandoffProtocolError(0, ex.Message);
            return;
        }

        try
        {
            await NegotiateAsync(channel);
        }
        catch (OperationCanceledException) when (_shutdown.IsCancellationRequested)
        {
            // This process is stopping; the peer sees the connection close.
        }
        catch (Exception ex) when (ex is SocketException or System.ComponentModel.Win32Exception or ObjectDisposedException)
        {
            _logger.HandoffProtocolError(channel.PeerProcessId, ex.Message);
        }
        finally
        {
            channel.Dispose();
        }
    }

    private async Task NegotiateAsync(HandoffChannel channel)
    {
        int pid = channel.PeerProcessId;
        uint me = Libc.geteuid();
        if (channel.PeerUserId != me)
        {
            _logger.HandoffRefused(pid, channel.PeerUserId, $"it runs as uid {channel.PeerUserId}, not as this process's uid {me}");
            return;
        }

        HandoffMessage? greeting;
        try
        {
            greeting = await channel.ReadAsync(ReadTimeout, _shutdown.Token);
        }
        catch (Exception ex) when (ex is TimeoutException or HandoffProtocolException or InvalidDataException)
        {
            _logger.HandoffProtocolError(pid, ex.Message);
            return;
        }

        switch (greeting)
        {
            case StatusRequestMessage:
                channel.TrySend(Status());
                return;
            case UpgradeRequestMessage:
                await AnswerUpgradeRequestAsync(channel, pid);
                return;
        }

        if (greeting is not HelloMessage hello)
        {
            _logger.HandoffProtocolError(pid, greeting is null ? "closed without a greeting" : $"sent {greeting.Type} instead of a greeting");
            return;
        }

        // Speak the successor's version when this build still speaks it: an older build hands over to a newer one
        // and back. A newer successor is told our newest version and greets again in it.
        if (hello.Version is < HandoffProtocol.MinimumVersion or > HandoffProtocol.Version)
        {
            Refuse(channel, pid, RefusalReason.VersionMismatch,
                $"protocol version mismatch: this process (pid {Environment.ProcessId}) speaks v{HandoffProtocol.MinimumVersion} to v{HandoffProtocol.Version}, the successor speaks v{hello.Version}");
            return;
        }

        if (!string.Equals(hello.ApplicationId, _options.ApplicationId, StringComparison.Ordinal))
        {
            Refuse(channel, pid, RefusalReason.ApplicationMismatch,
                $"this socket serves application '{_options.ApplicationId}', the successor is '{hello.ApplicationId}'");
            return;
        }

        if (CurrentRole != Role.Owner)
        {
            Refuse(channel, pid, RefusalReason.AlreadyHandedOver, CurrentRole == Role.ShuttingDown
                ? $"pid {Environment.ProcessId} is shutting down"
                : $"pid {Environment.ProcessId} has already handed over and is draining");
            return;
        }

        if (Interlocked.CompareExchange(ref _handoffInProgress, 1, 0) != 0)
        {
            Refuse(channel, pid, RefusalReason.Busy, $"another handoff from pid {Environment.ProcessId} is in progress");
            return;
        }

        using var activity = ZeroDowntimeMetrics.ActivitySource.StartActivity("zerodowntime.handoff", ActivityKind.Server);
        activity?.SetTag(ZeroDowntimeMetrics.RoleTag, HandoffTags.Predecessor);
        activity?.SetTag("zerodowntime.successor.pid", pid);
        activity?.SetTag("zerodowntime.protocol.version", (int)hello.Version);
        Volatile.Write(ref _successorPid, pid);
        try
        {
            long greeted = _time.GetTimestamp();
            _listenersShared = true;
            int count = _registry.SendActiveListeners(listeners => channel.Send(
                new WelcomeMessage(hello.Version, Environment.ProcessId, listeners.Select(l => new ListenerDescriptor(l.Key, l.Description)).ToArray(),
                    _metrics.Generation, _firstStartUnixMilliseconds),
                listeners.Select(l => l.Fd).ToArray()));
            _logger.HandoffRequested(pid, count);
            activity?.AddEvent(new ActivityEvent("listeners sent", tags: new() { ["count"] = count }));

            if (!await WaitForReadyAsync(channel, pid, greeted))
            {
                // The successor failed, vanished or was told to stop: it will not serve these listeners.
                _listenersShared = false;
                activity?.SetStatus(ActivityStatusCode.Error, "successor not ready");
                return;
            }

            _logger.SuccessorReady(pid, _time.GetElapsedTime(greeted).TotalMilliseconds);
            activity?.AddEvent(new ActivityEvent("ready"));
            UpgradeMilestone(pid, committed: false);
            await CommitAndDrainAsync(channel, pid, greeted, activity);
        }
        finally
        {
            // Still (or again) the server: the slot is free. A process that handed over keeps it taken.
            if (CurrentRole == Role.Owner)
            {
                Volatile.Write(ref _handoffInProgress, 0);
            }
        }
    }

    private void Refuse(HandoffChannel channel, int pid, RefusalReason reason, string detail)
    {
        _logger.HandoffRefused(pid, channel.PeerUserId, detail);
        _metrics.Handoff(HandoffTags.Predecessor, HandoffTags.Refused);
        if (UpgradeOf(pid) is { } upgrade)
        {
            _ = BackgroundWork.Start("end of a refused upgrade", () => FinishUpgradeAsync(upgrade, UpgradeOutcome.Refused, detail), _logger);
        }
        channel.TrySend(new RefusedMessage(reason, HandoffProtocol.Version, HandoffProtocol.FitText(detail)));
    }

    private async Task<bool> WaitForReadyAsync(HandoffChannel channel, int pid, long greeted)
    {
        var remaining = _options.HandoffTimeout - _time.GetElapsedTime(greeted);
        HandoffMessage? message;
        try
        {
            message = await channel.ReadAsync(remaining > TimeSpan.Zero ? remaining : TimeSpan.Zero, _shutdown.Token);
        }
        catch (TimeoutException)
        {
            channel.TrySend(new AbandonedMessage($"not ready within the handoff timeout of {_options.HandoffTimeout}"));
            _logger.SuccessorTimedOut(pid, _options.HandoffTimeout);
            _metrics.Handoff(HandoffTags.Predecessor, HandoffTags.Abandoned);
            await FinishUpgradeAsync(UpgradeOf(pid), UpgradeOutcome.Abandoned, $"not ready within the handoff timeout of {_options.HandoffTimeout}");
            return false;
        }
        catch (Exception ex) when (ex is HandoffProtocolException or InvalidDataException)
        {
            channel.TrySend(new AbandonedMessage(HandoffProtocol.FitText($"protocol error: {ex.Message}")));
            _logger.HandoffProtocolError(pid, ex.Message);
            _metrics.Handoff(HandoffTags.Predecessor, HandoffTags.Failed);
            await FinishUpgradeAsync(UpgradeOf(pid), UpgradeOutcome.Failed, $"protocol error: {ex.Message}");
            return false;
        }

        switch (message)
        {
            case ReadyMessage when channel.HasPendingData:
                // Read late (this process was frozen), a Ready may have been withdrawn since: the successor gave up
                // waiting for the commit and said why. Then it is not ready for anything.
                return await WaitForReadyAsync(channel, pid, greeted);
            case ReadyMessage:
                return true;
            case FailedMessage failed:
                _logger.SuccessorFailed(pid, failed.Reason);
                _metrics.Handoff(HandoffTags.Predecessor, HandoffTags.Failed);
                await FinishUpgradeAsync(UpgradeOf(pid), UpgradeOutcome.Failed, failed.Reason);
                return false;
            case null:
                _logger.SuccessorFailed(pid, "it disconnected before it was ready: it exited or crashed during start-up");
                _metrics.Handoff(HandoffTags.Predecessor, HandoffTags.Failed);
                await FinishUpgradeAsync(UpgradeOf(pid), UpgradeOutcome.Failed, "it disconnected before it was ready: it exited or crashed during start-up");
                return false;
            default:
                channel.TrySend(new AbandonedMessage($"unexpected {message.Type} before Ready"));
                _logger.HandoffProtocolError(pid, $"sent {message.Type} before Ready");
                _metrics.Handoff(HandoffTags.Predecessor, HandoffTags.Failed);
                await FinishUpgradeAsync(UpgradeOf(pid), UpgradeOutcome.Failed, $"it sent {message.Type} before Ready");
                return false;
        }
    }

    private async Task CommitAndDrainAsync(HandoffChannel channel, int pid, long greeted, Activity? activity)
    {
        long readyAt = _time.GetTimestamp();

        // Commit point: from here the successor is the server. Stop accepting first, so that when the successor
        // hears "committed" this process takes no new connection. The handoff socket stays open (answering
        // "already handed over", which successors retry) until the successor renames its own over the path.
        // A plain shutdown that began meanwhile wins: this process is stopping, so it hands over to nobody.
        if (!TryMove(Role.Owner, Role.HandedOver))
        {
            channel.TrySend(new AbandonedMessage("the running process is shutting down"));
            _metrics.Handoff(HandoffTags.Predecessor, HandoffTags.Abandoned);
            await FinishUpgradeAsync(UpgradeOf(pid), UpgradeOutcome.Abandoned, "the running process began to shut down");
            return;
        }

        _gate.Close();
        var released = new List<IHandoffParticipant>();
        if (await ReleaseParticipantsAsync(released) is { } overrun)
        {
            await AbandonAtCommitAsync(channel, pid, readyAt, released, overrun);
            activity?.SetStatus(ActivityStatusCode.Error, "abandoned at the commit");
            return;
        }

        // This process may itself still be the successor of a draining predecessor: tell it Stopping before the
        // successor hears Committed, so that from now on nothing can make that older generation serve again.
        await ReleasePredecessorAsync();

        // Goodbye on every response from now on, before the successor can log that it serves alone.
        _lifetime.BeginDrain();
        using var lost = new CancellationTokenSource();
        var confirmed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Task<string?> watch;
        if (channel.TrySend(new CommittedMessage()))
        {
            _metrics.Handoff(HandoffTags.Predecessor, HandoffTags.Committed);
            _metrics.HandoffDuration(HandoffTags.Predecessor, _time.GetElapsedTime(greeted));
            activity?.AddEvent(new ActivityEvent("committed"));
            UpgradeMilestone(pid, committed: true);
            await FinishUpgradeAsync(UpgradeOf(pid), UpgradeOutcome.Committed, "committed");
            watch = WatchSuccessorAsync(channel, lost, confirmed);
        }
        else
        {
            watch = Task.FromResult<string?>("the connection broke at the commit");
            await lost.CancelAsync();
            await FinishUpgradeAsync(UpgradeOf(pid), UpgradeOutcome.Failed, "the connection broke at the commit");
        }

        _systemd.Status($"Handed over to pid {pid}; draining");

        // Exit only once the successor has confirmed that it serves (its first heartbeat follows Committed at once):
        // an empty drain is over in no time, and a successor that gave up meanwhile must not be left as the server.
        if (await DrainAsync(lost.Token) && await SuccessorConfirmedAsync(confirmed.Task, watch))
        {
            activity?.AddEvent(new ActivityEvent("drained"));
            _logger.Exiting(pid);
            _applicationLifetime.StopApplication();
            return;
        }

        // The successor died or froze after the commit: nobody else accepts. Serve again, as if the handoff never
        // happened, and tell the successor (should it wake up) that it must stop.
        string reason = await watch ?? "unknown";
        _logger.SuccessorLost(pid, reason);
        _metrics.Handoff(HandoffTags.Predecessor, HandoffTags.Revoked);
        activity?.SetStatus(ActivityStatusCode.Error, "successor lost; revoked");
        channel.TrySend(new RevokedMessage(HandoffProtocol.FitText(reason)));
        _lifetime.Resume();
        await ServeAgainAsync(_participants, $"Serving again; successor pid {pid} was lost");
        _server.Stop(removeFile: false);
        StartHandoffServer();
    }

    /// <summary>Back to serving after a handoff that did not complete: the listeners and the resources are ours again.</summary>
    private async Task ServeAgainAsync(IReadOnlyList<IHandoffParticipant> released, string status)
    {
        _listenersShared = false;
        MoveTo(Role.Owner);
        ServingFromNow();
        _gate.Open();
        foreach (var participant in released)
        {
            await NotifyParticipantsAsync("acquire", [participant], p => p.AcquireAsync(HandoffAcquireReason.Reclaimed, _shutdown.Token));
        }

        _systemd.MainProcess(status);
    }

    /// <summary>
    /// A participant overran its release at the commit. The successor must not acquire while the release still runs,
    /// so this process does not commit: it waits for the release to end (within what is left of the handoff timeout,
    /// so that the successor, which waits for the commit that long and 5 s more, does not give up first), acquires
    /// again what it released, reopens its gate and tells the successor the handoff is abandoned.
    /// </summary>
    private async Task AbandonAtCommitAsync(HandoffChannel channel, int pid, long readyAt, List<IHandoffParticipant> released, Task overrun)
    {
        var remaining = _options.HandoffTimeout - _time.GetElapsedTime(readyAt);
        try
        {
            await overrun.WaitAsync(remaining > TimeSpan.Zero ? remaining : TimeSpan.Zero, _shutdown.Token);
        }
        catch (TimeoutException)
        {
            // Still running: serve again anyway; it will end by itself or with the host.
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            _logger.ParticipantFailed("release", ex);
        }

        string reason = HandoffProtocol.FitText(overrun.IsCompleted
            ? $"a handoff participant overran its {ParticipantTimeout.TotalSeconds:0} s at the commit"
            : $"a handoff participant overran its {ParticipantTimeout.TotalSeconds:0} s at the commit and is still running");
        await ServeAgainAsync(overrun.IsCompleted ? released : released[..^1], $"Serving; the handoff to pid {pid} was abandoned at the commit");
        channel.TrySend(new AbandonedMessage(reason));
        _logger.HandoffAbandonedAtCommit(pid, reason);
        _metrics.Handoff(HandoffTags.Predecessor, HandoffTags.Abandoned);
        await FinishUpgradeAsync(UpgradeOf(pid), UpgradeOutcome.Abandoned, reason);
    }

    /// <summary>
    /// Reads heartbeats until the successor stops in order (null: keep draining) or is lost (the reason; the drain
    /// is cancelled through <paramref name="lost"/>).
    /// </summary>
    private async Task<string?> WatchSuccessorAsync(HandoffChannel channel, CancellationTokenSource lost, TaskCompletionSource confirmed)
    {
        string reason;
        try
        {
            while (true)
            {
                var message = await channel.ReadAsync(HeartbeatTimeout, _shutdown.Token);
                if (message is HeartbeatMessage)
                {
                    confirmed.TrySetResult();
                    continue;
                }

                if (message is StoppingMessage)
                {
                    confirmed.TrySetResult();
                    return null;
                }

                reason = message switch
                {
                    null => "it closed the handoff connection without stopping in order",
                    FailedMessage failed => $"it sent Failed: {failed.Reason}",
                    _ => $"it sent {message.Type}",
                };
                break;
            }
        }
        catch (TimeoutException)
        {
            reason = $"no heartbeat for {HeartbeatTimeout.TotalSeconds:0} s";
        }
        catch (OperationCanceledException)
        {
            return null;
        }
        catch (Exception ex) when (ex is SocketException or System.ComponentModel.Win32Exception or HandoffProtocolException
            or InvalidDataException or ObjectDisposedException)
        {
            reason = ex.Message;
        }

        await lost.CancelAsync();
        return reason;
    }

    /// <summary>True once the successor has said it lives after the commit; false when it was lost first.</summary>
    private static async Task<bool> SuccessorConfirmedAsync(Task confirmed, Task<string?> watch)
    {
        await Task.WhenAny(confirmed, watch);
        return confirmed.IsCompleted || await watch is null;
    }

    /// <summary>Returns true when the drain ended (all connections closed or the deadline passed).</summary>
    private async Task<bool> DrainAsync(CancellationToken successorLost)
    {
        if (successorLost.IsCancellationRequested)
        {
            return false;
        }

        long start = _time.GetTimestamp();
        var grace = _options.IdleConnectionGracePeriod;
        var deadline = _options.DrainTimeout;
        _logger.DrainStarted(_tracker.Count, grace, deadline);
        try
        {
            if (!await _tracker.WaitUntilEmptyAsync(grace, _time, successorLost))
            {
                _logger.IdleConnectionsClosing(_tracker.RequestCloseAll());
                while (true)
                {
                    var remaining = deadline - _time.GetElapsedTime(start);
                    if (remaining <= TimeSpan.Zero
                        || await _tracker.WaitUntilEmptyAsync(remaining < TimeSpan.FromSeconds(1) ? remaining : TimeSpan.FromSeconds(1), _time, successorLost))
                    {
                        break;
                    }

                    // Connections accepted just before the gate closed may not have been known to Kestrel yet.
                    _tracker.RequestCloseAll();
                }
            }
        }
        catch (OperationCanceledException) when (successorLost.IsCancellationRequested)
        {
            return false;
        }

        int aborted = _tracker.Count > 0 ? _tracker.AbortAll() : 0;
        var took = _time.GetElapsedTime(start);
        _logger.DrainCompleted(took.TotalMilliseconds, aborted);
        _metrics.Drained(took, aborted);
        return true;
    }

    /// <summary>
    /// Releases the participants in order, each off this thread with a deadline. Returns null when every release
    /// ended in time (one that throws is logged: its resource is simply not handed over), or the release that overran,
    /// which is still running; those after it were not asked. <paramref name="released"/> gets every participant asked.
    /// </summary>
    private async Task<Task?> ReleaseParticipantsAsync(List<IHandoffParticipant> released)
    {
        foreach (var participant in _participants)
        {
            released.Add(participant);
            var release = Task.Run(() => participant.ReleaseAsync(_shutdown.Token));
            try
            {
                await release.WaitAsync(ParticipantTimeout, _time);
            }
            catch (TimeoutException) when (!release.IsCompleted)
            {
                _logger.ParticipantOverran(participant.GetType().Name, ParticipantTimeout);
                return release;
            }
            catch (Exception ex)
            {
                _logger.ParticipantFailed("release", ex);
            }
        }

        return null;
    }

    private Task NotifyParticipantsAsync(string stage, Func<IHandoffParticipant, Task> action) =>
        NotifyParticipantsAsync(stage, _participants, action);

    /// <summary>
    /// Runs each participant off this thread with a deadline, so that neither a synchronous nor a hung participant
    /// can stall the handoff; one that fails or overruns is logged and the handoff goes on (an overrunning one is
    /// still observed: what it throws later is logged too).
    /// </summary>
    private async Task NotifyParticipantsAsync(string stage, IReadOnlyList<IHandoffParticipant> participants, Func<IHandoffParticipant, Task> action)
    {
        foreach (var participant in participants)
        {
            var work = Task.Run(() => action(participant));
            try
            {
                await work.WaitAsync(ParticipantTimeout, _time);
            }
            catch (TimeoutException ex) when (!work.IsCompleted)
            {
                _logger.ParticipantFailed(stage, ex);
                _ = work.ContinueWith(static (t, state) => ((ILogger)state!).ParticipantFailed("late", t.Exception!.GetBaseException()), _logger,
                    CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);
            }
            catch (Exception ex)
            {
                _logger.ParticipantFailed(stage, ex);
            }
        }
    }
}
