using System.Diagnostics;
using Microsoft.Extensions.Logging;
using ZeroDowntime.Hosting.Diagnostics;
using ZeroDowntime.Hosting.Listeners;
using ZeroDowntime.Hosting.Logging;
using ZeroDowntime.Hosting.Protocol;
using ZeroDowntime.Hosting.Systemd;
using ZeroDowntime.Hosting.Upgrade;

namespace ZeroDowntime.Hosting.Handoff;

/// <summary>
/// One successor's handoff, seen from the running process: send it the listeners, commit when it is ready, drain,
/// and serve again if it fails or is lost. One at a time holds the handoff slot (<see cref="ProcessRole.HandingOver"/>).
/// </summary>
internal sealed class SuccessorSession
{
    /// <summary>Silence after which a draining predecessor considers its successor lost and accepts again.</summary>
    internal static readonly TimeSpan HeartbeatTimeout = TimeSpan.FromSeconds(5);

    public static readonly TransitionTable<SuccessorSessionState, SuccessorSessionTrigger> Table = new(SuccessorSessionState.Greeting,
        (SuccessorSessionState.Greeting, SuccessorSessionTrigger.Refused, SuccessorSessionState.Refused),
        (SuccessorSessionState.Greeting, SuccessorSessionTrigger.ListenersSent, SuccessorSessionState.Negotiating),
        (SuccessorSessionState.Greeting, SuccessorSessionTrigger.SuccessorFailed, SuccessorSessionState.Failed),
        (SuccessorSessionState.Negotiating, SuccessorSessionTrigger.SuccessorFailed, SuccessorSessionState.Failed),
        (SuccessorSessionState.Negotiating, SuccessorSessionTrigger.ReadyTimedOut, SuccessorSessionState.Failed),
        (SuccessorSessionState.Negotiating, SuccessorSessionTrigger.Ready, SuccessorSessionState.Committing),
        (SuccessorSessionState.Negotiating, SuccessorSessionTrigger.ShutdownWon, SuccessorSessionState.Cancelled),
        (SuccessorSessionState.Committing, SuccessorSessionTrigger.ParticipantOverran, SuccessorSessionState.Abandoned),
        (SuccessorSessionState.Committing, SuccessorSessionTrigger.CommittedSent, SuccessorSessionState.Draining),
        (SuccessorSessionState.Committing, SuccessorSessionTrigger.SuccessorLost, SuccessorSessionState.Resumed),
        (SuccessorSessionState.Draining, SuccessorSessionTrigger.SuccessorReleased, SuccessorSessionState.Released),
        (SuccessorSessionState.Draining, SuccessorSessionTrigger.SuccessorLost, SuccessorSessionState.Resumed),
        (SuccessorSessionState.Draining, SuccessorSessionTrigger.Drained, SuccessorSessionState.Completed),
        (SuccessorSessionState.Released, SuccessorSessionTrigger.Drained, SuccessorSessionState.Completed));

    private readonly HandoffProcess _process;
    private readonly ISuccessorSessionObserver _observer;
    private readonly PredecessorLink? _ownPredecessor;
    private readonly HandoffChannel _channel;
    private readonly HelloMessage _hello;
    private readonly ListenerRegistry _registry;
    private readonly ZeroDowntimeOptions _options;
    private readonly ZeroDowntimeMetrics _metrics;
    private readonly HandoffSocketServer _server;
    private readonly NotifySocketClient _notifySocket;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly int _pid;

    public SuccessorSession(
        HandoffProcess process,
        ISuccessorSessionObserver observer,
        PredecessorLink? ownPredecessor,
        HandoffChannel channel,
        HelloMessage hello,
        ListenerRegistry registry,
        ZeroDowntimeOptions options,
        ZeroDowntimeMetrics metrics,
        HandoffSocketServer server,
        NotifySocketClient notifySocket,
        ILogger logger,
        TimeProvider time)
    {
        _process = process;
        _observer = observer;
        _ownPredecessor = ownPredecessor;
        _channel = channel;
        _hello = hello;
        _registry = registry;
        _options = options;
        _metrics = metrics;
        _server = server;
        _notifySocket = notifySocket;
        _logger = logger;
        _time = time;
        _pid = channel.PeerProcessId;
        Machine = new StateMachine<SuccessorSessionState, SuccessorSessionTrigger>(Table, (from, trigger, to) => _logger.StateChanged(nameof(SuccessorSession), from.ToString(), trigger.ToString(), to.ToString()));
    }

    public StateMachine<SuccessorSessionState, SuccessorSessionTrigger> Machine { get; }

    public int SuccessorPid => _pid;

