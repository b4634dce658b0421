using System.Diagnostics;
using Microsoft.Extensions.Logging;
using ZeroDowntime.Hosting.Diagnostics;
using ZeroDowntime.Hosting.Listeners;
using ZeroDowntime.Hosting.Logging;
using ZeroDowntime.Hosting.Probation;
using ZeroDowntime.Hosting.Protocol;
using ZeroDowntime.Hosting.Testing;

namespace ZeroDowntime.Hosting.Handoff;

/// <summary>
/// The successor's side: take the listeners over before Kestrel binds, say Ready once the host has started, own them
/// after the commit, and heartbeat to the draining predecessor until it exits or this process releases it.
/// </summary>
internal sealed class PredecessorLink : IDisposable
{
    /// <summary>The deadline of each single protocol step (connect, greeting, welcome).</summary>
    internal static readonly TimeSpan ReadTimeout = TimeSpan.FromSeconds(5);

    /// <summary>How often a successor tells its draining predecessor that it is alive.</summary>
    internal static readonly TimeSpan HeartbeatInterval = TimeSpan.FromSeconds(1);

    /// <summary>
    /// How long a Release waits for the predecessor's answer: this build closes the connection at once (or a Revoked
    /// that crossed the Release arrives first); a build of before this rule keeps it open until it exits, and is
    /// taken as released after this wait.
    /// </summary>
    internal static readonly TimeSpan ReleaseAnswerTimeout = TimeSpan.FromSeconds(2);

    public static readonly TransitionTable<PredecessorLinkState, PredecessorLinkTrigger> Table = new(PredecessorLinkState.Probing,
        (PredecessorLinkState.Probing, PredecessorLinkTrigger.NoPredecessor, PredecessorLinkState.Alone),
        (PredecessorLinkState.Probing, PredecessorLinkTrigger.AskAgain, PredecessorLinkState.Probing),
        (PredecessorLinkState.Probing, PredecessorLinkTrigger.Refused, PredecessorLinkState.Refused),
        (PredecessorLinkState.Probing, PredecessorLinkTrigger.Welcomed, PredecessorLinkState.TakingOver),
        (PredecessorLinkState.TakingOver, PredecessorLinkTrigger.Failed, PredecessorLinkState.Stopped),
        (PredecessorLinkState.TakingOver, PredecessorLinkTrigger.HostStopping, PredecessorLinkState.Stopped),
        (PredecessorLinkState.TakingOver, PredecessorLinkTrigger.AbandonedWhileStarting, PredecessorLinkState.Abandoned),
        (PredecessorLinkState.TakingOver, PredecessorLinkTrigger.ReadySent, PredecessorLinkState.AwaitingCommit),
        (PredecessorLinkState.AwaitingCommit, PredecessorLinkTrigger.Committed, PredecessorLinkState.Owner),
        (PredecessorLinkState.AwaitingCommit, PredecessorLinkTrigger.PredecessorVanished, PredecessorLinkState.Alone),
        (PredecessorLinkState.AwaitingCommit, PredecessorLinkTrigger.Abandoned, PredecessorLinkState.Abandoned),
        (PredecessorLinkState.AwaitingCommit, PredecessorLinkTrigger.CommitTimedOut, PredecessorLinkState.Abandoned),
        (PredecessorLinkState.AwaitingCommit, PredecessorLinkTrigger.HostStopping, PredecessorLinkState.Stopped),
        (PredecessorLinkState.AwaitingCommit, PredecessorLinkTrigger.Failed, PredecessorLinkState.Stopped),
        (PredecessorLinkState.Owner, PredecessorLinkTrigger.Revoked, PredecessorLinkState.Abandoned),
        (PredecessorLinkState.Owner, PredecessorLinkTrigger.PredecessorExited, PredecessorLinkState.Alone),
        (PredecessorLinkState.Owner, PredecessorLinkTrigger.ReleasedPredecessor, PredecessorLinkState.Released),
        (PredecessorLinkState.Released, PredecessorLinkTrigger.Revoked, PredecessorLinkState.Abandoned),
        (PredecessorLinkState.AwaitingCommit, PredecessorLinkTrigger.CommittedOnProbation, PredecessorLinkState.OnProbation),
        (PredecessorLinkState.OnProbation, PredecessorLinkTrigger.RollbackRequested, PredecessorLinkState.RollingBack),
        (PredecessorLinkState.OnProbation, PredecessorLinkTrigger.ProbationEnded, PredecessorLinkState.Owner),
        (PredecessorLinkState.OnProbation, PredecessorLinkTrigger.PredecessorExited, PredecessorLinkState.Alone),
        (PredecessorLinkState.OnProbation, PredecessorLinkTrigger.Revoked, PredecessorLinkState.Abandoned),
        (PredecessorLinkState.OnProbation, PredecessorLinkTrigger.ReleasedPredecessor, PredecessorLinkState.Released),
        (PredecessorLinkState.RollingBack, PredecessorLinkTrigger.RollbackAccepted, PredecessorLinkState.HandedBack),
        (PredecessorLinkState.RollingBack, PredecessorLinkTrigger.ProbationEnded, PredecessorLinkState.Owner),
        (PredecessorLinkState.RollingBack, PredecessorLinkTrigger.PredecessorExited, PredecessorLinkState.Alone),
        (PredecessorLinkState.RollingBack, PredecessorLinkTrigger.Revoked, PredecessorLinkState.Abandoned),
        (PredecessorLinkState.RollingBack, PredecessorLinkTrigger.ReleasedPredecessor, PredecessorLinkState.Released),
        (PredecessorLinkState.HandedBack, PredecessorLinkTrigger.PredecessorExited, PredecessorLinkState.Alone));

