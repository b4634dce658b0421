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
        (SuccessorSessionState.Released, SuccessorSessionTrigger.Drained, SuccessorSessionState.Completed),
        (SuccessorSessionState.Committing, SuccessorSessionTrigger.CommittedOnProbation, SuccessorSessionState.DrainingOnProbation),
        (SuccessorSessionState.DrainingOnProbation, SuccessorSessionTrigger.Drained, SuccessorSessionState.OnProbation),
        (SuccessorSessionState.DrainingOnProbation, SuccessorSessionTrigger.ProbationEnded, SuccessorSessionState.Draining),
        (SuccessorSessionState.DrainingOnProbation, SuccessorSessionTrigger.RollbackRequested, SuccessorSessionState.RollingBack),
        (SuccessorSessionState.DrainingOnProbation, SuccessorSessionTrigger.SuccessorLost, SuccessorSessionState.Resumed),
        (SuccessorSessionState.DrainingOnProbation, SuccessorSessionTrigger.SuccessorReleased, SuccessorSessionState.Released),
        (SuccessorSessionState.OnProbation, SuccessorSessionTrigger.RollbackRequested, SuccessorSessionState.RollingBack),
        (SuccessorSessionState.OnProbation, SuccessorSessionTrigger.ProbationEnded, SuccessorSessionState.Completed),
        (SuccessorSessionState.OnProbation, SuccessorSessionTrigger.SuccessorLost, SuccessorSessionState.Resumed),
        (SuccessorSessionState.OnProbation, SuccessorSessionTrigger.SuccessorReleased, SuccessorSessionState.Released),
        (SuccessorSessionState.RollingBack, SuccessorSessionTrigger.HandedBack, SuccessorSessionState.RolledBack),
        (SuccessorSessionState.RollingBack, SuccessorSessionTrigger.SuccessorLost, SuccessorSessionState.Resumed),
        (SuccessorSessionState.RollingBack, SuccessorSessionTrigger.SuccessorReleased, SuccessorSessionState.Released));

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

    /// <summary>How long this process stands by after the commit: the successor asked for it and knows probation; null otherwise.</summary>
    private readonly TimeSpan? _probation;
    private long _rollbackRequestedAt;
    private RollbackOrigin _rollbackOrigin;
    private string _rollbackReason = "";
    private bool _rollbackAccepted;
    private bool _handedBackAllReleased;
    private long _rolledBackUnixMilliseconds;

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
        _probation = hello.Features is { } features && features.HasFlag(HandoffFeatures.Probation) && hello.ProbationMilliseconds > 0
            ? TimeSpan.FromMilliseconds(Math.Min(hello.ProbationMilliseconds, (long)Probation.ProbationSettingsValidator.MaxDuration.TotalMilliseconds))
            : null;
        Machine = new StateMachine<SuccessorSessionState, SuccessorSessionTrigger>(Table, (from, trigger, to) => _logger.StateChanged(nameof(SuccessorSession), from.ToString(), trigger.ToString(), to.ToString()));
    }

    public StateMachine<SuccessorSessionState, SuccessorSessionTrigger> Machine { get; }

    public int SuccessorPid => _pid;

    /// <summary>True while a live successor may hold (and serve) the listeners this session sent it.</summary>
    public bool SharesListeners => Machine.State is SuccessorSessionState.Negotiating or SuccessorSessionState.Committing
        or SuccessorSessionState.Draining or SuccessorSessionState.Released or SuccessorSessionState.Cancelled
        or SuccessorSessionState.DrainingOnProbation or SuccessorSessionState.OnProbation or SuccessorSessionState.RollingBack;

    /// <summary>The probation of this handoff as <c>zerodowntime status</c> reports it once this process serves again after a rollback (None otherwise).</summary>
    public ProbationStatusMessage ProbationStatus() => Machine.State == SuccessorSessionState.RolledBack
        ? new ProbationStatusMessage(ProbationState.RolledBack, _pid, Interlocked.Read(ref _rolledBackUnixMilliseconds), HandoffProtocol.FitText(_rollbackReason))
        : new ProbationStatusMessage(ProbationState.None, 0, 0, "");

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
                    _metrics.Generation, _process.FirstStartUnixMilliseconds,
                    _hello.Features is null ? null : HandoffFeatures.Probation), // only to a build that decodes it
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
            ProcessRole.HandingBack => Refuse(RefusalReason.AlreadyHandedOver, $"pid {Environment.ProcessId} is rolling back to its predecessor"),
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
        // observed, issue 18 item 10.) The drain ends early when the successor is lost or asks for a rollback.
        using var stopDraining = new CancellationTokenSource();
        using var stopWatching = CancellationTokenSource.CreateLinkedTokenSource(_process.ShutdownToken);
        var confirmed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Task<string?> watch;
        bool committedSent = _channel.TrySend(new CommittedMessage());
        if (committedSent)
        {
            _metrics.HandoffDuration(HandoffTags.Predecessor, _time.GetElapsedTime(greeted));
            activity?.AddEvent(new ActivityEvent("committed"));
            await FinishAsync(_probation is null ? SuccessorSessionTrigger.CommittedSent : SuccessorSessionTrigger.CommittedOnProbation,
                HandoffTags.Committed, UpgradeOutcome.Committed, "committed");
            if (_probation is { } window)
            {
                var endsAt = _time.GetUtcNow() + window;
                _logger.StandingBy(_pid, endsAt);
                _observer.ProbationChanged(_pid, new ProbationUpdateMessage(ProbationProgress.Started, endsAt.ToUnixTimeMilliseconds(), RollbackOrigin.None, ""));
                _ = BackgroundWork.Start("end of the probation window", () => EndProbationWhenDueAsync(window, stopWatching), _logger);
            }
            else
            {
                _observer.ProbationChanged(_pid, new ProbationUpdateMessage(ProbationProgress.None, 0, RollbackOrigin.None,
                    _hello.Features is null ? "the new release's build has no probation" : "the new release asks for no probation (ZeroDowntime:Probation:Duration is 0)"));
            }

            watch = WatchSuccessorAsync(stopDraining, confirmed, stopWatching.Token);
        }
        else
        {
            watch = Task.FromResult<string?>("the connection broke at the commit");
            await stopDraining.CancelAsync();
            await FinishAsync(null, null, UpgradeOutcome.Failed, "the connection broke at the commit"); // counted as revoked below
        }

        _notifySocket.Status($"Handed over to pid {_pid}; draining");

        // Exit only once the successor has confirmed that it serves (its first heartbeat follows Committed at once):
        // an empty drain is over in no time, and a successor that gave up meanwhile must not be left as the server.
        // And only once it serves the handoff socket: until its rename, this process's socket is the one at the path,
        // and closing it would leave a dead file there, which a newcomer (or `zerodowntime status`) takes for a stale one.
        if (await _process.DrainAfterHandoffAsync(stopDraining.Token) && await SuccessorConfirmedAsync(confirmed.Task, watch)
            && await SuccessorServesThePathAsync(watch) && Machine.TryFire(SuccessorSessionTrigger.Drained))
        {
            activity?.AddEvent(new ActivityEvent("drained"));
            if (Machine.State != SuccessorSessionState.OnProbation)
            {
                await stopWatching.CancelAsync();
                await watch;
                _logger.Exiting(_pid);
                _process.ExitAfterHandoff();
                return;
            }

            // On probation: stand by, warm, holding the listener copies, until the window ends (which stops the watch),
            // the successor asks for a rollback, is lost, or releases this process.
            _notifySocket.Status($"Handed over to pid {_pid}; standing by on probation");
        }

        string? lostReason = await watch;

        // Whatever follows, the window's timer has nothing more to decide (its arrows are gone) and must not outlive
        // this session for the rest of a long window.
        await stopWatching.CancelAsync();
        switch (Machine.State)
        {
            case SuccessorSessionState.Completed:
                // The window ended without a rollback (or this process stops): exit as after any handoff.
                _logger.Exiting(_pid);
                _process.ExitAfterHandoff();
                return;
            case SuccessorSessionState.Released when _rollbackAccepted:
                // Released while it rolled back: the gate and copies closed again (WithdrawRollback); drain what was
                // accepted meanwhile, and never serve again.
                await _process.DrainAsync(CancellationToken.None);
                _process.ExitAfterHandoff();
                return;
            case SuccessorSessionState.Released:
                _logger.Exiting(_pid);
                _process.ExitAfterHandoff();
                return;
            case SuccessorSessionState.RolledBack:
                await CompleteRollbackAsync();
                return;
        }

        if (lostReason is null && _process.HostStoppingToken.IsCancellationRequested)
        {
            // The watch ended because this process stops (SIGTERM during a rollback, before HandedBack): the service is
            // being stopped, so this process neither serves again nor revokes anyone; its own shutdown closes the gate.
            return;
        }

        // The successor died or froze after the commit: nobody else accepts. Serve again, as if the handoff never
        // happened, and tell the successor (should it wake up) that it must stop.
        string reason = lostReason ?? "unknown";
        // (Its upgrade, if any, ended at the commit: the observer has nothing more to answer.)
        bool onProbation = Machine.State is SuccessorSessionState.DrainingOnProbation or SuccessorSessionState.OnProbation or SuccessorSessionState.RollingBack;
        await FinishAsync(SuccessorSessionTrigger.SuccessorLost, HandoffTags.Revoked, UpgradeOutcome.Failed, reason);
        _logger.SuccessorLost(_pid, reason);
        activity?.SetStatus(ActivityStatusCode.Error, "successor lost; revoked");
        _channel.TrySend(new RevokedMessage(HandoffProtocol.FitText(reason)));
        if (onProbation)
        {
            _observer.ProbationChanged(_pid, new ProbationUpdateMessage(ProbationProgress.EndedEarly, 0, RollbackOrigin.None, HandoffProtocol.FitText($"pid {_pid} was lost during its probation: {reason}")));
        }

        if (_rollbackAccepted)
        {
            // The gate is open already (the rollback began): take everything back, as the rollback would have.
            await _process.CompleteRollbackAsync(HandoffAcquireReason.Reclaimed, $"Serving again; successor pid {_pid} was lost while it rolled back");
            return;
        }

        // Committed never went out: no successor acquired anything, so the participants take back exactly what they
        // released. Otherwise the successor may have used the resources before it was lost.
        await _process.ServeAgainAsync(drainBegan: true, committedSent ? HandoffAcquireReason.Reclaimed : HandoffAcquireReason.NotCommitted,
            participants: null, $"Serving again; successor pid {_pid} was lost", HandoffSocketStep.ServeAgain);
    }

    /// <summary>
    /// The probation window of this handoff: when it ends (or this process begins to stop) before a rollback was
    /// accepted, the successor hears ProbationEnded and has no way back; a stand-by that is over wakes up and exits.
    /// </summary>
    private async Task EndProbationWhenDueAsync(TimeSpan window, CancellationTokenSource stopWatching)
    {
        string reason;
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(stopWatching.Token, _process.HostStoppingToken);
        try
        {
            await Task.Delay(window, _time, stop.Token);
            reason = $"the probation window of {window} ended";
        }
        catch (OperationCanceledException)
        {
            if (!_process.HostStoppingToken.IsCancellationRequested || stopWatching.IsCancellationRequested)
            {
                return; // the session ended first
            }

            reason = $"pid {Environment.ProcessId} is stopping";
        }

        if (!Machine.TryFire(SuccessorSessionTrigger.ProbationEnded))
        {
            return; // a rollback, a release or a lost successor came first
        }

        _channel.TrySend(new ProbationEndedMessage(HandoffProtocol.FitText(reason)));
        _logger.ProbationPassed(_pid, reason);
        _observer.ProbationChanged(_pid, new ProbationUpdateMessage(ProbationProgress.Passed, 0, RollbackOrigin.None, HandoffProtocol.FitText(reason)));
        if (Machine.State == SuccessorSessionState.Completed)
        {
            try
            {
                await stopWatching.CancelAsync(); // wakes the stand-by
            }
            catch (ObjectDisposedException)
            {
            }
        }
    }

    /// <summary>
    /// RollbackRequest within the window: this process serves again first (gate open, dropped endpoints bound
    /// again, the drain's goodbye over), then says RollbackAccepted, so that the successor closes its gate only once
    /// this one is open. Refused (ProbationEnded) when the role cannot serve again.
    /// </summary>
    private async Task AcceptRollbackAsync(RollbackRequestMessage request, CancellationTokenSource stopDraining)
    {
        if (!Machine.TryFire(SuccessorSessionTrigger.RollbackRequested))
        {
            return; // the window ended first: ProbationEnded went out, and is the successor's answer
        }

        _rollbackRequestedAt = _time.GetTimestamp();
        _rollbackOrigin = request.Origin;
        _rollbackReason = request.Reason;
        if (!_process.TryResumeForRollback())
        {
            _channel.TrySend(new ProbationEndedMessage($"pid {Environment.ProcessId} can no longer serve"));
            return;
        }

        // The answer first: every millisecond until the successor closes its gate is shared accepting, harmless, but
        // the drain's end (its cancellation runs the drain's own bookkeeping) and the log can wait.
        _rollbackAccepted = true;
        _channel.TrySend(new RollbackAcceptedMessage());
        await stopDraining.CancelAsync();
        _logger.RollbackAccepted(_pid, PredecessorLink.OriginName(request.Origin), request.Reason);
        _notifySocket.Status($"Rolling back from pid {_pid}: {request.Reason}");
    }

    /// <summary>HandedBack: everything is this process's again; the successor drains and exits 81.</summary>
    private async Task CompleteRollbackAsync()
    {
        double milliseconds = _time.GetElapsedTime(_rollbackRequestedAt).TotalMilliseconds;
        string origin = PredecessorLink.OriginName(_rollbackOrigin);
        await _process.CompleteRollbackAsync(_handedBackAllReleased ? HandoffAcquireReason.RolledBack : HandoffAcquireReason.Reclaimed,
            $"Serving again; rolled back from pid {_pid}: {_rollbackReason}");
        _metrics.RolledBack(HandoffTags.Predecessor, origin);
        Interlocked.Exchange(ref _rolledBackUnixMilliseconds, _time.GetUtcNow().ToUnixTimeMilliseconds());
        _logger.RolledBack(_pid, origin, _rollbackReason, milliseconds);
        _observer.ProbationChanged(_pid, new ProbationUpdateMessage(ProbationProgress.RolledBack, 0, _rollbackOrigin, HandoffProtocol.FitText(_rollbackReason)));
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
        RollbackRequestMessage? readLate = null;
        try
        {
            while (true)
            {
                var message = await _channel.ReadAsync(HeartbeatTimeout, stop);
                if (message is HeartbeatMessage)
                {
                    confirmed.TrySetResult();
                    if (readLate is { } request && !_channel.HasPendingData)
                    {
                        readLate = null;
                        await AcceptRollbackAsync(request, lost);
                    }

                    continue;
                }

                if (message is RollbackRequestMessage rollback)
                {
                    // Read late (this process was frozen), a request may have been given up since: the successor then
                    // released this process, and the Release is behind it. Read on first.
                    if (_channel.HasPendingData)
                    {
                        readLate = rollback;
                        continue;
                    }

                    await AcceptRollbackAsync(rollback, lost);
                    continue;
                }

                if (message is HandedBackMessage handedBack && Machine.TryFire(SuccessorSessionTrigger.HandedBack))
                {
                    // From here this process is the owner again; the successor drains and leaves, unwatched.
                    _handedBackAllReleased = handedBack.AllReleased;
                    return null;
                }

                if (message is ReleaseMessage)
                {
                    var was = Machine.State;
                    Machine.TryFire(SuccessorSessionTrigger.SuccessorReleased);
                    confirmed.TrySetResult();
                    bool wasRollingBack = was == SuccessorSessionState.RollingBack;
                    if (was is SuccessorSessionState.DrainingOnProbation or SuccessorSessionState.OnProbation or SuccessorSessionState.RollingBack)
                    {
                        _observer.ProbationChanged(_pid, new ProbationUpdateMessage(ProbationProgress.EndedEarly, 0, RollbackOrigin.None,
                            $"pid {_pid} released this process (it stops, or a further upgrade began) before the window ended"));
                    }

                    if (wasRollingBack)
                    {
                        _process.WithdrawRollback();
                        _logger.RollbackWithdrawn(_pid);
                    }

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
            // Lost, or rolled back meanwhile (HandedBack while this process still waited here): no more waiting.
            if (watch.IsCompleted && (await watch is not null || Machine.State == SuccessorSessionState.RolledBack))
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