    /// <summary>True while a live successor may hold (and serve) the listeners this session sent it.</summary>
    public bool SharesListeners => Machine.State is SuccessorSessionState.Negotiating or SuccessorSessionState.Committing
        or SuccessorSessionState.Draining or SuccessorSessionState.Released or SuccessorSessionState.Cancelled;

    public async Task RunAsync()
    {
        if (!TakeSlot())
        {
            return;
        }

        using var activity = ZeroDowntimeMetrics.ActivitySource.StartActivity("zerodowntime.handoff", ActivityKind.Server);
        activity?.SetTag(ZeroDowntimeMetrics.RoleTag, HandoffTags.Predecessor);
        activity?.SetTag("zerodowntime.successor.pid", _pid);
        activity?.SetTag("zerodowntime.protocol.version", (int)_hello.Version);
        try
        {
            long greeted = _time.GetTimestamp();
            if (_ownPredecessor is not null && !await _ownPredecessor.ReleasePredecessorAsync())
            {
                // Revoked by its own predecessor, which serves again: this process hands nothing on. The successor
                // is refused as by any process that no longer serves, and greets whoever serves the path next.
                Refuse(RefusalReason.AlreadyHandedOver, $"pid {Environment.ProcessId} was revoked by its own predecessor, which serves again");
                return;
            }

            int count = _registry.SendActiveListeners(listeners => _channel.Send(
                new WelcomeMessage(_hello.Version, Environment.ProcessId, listeners.Select(l => l.Describe()).ToArray(),
                    _metrics.Generation, _process.FirstStartUnixMilliseconds),
                listeners.Select(l => l.Fd).ToArray()));
            Machine.TryFire(SuccessorSessionTrigger.ListenersSent);
            _logger.HandoffRequested(_pid, count);
            activity?.AddEvent(new ActivityEvent("listeners sent", tags: new() { ["count"] = count }));

            if (!await WaitForReadyAsync(greeted))
            {
                activity?.SetStatus(ActivityStatusCode.Error, "successor not ready");
                return;
            }

            _logger.SuccessorReady(_pid, _time.GetElapsedTime(greeted).TotalMilliseconds);
            activity?.AddEvent(new ActivityEvent("ready"));
            _observer.SuccessorReady(_pid);
            await CommitAndDrainAsync(greeted, activity);
        }
        catch (HandoffChannelException ex)
        {
            // The welcome could not be sent: the successor is gone already.
            _logger.HandoffProtocolError(_pid, ex.Message);
            Machine.TryFire(SuccessorSessionTrigger.SuccessorFailed);
        }
        finally
        {
            // Still (or again) the server: the slot is free now, and not before (a resuming process re-acquires and
            // tells this successor Abandoned first, so that no next successor's release can overlap it). After the
            // commit, or when a shutdown began first, there is no such arrow and nothing changes.
            _process.HandoffEnded();
        }
    }

    /// <summary>Checks the greeting and takes the one handoff slot; refuses with the reason otherwise.</summary>
    private bool TakeSlot()
    {
        // Speak the successor's version when this build still speaks it: an older build hands over to a newer one
        // and back. A newer successor is told our newest version and greets again in it.
        if (_hello.Version is < HandoffProtocol.MinimumVersion or > HandoffProtocol.Version)
        {
            return Refuse(RefusalReason.VersionMismatch,
                $"protocol version mismatch: this process (pid {Environment.ProcessId}) speaks v{HandoffProtocol.MinimumVersion} to v{HandoffProtocol.Version}, the successor speaks v{_hello.Version}");
        }

        if (!string.Equals(_hello.ApplicationId, _options.ApplicationId, StringComparison.Ordinal))
        {
            return Refuse(RefusalReason.ApplicationMismatch,
                $"this socket serves application '{_options.ApplicationId}', the successor is '{_hello.ApplicationId}'");
        }

        if (_process.TryTakeHandoffSlot(this))
        {
            return true;
        }

        return _process.Role switch
        {
            ProcessRole.HandingOver => Refuse(RefusalReason.Busy, $"another handoff from pid {Environment.ProcessId} is in progress"),
            ProcessRole.ShuttingDown => Refuse(RefusalReason.AlreadyHandedOver, $"pid {Environment.ProcessId} is shutting down"),
            _ => Refuse(RefusalReason.AlreadyHandedOver, $"pid {Environment.ProcessId} has already handed over and is draining"),
        };
    }