    private readonly HandoffProcess _process;
    private readonly ListenerRegistry _registry;
    private readonly ZeroDowntimeOptions _options;
    private readonly ZeroDowntimeMetrics _metrics;
    private readonly HandoffFaultPoints _faultPoints;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly CancellationTokenSource _releasePredecessor = new();
    private readonly ProbationWatch? _probationWatch;
    private HandoffChannel? _channel;
    private bool _probationAgreed;
    private long _probationEndsUnixMilliseconds;
    private CancellationTokenSource? _monitors;
    private TaskCompletionSource<RollbackResultMessage>? _pendingRollback;
    private long _rollbackAskedAt;
    private string _rollbackReason = "";
    private RollbackOrigin _rollbackOrigin;
    private Task _watch = Task.CompletedTask;
    private Activity? _takeover;
    private long _greetedAt;

    public PredecessorLink(HandoffProcess process, ListenerRegistry registry, ZeroDowntimeOptions options, ZeroDowntimeMetrics metrics, HandoffFaultPoints faultPoints, ILogger logger, TimeProvider time,
        ProbationWatch? probationWatch = null)
    {
        _probationWatch = probationWatch;
        _faultPoints = faultPoints;
        _process = process;
        _registry = registry;
        _options = options;
        _metrics = metrics;
        _logger = logger;
        _time = time;
        Machine = new StateMachine<PredecessorLinkState, PredecessorLinkTrigger>(Table, (from, trigger, to) => _logger.StateChanged(nameof(PredecessorLinkState), from.ToString(), trigger.ToString(), to.ToString()));
    }

    public StateMachine<PredecessorLinkState, PredecessorLinkTrigger> Machine { get; }

    /// <summary>The predecessor's pid (0 on a first start).</summary>
    public int PredecessorPid { get; private set; }

    /// <summary>True while a predecessor drains and this process heartbeats to it.</summary>
    public bool IsWatchingPredecessor => !_watch.IsCompleted;

    /// <summary>
    /// Connects to the handoff socket and takes the listeners over, or finds that nobody serves it (a first start).
    /// Returns true when a predecessor welcomed this process.
    /// </summary>
    /// <exception cref="ZeroDowntimeStartupException">Refused, untrusted, or no proper answer: start-up must fail.</exception>
    public async Task<bool> ProbeAsync(string path, CancellationToken cancellationToken)
    {
        // Started detached (not Activity.Current), so that the host's start-up and requests are not its children.
        var outer = Activity.Current;
        _takeover = ZeroDowntimeMetrics.ActivitySource.StartActivity("zerodowntime.handoff", ActivityKind.Client);
        _takeover?.SetTag(ZeroDowntimeMetrics.RoleTag, HandoffTags.Successor);
        Activity.Current = outer;
        try
        {
            bool welcomed = await ConnectAsync(path, cancellationToken);
            if (!welcomed)
            {
                EndTakeover(null);
            }

            return welcomed;
        }
        catch (Exception ex)
        {
            EndTakeover(ex.Message);
            throw;
        }
    }

    /// <summary>
    /// The host has started. Unless the predecessor gave up meanwhile: open the gate, send Ready, and wait for the
    /// commit (or its absence).
    /// </summary>
    /// <param name="prepare">
    /// The warm-up and readiness gate, given what is left of the handoff timeout; it returns why this process gives the
    /// handoff up, or null to go on.
    /// </param>
    public async Task TakeOverAsync(Func<TimeSpan, Task<string?>>? prepare = null)
    {
        var channel = _channel!;
        if (await WasAbandonedWhileStartingAsync(channel))
        {
            return;
        }

        // Keeping none of the predecessor's endpoints would close every port it serves: stop instead, and say why.
        if (Listeners.InheritedEndpointCheck.Refusal(_registry, _options, PredecessorPid, _logger) is { } refusal)
        {
            channel.TrySend(new FailedMessage(HandoffProtocol.FitText(refusal)));
            await AbandonAsync(PredecessorLinkTrigger.Failed, refusal, ZeroDowntimeExitCodes.NoEndpointKept);
            return;
        }

        if (prepare is not null)
        {
            // Give up a little before the predecessor's own deadline (which began a little later, at the greeting it
            // answered), so that this process, not the timeout, tells it which request or check failed.
            var timeout = _options.HandoffTimeout;
            var margin = timeout / 10 < TimeSpan.FromSeconds(1) ? timeout / 10 : TimeSpan.FromSeconds(1);
            if (await prepare(timeout - margin - _time.GetElapsedTime(_greetedAt)) is { } notReady)
            {
                _logger.NotReadyForHandoff(PredecessorPid, notReady, ZeroDowntimeExitCodes.HandoffAbandoned);
                channel.TrySend(new FailedMessage(HandoffProtocol.FitText(notReady)));
                await AbandonAsync(PredecessorLinkTrigger.Failed, notReady, ZeroDowntimeExitCodes.HandoffAbandoned, loggedHere: true);
                return;
            }

            if (await WasAbandonedWhileStartingAsync(channel))
            {
                return;
            }
        }

        _registry.DropUnusedInherited();
        if (!Machine.TryFire(PredecessorLinkTrigger.ReadySent))
        {
            return; // the host began to stop first, and the predecessor was told
        }

        _process.OpenGate();
        try
        {
            channel.Send(new ReadyMessage());
        }
        catch (HandoffChannelException ex) when (ex.Error == HandoffChannelError.TimedOut)
        {
            // The predecessor does not read (frozen): it may wake up as the server it still is, so do not take over.
            await AbandonAsync(PredecessorLinkTrigger.CommitTimedOut, $"pid {PredecessorPid} did not read Ready: {ex.Message}");
            return;
        }
        catch (HandoffChannelException ex)
        {
            await CarryOnAloneAsync(channel, ex.Message);
            return;
        }

        HandoffMessage answer;
        try
        {
            _logger.SentReady(ProcessClock.Age.TotalMilliseconds, PredecessorPid);
            TakeoverEvent("ready sent");
            await _faultPoints.PauseAsync("after-ready", _logger, _process.HostStoppingToken);
            answer = await channel.ReadAsync(_options.HandoffTimeout + ReadTimeout, _process.HostStoppingToken);
        }
        catch (OperationCanceledException) when (_process.HostStoppingToken.IsCancellationRequested)
        {
            return; // stopping before the commit: OnHostStopping has told the predecessor already
        }
        catch (HandoffChannelException ex) when (ex.Error == HandoffChannelError.TimedOut)
        {
            // The predecessor is alive (the connection is open) but silent: frozen. Taking over now would leave two
            // servers once it wakes up; stop instead, and let it carry on as the server it still is.
            channel.TrySend(new FailedMessage("no answer to Ready within the handoff timeout"));
            await AbandonAsync(PredecessorLinkTrigger.CommitTimedOut, $"pid {PredecessorPid} did not answer within {_options.HandoffTimeout + ReadTimeout}");
            return;
        }
        catch (HandoffChannelException ex)
        {
            await CarryOnAloneAsync(channel, ex.Message);
            return;
        }

        switch (answer)
        {
            case CommittedMessage:
                await OnCommittedAsync(channel);
                break;
            case AbandonedMessage abandoned:
                await AbandonAsync(PredecessorLinkTrigger.Abandoned, abandoned.Reason);
                break;
            case RevokedMessage:
                // Too late: this process began to stop first and said so; the predecessor serves on.
                break;
            default:
                await CarryOnAloneAsync(channel, $"it answered {answer.Type}");
                break;
        }
    }

    /// <summary>
    /// The host begins to stop before the commit. Tell the predecessor now, not from the process-exit hook after the
    /// whole host shutdown: it may already have closed its gate, and until it hears, only this stopping process accepts.
    /// </summary>
    public void OnHostStopping()
    {
        if (_channel is not { } channel || !Machine.TryFire(PredecessorLinkTrigger.HostStopping))
        {
            return;
        }

        End(Outcome.Withdrawn, HandoffTags.Failed, "stopped before the commit");
        channel.TrySend(new FailedMessage("it is stopping (SIGTERM or StopApplication) before the commit"));
        _process.StopAccepting(); // the predecessor serves again; what this process accepted, it still finishes
        _logger.StoppingBeforeCommit(PredecessorPid);
    }

    /// <summary>Last words from the process-exit hooks: start-up failed, or the process exits before the commit.</summary>
    public void OnFailed(string reason)
    {
        if (_channel is { } channel && Machine.TryFire(PredecessorLinkTrigger.Failed))
        {
            channel.TrySend(new FailedMessage(HandoffProtocol.FitText(reason)));
        }
    }

    /// <summary>
    /// Called when a successor of this process greets it, before that successor is sent anything: the predecessor that
    /// may still drain is told Release, so that from now on at most one older generation can ever serve again, and
    /// it is this process (docs/architecture.md, "One fallback at a time"). Without this, a predecessor that saw this
    /// process die while its successor started would resume beside that successor. Returns false when the
    /// predecessor had revoked this process first (its Revoked crossed the Release): this process is leaving and
    /// must hand nothing on.
    /// </summary>
    public async Task<bool> ReleasePredecessorAsync()
    {
        if (!_watch.IsCompleted)
        {
            await _releasePredecessor.CancelAsync();
            await _watch;
        }

        return Machine.State != PredecessorLinkState.Abandoned;
    }