    private bool Refuse(RefusalReason reason, string detail)
    {
        _logger.HandoffRefused(_pid, _channel.PeerUserId, detail);
        // The observer may wait for the refused successor's exit code: not on this connection's time.
        var ending = FinishAsync(SuccessorSessionTrigger.Refused, HandoffTags.Refused, UpgradeOutcome.Refused, detail);
        _ = BackgroundWork.Start("end of a refused handoff", () => ending, _logger);
        _channel.TrySend(new RefusedMessage(reason, HandoffProtocol.Version, HandoffProtocol.FitText(detail)));
        return false;
    }

    /// <summary>True on Ready; false (the session Failed, the slot freed by the caller) on anything else.</summary>
    private async Task<bool> WaitForReadyAsync(long greeted)
    {
        var options = _options;
        while (true)
        {
            var remaining = options.HandoffTimeout - _time.GetElapsedTime(greeted);
            HandoffMessage message;
            try
            {
                message = await _channel.ReadAsync(remaining > TimeSpan.Zero ? remaining : TimeSpan.Zero, _process.ShutdownToken);
            }
            catch (HandoffChannelException ex) when (ex.Error == HandoffChannelError.TimedOut)
            {
                _channel.TrySend(new AbandonedMessage($"not ready within the handoff timeout of {options.HandoffTimeout}"));
                _logger.SuccessorTimedOut(_pid, options.HandoffTimeout);
                return await FailAsync(SuccessorSessionTrigger.ReadyTimedOut, HandoffTags.Abandoned, UpgradeOutcome.Abandoned,
                    $"not ready within the handoff timeout of {options.HandoffTimeout}");
            }
            catch (HandoffChannelException ex) when (ex.Error == HandoffChannelError.ProtocolViolation)
            {
                _channel.TrySend(new AbandonedMessage(HandoffProtocol.FitText($"protocol error: {ex.Message}")));
                _logger.HandoffProtocolError(_pid, ex.Message);
                return await FailAsync(SuccessorSessionTrigger.SuccessorFailed, HandoffTags.Failed, UpgradeOutcome.Failed, $"protocol error: {ex.Message}");
            }
            catch (HandoffChannelException)
            {
                const string Disconnected = "it disconnected before it was ready: it exited or crashed during start-up";
                _logger.SuccessorFailed(_pid, Disconnected);
                return await FailAsync(SuccessorSessionTrigger.SuccessorFailed, HandoffTags.Failed, UpgradeOutcome.Failed, Disconnected);
            }

            switch (message)
            {
                case ReadyMessage when _channel.HasPendingData:
                    // Read late (this process was frozen), a Ready may have been withdrawn since: the successor gave up
                    // waiting for the commit and said why. Then it is not ready for anything.
                    continue;
                case ReadyMessage:
                    return true;
                case FailedMessage failed:
                    _logger.SuccessorFailed(_pid, failed.Reason);
                    return await FailAsync(SuccessorSessionTrigger.SuccessorFailed, HandoffTags.Failed, UpgradeOutcome.Failed, failed.Reason);
                default:
                    _channel.TrySend(new AbandonedMessage($"unexpected {message.Type} before Ready"));
                    _logger.HandoffProtocolError(_pid, $"sent {message.Type} before Ready");
                    return await FailAsync(SuccessorSessionTrigger.SuccessorFailed, HandoffTags.Failed, UpgradeOutcome.Failed, $"it sent {message.Type} before Ready");
            }
        }
    }

    private async Task<bool> FailAsync(SuccessorSessionTrigger trigger, string tag, UpgradeOutcome outcome, string reason)
    {
        await FinishAsync(trigger, tag, outcome, reason);
        return false;
    }

    /// <summary>
    /// The one place where an outcome of this session is written: its machine's arrow (<paramref name="trigger"/>; none
    /// when the caller fired it already), the <c>zerodowntime.handoffs</c> outcome on the predecessor's side
    /// (<paramref name="tag"/>; none when a later outcome counts), and the observer (the upgrade that started this successor, if any), which hears it
    /// last, so that whoever it answers finds everything else done.
    /// </summary>
    private Task FinishAsync(SuccessorSessionTrigger? trigger, string? tag, UpgradeOutcome outcome, string reason)
    {
        if (trigger is { } arrow)
        {
            Machine.TryFire(arrow);
        }

        if (tag is not null)
        {
            _metrics.Handoff(HandoffTags.Predecessor, tag);
        }

        return _observer.SessionEndedAsync(_pid, outcome, reason);
    }