    public void Dispose()
    {
        _releasePredecessor.Dispose();
        _monitors?.Dispose();
    }

    /// <summary>The probation in course, as <c>zerodowntime status</c> reports it (None when none).</summary>
    public ProbationStatusMessage ProbationStatus() => Machine.State switch
    {
        PredecessorLinkState.OnProbation => new ProbationStatusMessage(ProbationState.OnProbation, PredecessorPid, _probationEndsUnixMilliseconds, ""),
        PredecessorLinkState.RollingBack or PredecessorLinkState.HandedBack =>
            new ProbationStatusMessage(ProbationState.RollingBack, PredecessorPid, _probationEndsUnixMilliseconds, HandoffProtocol.FitText(_rollbackReason)),
        _ => new ProbationStatusMessage(ProbationState.None, 0, 0, ""),
    };

    /// <summary>
    /// Asks the predecessor that stands by to serve again (the tool, the rollback signal, or this process's own
    /// monitors), and waits until it did, refused, or did not answer within <see cref="ReadTimeout"/> (then it is
    /// released and this process serves on with no way back). Never throws for a refusal: the result says why.
    /// </summary>
    public async Task<RollbackResultMessage> RequestRollbackAsync(RollbackOrigin origin, string reason)
    {
        var state = Machine.State;
        if (state is PredecessorLinkState.RollingBack or PredecessorLinkState.HandedBack)
        {
            return Refuse($"a rollback to pid {PredecessorPid} is in progress");
        }

        if (state != PredecessorLinkState.OnProbation)
        {
            return Refuse(PredecessorPid == 0 || !_probationAgreed
                ? $"no generation on probation: pid {Environment.ProcessId} did not take over on probation"
                : $"no generation on probation: pid {PredecessorPid} no longer stands by ({state})");
        }

        if (!_process.TryBeginRollback())
        {
            return Refuse(_process.Role == ProcessRole.ShuttingDown
                ? $"pid {Environment.ProcessId} is shutting down"
                : $"pid {Environment.ProcessId} is handing over to a successor of its own");
        }

        var pending = new TaskCompletionSource<RollbackResultMessage>(TaskCreationOptions.RunContinuationsAsynchronously);
        _rollbackAskedAt = _time.GetTimestamp();
        _rollbackReason = reason;
        _rollbackOrigin = origin;
        Volatile.Write(ref _pendingRollback, pending);
        if (!Machine.TryFire(PredecessorLinkTrigger.RollbackRequested))
        {
            _process.TryRefuseRollback();
            FinishRollback(RollbackOutcome.Refused, $"pid {PredecessorPid} ended its probation meanwhile");
            return await pending.Task;
        }

        // The request first: until the predecessor has reopened its gate, every millisecond here is the switch's.
        // Stopping the monitors (one rollback: they have said what they had to) and the log line can wait.
        _channel!.TrySend(new RollbackRequestMessage(origin, HandoffProtocol.FitText(reason)));
        _monitors?.Cancel();
        _logger.RollbackRequested(PredecessorPid, OriginName(origin), reason);
        try
        {
            return await pending.Task.WaitAsync(ReadTimeout, _time);
        }
        catch (TimeoutException)
        {
            // No answer: the predecessor is frozen. It must never wake up and serve beside this process, so it is
            // released (Release, read before anything it would do), and this release serves on with no way back.
            string why = $"pid {PredecessorPid} did not answer within {ReadTimeout.TotalSeconds:0} s; it was released; this release serves on with no way back";
            if (_process.TryRefuseRollback())
            {
                _logger.RollbackGivenUp(PredecessorPid, why);
                FinishRollback(RollbackOutcome.Failed, why);
                await _releasePredecessor.CancelAsync();
            }

            return await pending.Task;
        }

        RollbackResultMessage Refuse(string why)
        {
            _logger.RollbackRefused(why);
            return new RollbackResultMessage(RollbackOutcome.Refused, Environment.ProcessId, HandoffProtocol.FitText(why), -1);
        }
    }

    internal static string OriginName(RollbackOrigin origin) => origin switch
    {
        RollbackOrigin.Tool => "manual",
        RollbackOrigin.Signal => "signal",
        RollbackOrigin.ErrorRatio => "error-ratio",
        RollbackOrigin.HealthCheck => "health-check",
        _ => "none",
    };

    private void FinishRollback(RollbackOutcome outcome, string reason, long switchMilliseconds = -1) =>
        Interlocked.Exchange(ref _pendingRollback, null)?.TrySetResult(new RollbackResultMessage(outcome,
            outcome == RollbackOutcome.RolledBack ? PredecessorPid : Environment.ProcessId, HandoffProtocol.FitText(reason), switchMilliseconds));

    /// <summary>Committed on probation: the predecessor stands by until the window ends; this process watches itself.</summary>
    private void StartProbation()
    {
        var settings = _options.Probation;
        var endsAt = _time.GetUtcNow() + settings.Duration;
        _probationEndsUnixMilliseconds = endsAt.ToUnixTimeMilliseconds();
        _process.HasPredecessorOnProbation = true;
        _logger.ProbationStarted(endsAt, PredecessorPid, settings.MaxErrorRatio, settings.ErrorWindow, settings.MinRequests, settings.UnhealthyFor);
        var monitors = _monitors = new CancellationTokenSource();
        var stop = monitors.Token;
        _ = BackgroundWork.Start("probation monitors", () => WatchOwnHealthAsync(stop), _logger);
    }

    /// <summary>The probation is over, whichever way: the monitors stop, and the predecessor no longer holds the listeners for this process.</summary>
    private void EndProbation()
    {
        _process.HasPredecessorOnProbation = false;
        _monitors?.Cancel();
    }

    /// <summary>
    /// The 5xx ratio of this process's responses (every 250 ms) and its health checks tagged
    /// <see cref="ProbationSettings.CheckTag"/> (every second, only when the app has any): the first that trips asks
    /// for the rollback.
    /// </summary>
    private async Task WatchOwnHealthAsync(CancellationToken stop)
    {
        var settings = _options.Probation;
        using var monitor = new ErrorRatioMonitor(settings, _time);
        var checks = _probationWatch?.TaggedChecks();
        var tracker = checks is null ? null : new UnhealthyCheckTracker(settings.UnhealthyFor, _time);
        if (_probationWatch is { } watch)
        {
            watch.ErrorRatio = monitor;
        }

        try
        {
            using var tick = new PeriodicTimer(TimeSpan.FromMilliseconds(250), _time);
            long ticks = 0;
            while (await tick.WaitForNextTickAsync(stop))
            {
                var reading = monitor.Evaluate();
                if (reading.IsAboveLimit)
                {
                    _logger.RollbackErrorRatio(reading.Ratio, reading.Errors, reading.Requests, reading.Window, reading.MaxErrorRatio);
                    _ = BackgroundWork.Start("rollback on the 5xx ratio", () => RequestRollbackAsync(RollbackOrigin.ErrorRatio, reading.Reason), _logger);
                    return;
                }

                if (checks is not null && ++ticks % 4 == 0)
                {
                    var report = await checks.CheckHealthAsync(r => r.Tags.Contains(ProbationSettings.CheckTag), stop);
                    foreach (var (name, entry) in report.Entries)
                    {
                        if (entry.Status == Microsoft.Extensions.Diagnostics.HealthChecks.HealthStatus.Unhealthy)
                        {
                            _logger.ProbationCheckUnhealthy(name, entry.Description ?? entry.Exception?.Message ?? "");
                        }
                    }

                    if (tracker!.Observe(report) is { } trip)
                    {
                        _logger.RollbackUnhealthyCheck(trip.CheckName, trip.Lasted, trip.UnhealthyFor, trip.Description ?? trip.ExceptionMessage ?? "");
                        _ = BackgroundWork.Start("rollback on a health check", () => RequestRollbackAsync(RollbackOrigin.HealthCheck, trip.Reason), _logger);
                        return;
                    }
                }
            }
        }
        catch (OperationCanceledException)
        {
            // The probation ended.
        }
        finally
        {
            if (_probationWatch is { } watching && watching.ErrorRatio == monitor)
            {
                watching.ErrorRatio = null;
            }
        }
    }

    /// <summary>The predecessor's window ended (or it stops) before a rollback was accepted: no way back.</summary>
    private void OnProbationEnded(string reason)
    {
        var was = Machine.State;
        if (!Machine.TryFire(PredecessorLinkTrigger.ProbationEnded))
        {
            return;
        }

        EndProbation();
        _logger.ProbationEndedForSuccessor(PredecessorPid, reason);
        if (was == PredecessorLinkState.RollingBack && _process.TryRefuseRollback())
        {
            FinishRollback(RollbackOutcome.Refused, $"pid {PredecessorPid} ended its probation first ({reason})");
        }
    }