    private async Task CommitAndDrainAsync(long greeted, Activity? activity)
    {
        long readyAt = _time.GetTimestamp();

        // Commit point: from here the successor is the server. Stop accepting first, so that when the successor
        // hears "committed" this process takes no new connection. The handoff socket stays open (answering
        // "already handed over", which successors retry) until the successor renames its own over the path.
        // A plain shutdown that began meanwhile wins: this process is stopping, so it hands over to nobody.
        if (_process.TryBeginCommit() is { } why)
        {
            _channel.TrySend(new AbandonedMessage(why));
            await FinishAsync(SuccessorSessionTrigger.ShutdownWon, HandoffTags.Abandoned, UpgradeOutcome.Abandoned, why);
            return;
        }

        Machine.TryFire(SuccessorSessionTrigger.Ready);
        var released = new List<IHandoffParticipant>();
        if (await _process.ReleaseParticipantsAsync(released) is { } overrun)
        {
            await AbandonAtCommitAsync(readyAt, released, overrun);
            activity?.SetStatus(ActivityStatusCode.Error, "abandoned at the commit");
            return;
        }

        // Goodbye on every response from now on, before the successor can log that it serves alone.
        _process.BeginDrainAfterCommit();

        // The watch never outlives this method: every path below has ended it before returning (the Drained path stops
        // it), so that it neither cancels a disposed source nor reads a channel that the connection's owner disposes
        // once this session returns. (It did both on the Drained path: an ObjectDisposedException in a task nobody
        // observed, issue 18 item 10.)
        using var lost = new CancellationTokenSource();
        using var stopWatching = CancellationTokenSource.CreateLinkedTokenSource(_process.ShutdownToken);
        var confirmed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Task<string?> watch;
        bool committedSent = _channel.TrySend(new CommittedMessage());
        if (committedSent)
        {
            _metrics.HandoffDuration(HandoffTags.Predecessor, _time.GetElapsedTime(greeted));
            activity?.AddEvent(new ActivityEvent("committed"));
            await FinishAsync(SuccessorSessionTrigger.CommittedSent, HandoffTags.Committed, UpgradeOutcome.Committed, "committed");
            watch = WatchSuccessorAsync(lost, confirmed, stopWatching.Token);
        }
        else
        {
            watch = Task.FromResult<string?>("the connection broke at the commit");
            await lost.CancelAsync();
            await FinishAsync(null, null, UpgradeOutcome.Failed, "the connection broke at the commit"); // counted as revoked below
        }

        _notifySocket.Status($"Handed over to pid {_pid}; draining");

        // Exit only once the successor has confirmed that it serves (its first heartbeat follows Committed at once):
        // an empty drain is over in no time, and a successor that gave up meanwhile must not be left as the server.
        // And only once it serves the handoff socket: until its rename, this process's socket is the one at the path,
        // and closing it would leave a dead file there, which a newcomer (or `zerodowntime status`) takes for a stale one.
        if (await _process.DrainAfterHandoffAsync(lost.Token) && await SuccessorConfirmedAsync(confirmed.Task, watch)
            && await SuccessorServesThePathAsync(watch) && Machine.TryFire(SuccessorSessionTrigger.Drained))
        {
            activity?.AddEvent(new ActivityEvent("drained"));
            await stopWatching.CancelAsync();
            await watch;
            _logger.Exiting(_pid);
            _process.ExitAfterHandoff();
            return;
        }

        // The successor died or froze after the commit: nobody else accepts. Serve again, as if the handoff never
        // happened, and tell the successor (should it wake up) that it must stop.
        string reason = await watch ?? "unknown";
        // (Its upgrade, if any, ended at the commit: the observer has nothing more to answer.)
        await FinishAsync(SuccessorSessionTrigger.SuccessorLost, HandoffTags.Revoked, UpgradeOutcome.Failed, reason);
        _logger.SuccessorLost(_pid, reason);
        activity?.SetStatus(ActivityStatusCode.Error, "successor lost; revoked");
        _channel.TrySend(new RevokedMessage(HandoffProtocol.FitText(reason)));

        // Committed never went out: no successor acquired anything, so the participants take back exactly what they
        // released. Otherwise the successor may have used the resources before it was lost.
        await _process.ServeAgainAsync(drainBegan: true, committedSent ? HandoffAcquireReason.Reclaimed : HandoffAcquireReason.NotCommitted,
            participants: null, $"Serving again; successor pid {_pid} was lost", HandoffSocketStep.ServeAgain);
    }