    /// <summary>
    /// The predecessor reopened its gate: this process closed its own (<see cref="HandoffProcess.TryBeginHandBack"/>), now
    /// releases its participants (a log file moves to its archive name) and says HandedBack, from which the
    /// predecessor owns everything again. Heartbeats go on until then.
    /// </summary>
    private async Task<bool> HandBackAsync(HandoffChannel channel)
    {
        var released = new List<IHandoffParticipant>();
        bool allReleased = true;
        var overrun = await _process.ReleaseParticipantsAsync(released);
        if (overrun is not null)
        {
            // The predecessor must not acquire while a release runs: wait for it (bounded), then say it overran, so
            // that the predecessor reclaims rather than takes back (no two writers of one log file).
            allReleased = false;
            try
            {
                await overrun.WaitAsync(_options.HandoffTimeout, _time);
            }
            catch (Exception ex) when (ex is TimeoutException or OperationCanceledException)
            {
            }
            catch (Exception ex)
            {
                _logger.ParticipantFailed("release", ex);
            }
        }

        if (!channel.TrySend(new HandedBackMessage(allReleased)))
        {
            // The predecessor died after it reopened its gate (a Unix socket's peer that closed fails the send at once):
            // nobody would serve. It never acquired, so take back what was released and serve on, with no way back.
            string why = $"pid {PredecessorPid} exited during the rollback, before it took the service back; this release serves again with no way back";
            Machine.TryFire(PredecessorLinkTrigger.PredecessorExited);
            EndProbation();
            _logger.RollbackGivenUp(PredecessorPid, why);
            await _process.ResumeAfterFailedHandBackAsync(overrun is { IsCompleted: false } ? released[..^1] : released);
            FinishRollback(RollbackOutcome.Failed, why);
            return false;
        }

        _process.HandedBack();
        double milliseconds = _time.GetElapsedTime(_rollbackAskedAt).TotalMilliseconds;
        _logger.HandedBack(PredecessorPid, milliseconds);
        _metrics.RolledBack(HandoffTags.Successor, OriginName(_rollbackOrigin));
        EndProbation();
        FinishRollback(RollbackOutcome.RolledBack, _rollbackReason, (long)Math.Round(milliseconds));
        return true;
    }

    private async Task<bool> ConnectAsync(string path, CancellationToken cancellationToken)
    {
        long start = _greetedAt = _time.GetTimestamp();
        if (await new PredecessorProbe(Machine, _registry, _options, _metrics, _faultPoints, _logger, _time).FindAsync(path, cancellationToken) is not var (channel, welcome))
        {
            return false;
        }

        _channel = channel;
        Machine.TryFire(PredecessorLinkTrigger.Welcomed);
        _process.BecomeSuccessor(this);
        PredecessorPid = welcome.ProcessId;
        AdoptGeneration(welcome);
        _probationAgreed = _options.Probation.IsEnabled && welcome.Features is { } features && features.HasFlag(HandoffFeatures.Probation);
        if (_options.Probation.IsEnabled && !_probationAgreed)
        {
            _logger.ProbationNotAgreed($"pid {welcome.ProcessId} runs a build without probation: it will not stand by after the commit");
        }
        _logger.ListenersReceived(welcome.Listeners.Count, welcome.ProcessId, _time.GetElapsedTime(start).TotalMilliseconds);
        TakeoverEvent("listeners received");
        _takeover?.SetTag("zerodowntime.predecessor.pid", welcome.ProcessId);
        _takeover?.SetTag("zerodowntime.protocol.version", (int)welcome.Version);
        await _faultPoints.PauseAsync("after-receive", _logger, cancellationToken);
        return true;
    }

    /// <summary>
    /// The generation of this process (the predecessor's plus 1) and the first start of the chain. A version-1
    /// predecessor does not say: it is counted as generation 1, first started when it started.
    /// </summary>
    private void AdoptGeneration(WelcomeMessage welcome)
    {
        if (welcome.Version >= 2 && welcome.Generation > 0)
        {
            _metrics.Generation = welcome.Generation + 1;
            _process.FirstStartUnixMilliseconds = welcome.FirstStartUnixMilliseconds;
        }
        else
        {
            _metrics.Generation = 2;
            _process.FirstStartUnixMilliseconds = ProcessClock.StartedAt(welcome.ProcessId)?.ToUnixTimeMilliseconds()
                ?? _time.GetUtcNow().ToUnixTimeMilliseconds();
        }
    }

    /// <summary>
    /// A successor that was too slow (or frozen) may find, once started, that its predecessor already gave up on it.
    /// It must then stop without accepting a single connection, rather than serve beside the old process.
    /// </summary>
    private async Task<bool> WasAbandonedWhileStartingAsync(HandoffChannel channel)
    {
        if (!channel.HasPendingData)
        {
            return false;
        }

        HandoffMessage message;
        try
        {
            message = await channel.ReadAsync(ReadTimeout, _process.ShutdownToken);
        }
        catch (HandoffChannelException)
        {
            return false;
        }

        if (message is not AbandonedMessage abandoned)
        {
            return false;
        }

        await AbandonAsync(PredecessorLinkTrigger.AbandonedWhileStarting, abandoned.Reason);
        return true;
    }