    /// <summary>
    /// A participant overran its release at the commit. The successor must not acquire while the release still runs,
    /// so this process does not commit: it waits for the release to end (within what is left of the handoff timeout,
    /// so that the successor, which waits for the commit that long and 5 s more, does not give up first), acquires
    /// again what it released, reopens its gate and tells the successor the handoff is abandoned.
    /// </summary>
    private async Task AbandonAtCommitAsync(long readyAt, List<IHandoffParticipant> released, Task overrun)
    {
        Machine.TryFire(SuccessorSessionTrigger.ParticipantOverran);
        var remaining = _options.HandoffTimeout - _time.GetElapsedTime(readyAt);
        try
        {
            await overrun.WaitAsync(remaining > TimeSpan.Zero ? remaining : TimeSpan.Zero, _time, _process.ShutdownToken);
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
            ? $"a handoff participant overran its {ParticipantRunner.Timeout.TotalSeconds:0} s at the commit"
            : $"a handoff participant overran its {ParticipantRunner.Timeout.TotalSeconds:0} s at the commit and is still running");
        await _process.ServeAgainAsync(drainBegan: false, HandoffAcquireReason.NotCommitted, overrun.IsCompleted ? released : released[..^1],
            $"Serving; the handoff to pid {_pid} was abandoned at the commit", HandoffSocketStep.Keep);
        _channel.TrySend(new AbandonedMessage(reason));
        _logger.HandoffAbandonedAtCommit(_pid, reason);
        await FinishAsync(null, HandoffTags.Abandoned, UpgradeOutcome.Abandoned, reason);
    }

    /// <summary>
    /// Reads heartbeats until the successor releases this process (null: keep draining) or is lost (the reason; the
    /// drain is cancelled through <paramref name="lost"/>).
    /// </summary>
    private async Task<string?> WatchSuccessorAsync(CancellationTokenSource lost, TaskCompletionSource confirmed, CancellationToken stop)
    {
        string reason;
        try
        {
            while (true)
            {
                var message = await _channel.ReadAsync(HeartbeatTimeout, stop);
                if (message is HeartbeatMessage)
                {
                    confirmed.TrySetResult();
                    continue;
                }

                if (message is ReleaseMessage)
                {
                    Machine.TryFire(SuccessorSessionTrigger.SuccessorReleased);
                    confirmed.TrySetResult();

                    // Never serving again: this process's copies of the listeners go at once (the successor holds
                    // its own), so that no endpoint that the successors dropped or closed keeps a queue here that
                    // nobody serves. Closing the connection answers the Release: a Revoked could no longer follow.
                    _process.StopListeningForGood();
                    _channel.Dispose();
                    _logger.PredecessorReleasedBySuccessor(_pid);
                    return null;
                }

                reason = message is FailedMessage failed ? $"it sent Failed: {failed.Reason}" : $"it sent {message.Type}";
                break;
            }
        }
        catch (HandoffChannelException ex)
        {
            reason = ex.Error switch
            {
                HandoffChannelError.TimedOut => $"no heartbeat for {HeartbeatTimeout.TotalSeconds:0} s",
                HandoffChannelError.Closed when ex.InnerException is null => "it closed the handoff connection without stopping in order",
                _ => ex.Message,
            };
        }
        catch (OperationCanceledException)
        {
            _logger.SuccessorWatchEnded(_pid, "this process stops");
            return null;
        }

        _logger.SuccessorWatchEnded(_pid, reason);
        await lost.CancelAsync();
        return reason;
    }

    /// <summary>
    /// Waits until the successor has renamed its handoff socket over the path (it does so after acquiring the
    /// participants, which is after its first heartbeat, on purpose: nothing slow may delay the heartbeats). No message
    /// says so, hence a look at the path every 10 ms, for at most the handoff timeout. False when the successor was
    /// lost meanwhile. A successor that released this process (it stops in order) may never serve the path: no wait.
    /// </summary>
    private async Task<bool> SuccessorServesThePathAsync(Task<string?> watch)
    {
        if (Machine.State == SuccessorSessionState.Released || !_server.PathNamesThisSocket)
        {
            return true;
        }

        long since = _time.GetTimestamp();
        using var tick = new PeriodicTimer(TimeSpan.FromMilliseconds(10), _time);
        while (_server.PathNamesThisSocket)
        {
            if (watch.IsCompleted && await watch is not null)
            {
                return false;
            }

            if (_time.GetElapsedTime(since) >= _options.HandoffTimeout)
            {
                _logger.SuccessorNotServingThePath(_pid, _options.HandoffTimeout);
                return true;
            }

            await tick.WaitForNextTickAsync();
        }

        return true;
    }

    /// <summary>True once the successor has said it lives after the commit; false when it was lost first.</summary>
    private static async Task<bool> SuccessorConfirmedAsync(Task confirmed, Task<string?> watch)
    {
        await Task.WhenAny(confirmed, watch);
        return confirmed.IsCompleted || await watch is null;
    }
}