    private async Task OnCommittedAsync(HandoffChannel channel)
    {
        if (!Machine.TryFire(_probationAgreed ? PredecessorLinkTrigger.CommittedOnProbation : PredecessorLinkTrigger.Committed))
        {
            return; // too late: this process began to stop first and said so; the predecessor serves on
        }

        // The role in the same step, before anything can race it (a SIGTERM must find an owner to shut down, a
        // revocation a role to leave).
        TakeoverEvent("committed");
        End(Outcome.TookOver, HandoffTags.Committed, null);
        _logger.Committed(PredecessorPid, ProcessClock.Age.TotalMilliseconds);
        // As documented and as the predecessor measures it: from the greeting (this process's welcome) to the commit,
        // not the process's age (which adds the runtime's start-up before the greeting).
        _metrics.HandoffDuration(HandoffTags.Successor, _time.GetElapsedTime(_greetedAt));

        // Heartbeats before anything slow: the predecessor's watch started when it sent Committed.
        _watch = BackgroundWork.Start("watch of the predecessor", () => WatchPredecessorAsync(channel), _logger);
        if (_probationAgreed)
        {
            StartProbation();
        }

        await _process.BecomeOwnerAsync(HandoffAcquireReason.PredecessorReleased, $"Serving; took over from pid {PredecessorPid}");
    }

    /// <summary>The connection broke before the predecessor answered: the kernel closed it because the predecessor died.</summary>
    private async Task CarryOnAloneAsync(HandoffChannel channel, string why)
    {
        if (!Machine.TryFire(PredecessorLinkTrigger.PredecessorVanished))
        {
            return;
        }

        End(Outcome.TookOver, null, null);
        _logger.PredecessorVanished(PredecessorPid, why);
        channel.Dispose();
        await _process.BecomeOwnerAsync(HandoffAcquireReason.PredecessorVanished, $"Serving; predecessor pid {PredecessorPid} vanished during the handoff");
    }

    /// <summary>
    /// The predecessor gave the handoff up (or this process gave up on it): stop without ever owning anything. A
    /// successor that had opened its gate drains what it accepted first, as a predecessor would.
    /// </summary>
    private async Task AbandonAsync(PredecessorLinkTrigger trigger, string reason, int exitCode = ZeroDowntimeExitCodes.HandoffAbandoned, bool loggedHere = false)
    {
        if (!Machine.TryFire(trigger))
        {
            return;
        }

        End(Outcome.Withdrawn, HandoffTags.Abandoned, "abandoned: " + reason);
        if (exitCode == ZeroDowntimeExitCodes.HandoffAbandoned && !loggedHere)
        {
            _logger.HandoffAbandoned(PredecessorPid, reason); // another code, or this process's own decision, is logged where it was made
        }

        await _process.LeaveAsync(reason, exitCode, beforeDrain: () => _channel?.Dispose());
    }

    /// <summary>
    /// After the commit: heartbeats to the draining predecessor, a last Release when this process stops in order or
    /// commits to its own successor, and the predecessor's last word (end of stream when it exits, or a revocation).
    /// </summary>
    private async Task WatchPredecessorAsync(HandoffChannel channel)
    {
        using var done = CancellationTokenSource.CreateLinkedTokenSource(_process.ShutdownToken, _releasePredecessor.Token);
        var heartbeats = BackgroundWork.Start("heartbeats to the predecessor", async () =>
        {
            using var timer = new PeriodicTimer(HeartbeatInterval, _time);
            while (channel.TrySend(new HeartbeatMessage()) && await timer.WaitForNextTickAsync(done.Token))
            {
            }
        }, _logger);

        bool stoppingInOrder = false;
        bool handingBack = false;
        try
        {
            while (true)
            {
                var message = await channel.ReadAsync(Timeout.InfiniteTimeSpan, done.Token);
                if (message is ProbationEndedMessage ended)
                {
                    OnProbationEnded(ended.Reason);
                    continue;
                }

                if (message is RollbackAcceptedMessage)
                {
                    // Closing this gate is the role's decision, against a racing shutdown or a rollback given up.
                    if (Machine.State == PredecessorLinkState.RollingBack && _process.TryBeginHandBack() && Machine.TryFire(PredecessorLinkTrigger.RollbackAccepted))
                    {
                        handingBack = true;
                        break;
                    }

                    continue; // late (the rollback was given up): Release follows or went out already
                }

                var was = Machine.State;
                if (message is RevokedMessage revoked && Machine.TryFire(PredecessorLinkTrigger.Revoked))
                {
                    EndProbation();
                    FinishRollback(RollbackOutcome.Failed, $"pid {PredecessorPid} had taken this process for lost and serves again");
                    OnRevoked(revoked.Reason);
                }
                else if (Machine.TryFire(PredecessorLinkTrigger.PredecessorExited))
                {
                    OnPredecessorExited(was);
                }

                break;
            }
        }
        catch (OperationCanceledException)
        {
            // This process stops in order, or has committed to a successor of its own: say so, so that a still-draining
            // predecessor does not take the end of the heartbeats for a crash and resume beside whoever serves now.
            var was = Machine.State;
            stoppingInOrder = Machine.TryFire(PredecessorLinkTrigger.ReleasedPredecessor);
            if (stoppingInOrder && was is PredecessorLinkState.OnProbation or PredecessorLinkState.RollingBack)
            {
                EndProbation();
                FinishRollback(RollbackOutcome.Refused, _process.Role == ProcessRole.ShuttingDown
                    ? $"pid {Environment.ProcessId} is shutting down: pid {PredecessorPid} was released"
                    : $"pid {PredecessorPid} was released");
            }
        }
        catch (HandoffChannelException)
        {
            var was = Machine.State;
            if (Machine.TryFire(PredecessorLinkTrigger.PredecessorExited))
            {
                OnPredecessorExited(was);
            }
        }
        finally
        {
            if (handingBack)
            {
                handingBack = await HandBackAsync(channel);
            }

            await done.CancelAsync();
            await heartbeats;
            if (stoppingInOrder && channel.TrySend(new ReleaseMessage()))
            {
                await AwaitReleaseAnswerAsync(channel);
            }

            channel.Dispose();
        }

        if (handingBack)
        {
            // Rolled back: what this process accepted drains (every response says goodbye), then it exits 81.
            await _process.DrainAsync(CancellationToken.None);
            await _process.WaitUntilThePathIsServedByAnotherAsync(_options.HandoffTimeout);
            _process.StopWithExitCode(ZeroDowntimeExitCodes.RolledBack);
        }
    }

    /// <summary>The predecessor's connection ended: it exited (after its drain, or killed during its probation).</summary>
    private void OnPredecessorExited(PredecessorLinkState was)
    {
        _logger.PredecessorExited(PredecessorPid);
        EndProbation();
        if (was == PredecessorLinkState.RollingBack && _process.TryRefuseRollback())
        {
            FinishRollback(RollbackOutcome.Failed, $"pid {PredecessorPid} exited before it took the service back; this release serves on with no way back");
        }
    }

    /// <summary>
    /// After Release: the predecessor closes the connection (released), or its Revoked crossed the Release on the wire
    /// (it had taken this process for lost and serves again: this process was revoked, whatever it meant to do).
    /// </summary>
    private async Task AwaitReleaseAnswerAsync(HandoffChannel channel)
    {
        HandoffMessage answer;
        try
        {
            answer = await channel.ReadAsync(ReleaseAnswerTimeout, CancellationToken.None);
        }
        catch (HandoffChannelException ex)
        {
            // Closed: released. Timed out: a predecessor of an earlier build, which keeps the connection until it exits.
            _logger.ToldPredecessorStopping(PredecessorPid, ex.Error == HandoffChannelError.TimedOut ? "no answer (an earlier build)" : "it closed the connection");
            return;
        }

        if (answer is RevokedMessage revoked && Machine.TryFire(PredecessorLinkTrigger.Revoked))
        {
            OnRevoked(revoked.Reason);
            return;
        }

        _logger.ToldPredecessorStopping(PredecessorPid, $"it answered {answer.Type}");
    }

    /// <summary>The predecessor took this process for lost and serves again: leave, claiming nothing, exit 77.</summary>
    private void OnRevoked(string reason)
    {
        _process.Revoke();
        _logger.HandoffRevoked(PredecessorPid, reason);
        End(Outcome.Revoked, HandoffTags.Revoked, null);
        _process.StopWithExitCode(ZeroDowntimeExitCodes.HandoffAbandoned);
    }

    /// <summary>What an outcome does to the process's role (the link's own machine has fired already).</summary>
    private enum Outcome
    {
        /// <summary>Committed, or the predecessor vanished: this process is the owner.</summary>
        TookOver,

        /// <summary>Abandoned, failed, or stopping before the commit: this process leaves without owning anything.</summary>
        Withdrawn,

        /// <summary>Revoked after the commit: the role has left already (<see cref="HandoffProcess.Revoke"/>).</summary>
        Revoked,
    }

    /// <summary>
    /// The one place where the handoff's end is written on this side, once its machine has fired: the role's arrow (with
    /// the pending handoff of the exit hooks), the <c>zerodowntime.handoffs</c> outcome (<paramref name="tag"/>; none
    /// when the predecessor vanished, which counts on the predecessor's side if anywhere) and the end of the trace
    /// (<paramref name="failure"/>, null for a success).
    /// </summary>
    private void End(Outcome outcome, string? tag, string? failure)
    {
        switch (outcome)
        {
            case Outcome.TookOver:
                _process.TookOver();
                break;
            case Outcome.Withdrawn:
                _process.Withdraw();
                break;
        }

        if (tag is not null)
        {
            _metrics.Handoff(HandoffTags.Successor, tag);
        }

        EndTakeover(failure);
    }

    private void TakeoverEvent(string phase) => _takeover?.AddEvent(new ActivityEvent(phase));

    /// <summary>Ends the successor's trace: <paramref name="failure"/> null for a commit (or a first start).</summary>
    private void EndTakeover(string? failure)
    {
        var takeover = Interlocked.Exchange(ref _takeover, null);
        if (takeover is null)
        {
            return;
        }

        if (failure is not null)
        {
            takeover.SetStatus(ActivityStatusCode.Error, failure);
        }

        takeover.Stop();
    }
}
