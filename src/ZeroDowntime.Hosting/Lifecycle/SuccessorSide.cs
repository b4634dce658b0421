using System.Diagnostics;
using Microsoft.Extensions.Logging;
using ZeroDowntime.Hosting.Diagnostics;
using ZeroDowntime.Hosting.Interop;
using ZeroDowntime.Hosting.Logging;
using ZeroDowntime.Hosting.Protocol;

namespace ZeroDowntime.Hosting.Lifecycle;

/// <summary>The new process's side of one handoff: the second machine of docs/architecture.md.</summary>
internal enum SuccessorState
{
    /// <summary>Looking for a predecessor on the handoff socket (StartingAsync).</summary>
    Probing,

    /// <summary>Refused by the process on the socket, or refusing it (another uid): start-up fails.</summary>
    Refused,

    /// <summary>No predecessor, or it has exited: this process serves alone and watches nobody.</summary>
    Alone,

    /// <summary>Has the listeners (adopted by key); the host starts on them with its gate closed.</summary>
    TakingOver,

    /// <summary>Started, gate open, Ready sent: accepts beside the predecessor until it commits.</summary>
    AwaitingCommit,

    /// <summary>Committed: the server, heart-beating to the predecessor while that one drains.</summary>
    Owner,

    /// <summary>This process has told its draining predecessor to finish and never resume (Release).</summary>
    Released,

    /// <summary>Abandoned before the commit, or revoked after it: drains what it accepted and exits 77.</summary>
    Abandoned,

    /// <summary>Stopped or failed before the commit; the predecessor was told (Failed) and serves on.</summary>
    Stopped,
}

/// <summary>What moves <see cref="SuccessorState"/>.</summary>
internal enum SuccessorTrigger
{
    /// <summary>No socket file, or a stale one (ECONNREFUSED): a first start.</summary>
    NoPredecessor,

    /// <summary>The running process just handed over to another (retry briefly), or speaks an older version (greet in it).</summary>
    AskAgain,

    /// <summary>Refused (busy, application, version), or the peer runs as another uid (exits 75, 76 or 78).</summary>
    Refused,

    /// <summary>A Welcome with as many descriptors as listeners.</summary>
    Welcomed,

    /// <summary>Start-up threw, or the process exits before the commit: Failed is sent as last words.</summary>
    Failed,

    /// <summary>The host began to stop (SIGTERM) before the commit: Failed is sent at once, the gate closes.</summary>
    HostStopping,

    /// <summary>An Abandoned was waiting when the host had started: exit 77 without accepting anything.</summary>
    AbandonedWhileStarting,

    /// <summary>The host has started: the gate opens and Ready is sent.</summary>
    ReadySent,

    /// <summary>The predecessor committed: acquire, heartbeat, serve the handoff socket.</summary>
    Committed,

    /// <summary>The predecessor's connection ended before its answer: it died; carry on alone.</summary>
    PredecessorVanished,

    /// <summary>The predecessor abandoned the handoff (this process was too slow, or a release overran).</summary>
    Abandoned,

    /// <summary>No answer to Ready within HandoffTimeout + 5 s: the predecessor is frozen, so this process gives up.</summary>
    CommitTimedOut,

    /// <summary>The predecessor took this process for lost and serves again (exit 77).</summary>
    Revoked,

    /// <summary>The predecessor ended its drain and exited (end of stream).</summary>
    PredecessorExited,

    /// <summary>This process stops in order, or commits to a successor of its own: it sends Release.</summary>
    ReleasedPredecessor,
}

/// <summary>
/// The successor's side: take the listeners over before Kestrel binds, say Ready once the host has started, own them
/// after the commit, and heartbeat to the draining predecessor until it exits or this process releases it.
/// </summary>
internal sealed class SuccessorSide : IDisposable
{
    /// <summary>The deadline of each single protocol step (connect, greeting, welcome).</summary>
    internal static readonly TimeSpan ReadTimeout = TimeSpan.FromSeconds(5);

    /// <summary>How often a successor tells its draining predecessor that it is alive.</summary>
    internal static readonly TimeSpan HeartbeatInterval = TimeSpan.FromSeconds(1);

    public static readonly TransitionTable<SuccessorState, SuccessorTrigger> Table = new(SuccessorState.Probing,
        (SuccessorState.Probing, SuccessorTrigger.NoPredecessor, SuccessorState.Alone),
        (SuccessorState.Probing, SuccessorTrigger.AskAgain, SuccessorState.Probing),
        (SuccessorState.Probing, SuccessorTrigger.Refused, SuccessorState.Refused),
        (SuccessorState.Probing, SuccessorTrigger.Welcomed, SuccessorState.TakingOver),
        (SuccessorState.TakingOver, SuccessorTrigger.Failed, SuccessorState.Stopped),
        (SuccessorState.TakingOver, SuccessorTrigger.HostStopping, SuccessorState.Stopped),
        (SuccessorState.TakingOver, SuccessorTrigger.AbandonedWhileStarting, SuccessorState.Abandoned),
        (SuccessorState.TakingOver, SuccessorTrigger.ReadySent, SuccessorState.AwaitingCommit),
        (SuccessorState.AwaitingCommit, SuccessorTrigger.Committed, SuccessorState.Owner),
        (SuccessorState.AwaitingCommit, SuccessorTrigger.PredecessorVanished, SuccessorState.Alone),
        (SuccessorState.AwaitingCommit, SuccessorTrigger.Abandoned, SuccessorState.Abandoned),
        (SuccessorState.AwaitingCommit, SuccessorTrigger.CommitTimedOut, SuccessorState.Abandoned),
        (SuccessorState.AwaitingCommit, SuccessorTrigger.HostStopping, SuccessorState.Stopped),
        (SuccessorState.AwaitingCommit, SuccessorTrigger.Failed, SuccessorState.Stopped),
        (SuccessorState.Owner, SuccessorTrigger.Revoked, SuccessorState.Abandoned),
        (SuccessorState.Owner, SuccessorTrigger.PredecessorExited, SuccessorState.Alone),
        (SuccessorState.Owner, SuccessorTrigger.ReleasedPredecessor, SuccessorState.Released));

    private readonly HandoffProcess _process;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _releasePredecessor = new();
    private HandoffChannel? _channel;
    private Task _watch = Task.CompletedTask;
    private Activity? _takeover;

    public SuccessorSide(HandoffProcess process)
    {
        _process = process;
        _logger = process.Logger;
        Machine = new StateMachine<SuccessorState, SuccessorTrigger>(Table, (from, trigger, to) => _logger.StateChanged(nameof(SuccessorState), from.ToString(), trigger.ToString(), to.ToString()));
    }

    public StateMachine<SuccessorState, SuccessorTrigger> Machine { get; }

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
    public async Task TakeOverAsync()
    {
        var channel = _channel!;
        if (await WasAbandonedWhileStartingAsync(channel))
        {
            return;
        }

        _process.Registry.CloseUnusedInherited();
        if (!Machine.TryFire(SuccessorTrigger.ReadySent))
        {
            return; // the host began to stop first, and the predecessor was told
        }

        _process.OpenGate();
        HandoffMessage answer;
        try
        {
            channel.Send(new ReadyMessage());
            _logger.SentReady(ProcessClock.Age.TotalMilliseconds, PredecessorPid);
            TakeoverEvent("ready sent");
            await FaultInjection.PauseIfRequestedAsync("after-ready", _logger, _process.HostStoppingToken);
            answer = await channel.ReadAsync(_process.Options.HandoffTimeout + ReadTimeout, _process.HostStoppingToken);
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
            await AbandonAsync(SuccessorTrigger.CommitTimedOut, $"pid {PredecessorPid} did not answer within {_process.Options.HandoffTimeout + ReadTimeout}");
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
                await AbandonAsync(SuccessorTrigger.Abandoned, abandoned.Reason);
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
        if (_channel is not { } channel || !Machine.TryFire(SuccessorTrigger.HostStopping))
        {
            return;
        }

        _process.Role.TryFire(RoleTrigger.Withdrew);
        ProcessExitHooks.PendingHandoff = null;
        channel.TrySend(new FailedMessage("it is stopping (SIGTERM or StopApplication) before the commit"));
        _process.Gate.Close(); // the predecessor serves again; what this process accepted, it still finishes
        _logger.StoppingBeforeCommit(PredecessorPid);
        _process.Metrics.Handoff(HandoffTags.Successor, HandoffTags.Failed);
        EndTakeover("stopped before the commit");
    }

    /// <summary>Last words from the process-exit hooks: start-up failed, or the process exits before the commit.</summary>
    public void OnFailed(string reason)
    {
        if (_channel is { } channel && Machine.TryFire(SuccessorTrigger.Failed))
        {
            channel.TrySend(new FailedMessage(HandoffProtocol.FitText(reason)));
        }
    }

    /// <summary>
    /// Called when this process commits to its own successor, before that successor hears it: the predecessor that
    /// may still drain is told Release and the channel closed, so that it never resumes whatever happens to this
    /// process from now on (the successor serves). A predecessor that lost this process before it committed onward
    /// still resumes, as it must.
    /// </summary>
    public async Task ReleasePredecessorAsync()
    {
        if (_watch.IsCompleted)
        {
            return;
        }

        await _releasePredecessor.CancelAsync();
        await _watch;
        _logger.ToldPredecessorStopping(PredecessorPid);
    }

    public void Dispose() => _releasePredecessor.Dispose();

    private async Task<bool> ConnectAsync(string path, CancellationToken cancellationToken)
    {
        long start = _process.Time.GetTimestamp();
        ushort version = HandoffProtocol.Version;
        for (int attempt = 1; ; attempt++)
        {
            HandoffChannel channel;
            try
            {
                channel = await HandoffChannel.ConnectAsync(path, ReadTimeout, _process.Time, cancellationToken);
            }
            catch (HandoffChannelException ex) when (ex.Error is HandoffChannelError.NoServer or HandoffChannelError.Refused)
            {
                if (ex.Error == HandoffChannelError.Refused)
                {
                    _logger.StaleSocket(path);
                }
                else
                {
                    _logger.NoPredecessor(path);
                }

                Machine.TryFire(SuccessorTrigger.NoPredecessor);
                return false;
            }
            catch (HandoffChannelException ex)
            {
                Machine.TryFire(SuccessorTrigger.Refused);
                throw new ZeroDowntimeStartupException(ZeroDowntimeExitCodes.RefusedByPredecessor,
                    ex.Error == HandoffChannelError.TimedOut
                        ? $"The process serving {path} did not accept the handoff connection within {ReadTimeout.TotalSeconds:0} s."
                        : ex.Message);
            }

            try
            {
                switch (await GreetAsync(channel, path, version, cancellationToken))
                {
                    case (WelcomeMessage welcome, _):
                        _channel = channel;
                        Machine.TryFire(SuccessorTrigger.Welcomed);
                        _process.Role.TryFire(RoleTrigger.PredecessorFound);
                        _process.Lifetime.IsSuccessor = true;
                        ProcessExitHooks.PendingHandoff = this;
                        PredecessorPid = welcome.ProcessId;
                        AdoptGeneration(welcome);
                        _logger.ListenersReceived(welcome.Listeners.Count, welcome.ProcessId, _process.Time.GetElapsedTime(start).TotalMilliseconds);
                        TakeoverEvent("listeners received");
                        _takeover?.SetTag("zerodowntime.predecessor.pid", welcome.ProcessId);
                        _takeover?.SetTag("zerodowntime.protocol.version", (int)welcome.Version);
                        await FaultInjection.PauseIfRequestedAsync("after-receive", _logger, cancellationToken);
                        return true;
                    case (null, ushort older):
                        // The running process was built from an earlier release: greet it again in its own version.
                        channel.Dispose();
                        Machine.TryFire(SuccessorTrigger.AskAgain);
                        _logger.SpeakingOlderVersion(channel.PeerProcessId, older, HandoffProtocol.Version);
                        version = older;
                        continue;
                }
            }
            catch
            {
                channel.Dispose();
                throw;
            }

            // The process on the path has just committed to another successor, which is about to take the path
            // over (it renames its own socket there within moments). Ask again, briefly.
            channel.Dispose();
            if (attempt >= 20)
            {
                Machine.TryFire(SuccessorTrigger.Refused);
                throw new ZeroDowntimeStartupException(ZeroDowntimeExitCodes.RefusedByPredecessor,
                    $"The process serving {path} kept saying it had handed over, and no successor took the path over.");
            }

            Machine.TryFire(SuccessorTrigger.AskAgain);
            await Task.Delay(TimeSpan.FromMilliseconds(50 * attempt), _process.Time, cancellationToken);
        }
    }

    /// <summary>
    /// Returns the welcome; or no welcome when the predecessor has just handed over to another process (ask again),
    /// with the older version it speaks when it does not speak <paramref name="version"/> (greet again in that one).
    /// </summary>
    private async Task<(WelcomeMessage? Welcome, ushort? OlderVersion)> GreetAsync(HandoffChannel channel, string path, ushort version, CancellationToken cancellationToken)
    {
        uint me = Libc.geteuid();
        if (channel.PeerUserId != me)
        {
            string reason = $"the process listening on it runs as uid {channel.PeerUserId}, not as this user (uid {me})";
            _logger.PredecessorUntrusted(path, reason);
            throw Refusal(ZeroDowntimeExitCodes.InvalidConfiguration, $"Refusing to take sockets from {path}: {reason}.");
        }

        _logger.PredecessorFound(channel.PeerProcessId, path);
        await FaultInjection.PauseIfRequestedAsync("after-connect", _logger, cancellationToken);

        var fds = new List<int>();
        HandoffMessage answer;
        try
        {
            channel.Send(new HelloMessage(version, Environment.ProcessId, _process.Options.ApplicationId!));
            answer = await channel.ReadAsync(ReadTimeout, cancellationToken, fds);
        }
        catch (HandoffChannelException ex) when (ex.Error != HandoffChannelError.Closed)
        {
            _logger.TakeoverFailed(ex.Message, null);
            throw Refusal(ZeroDowntimeExitCodes.RefusedByPredecessor, $"The process serving {path} did not answer the greeting properly: {ex.Message}", ex);
        }
        catch (HandoffChannelException ex)
        {
            _logger.TakeoverFailed($"the process serving {path} closed the connection instead of a welcome", null);
            throw Refusal(ZeroDowntimeExitCodes.RefusedByPredecessor, $"The process serving {path} closed the connection instead of a welcome.", ex);
        }

        switch (answer)
        {
            case WelcomeMessage welcome when welcome.Version != version:
                FdPassing.CloseAll(fds);
                _logger.ProtocolVersionMismatch(welcome.ProcessId, welcome.Version, version);
                throw Refusal(ZeroDowntimeExitCodes.ProtocolVersionMismatch, $"Predecessor answered in handoff protocol v{welcome.Version} to a greeting in v{version}.");
            case WelcomeMessage welcome when fds.Count != welcome.Listeners.Count:
                FdPassing.CloseAll(fds);
                throw Refusal(ZeroDowntimeExitCodes.RefusedByPredecessor, $"Predecessor announced {welcome.Listeners.Count} listeners but sent {fds.Count} descriptors.");
            case WelcomeMessage welcome:
                _process.Registry.AddInherited(welcome.ProcessId, welcome.Listeners, fds);
                return (welcome, null);
            case RefusedMessage { Reason: RefusalReason.AlreadyHandedOver }:
                return (null, null);
            case RefusedMessage { Reason: RefusalReason.VersionMismatch } refused
                when refused.Version >= HandoffProtocol.MinimumVersion && refused.Version < version:
                return (null, refused.Version);
            case RefusedMessage { Reason: RefusalReason.VersionMismatch } refused:
                _process.Metrics.Handoff(HandoffTags.Successor, HandoffTags.Refused);
                _logger.ProtocolVersionMismatch(channel.PeerProcessId, refused.Version, HandoffProtocol.Version);
                throw Refusal(ZeroDowntimeExitCodes.ProtocolVersionMismatch, $"Predecessor refused the handoff: {refused.Detail}");
            case RefusedMessage refused:
                _process.Metrics.Handoff(HandoffTags.Successor, HandoffTags.Refused);
                _logger.RefusedByPredecessor(channel.PeerProcessId, refused.Reason.ToString(), refused.Detail);
                throw Refusal(ZeroDowntimeExitCodes.RefusedByPredecessor, $"Predecessor refused the handoff ({refused.Reason}): {refused.Detail}");
            default:
                _logger.TakeoverFailed($"the process serving {path} answered {answer.Type} instead of a welcome", null);
                throw Refusal(ZeroDowntimeExitCodes.RefusedByPredecessor, $"The process serving {path} answered {answer.Type} instead of a welcome.");
        }
    }

    private ZeroDowntimeStartupException Refusal(int exitCode, string message, Exception? inner = null)
    {
        Machine.TryFire(SuccessorTrigger.Refused);
        return inner is null ? new ZeroDowntimeStartupException(exitCode, message) : new ZeroDowntimeStartupException(exitCode, message, inner);
    }

    /// <summary>
    /// The generation of this process (the predecessor's plus 1) and the first start of the chain. A version-1
    /// predecessor does not say: it is counted as generation 1, first started when it started.
    /// </summary>
    private void AdoptGeneration(WelcomeMessage welcome)
    {
        if (welcome.Version >= 2 && welcome.Generation > 0)
        {
            _process.Metrics.Generation = welcome.Generation + 1;
            _process.FirstStartUnixMilliseconds = welcome.FirstStartUnixMilliseconds;
        }
        else
        {
            _process.Metrics.Generation = 2;
            _process.FirstStartUnixMilliseconds = ProcessClock.StartedAt(welcome.ProcessId)?.ToUnixTimeMilliseconds()
                ?? _process.Time.GetUtcNow().ToUnixTimeMilliseconds();
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

        await AbandonAsync(SuccessorTrigger.AbandonedWhileStarting, abandoned.Reason);
        return true;
    }

    private async Task OnCommittedAsync(HandoffChannel channel)
    {
        if (!Machine.TryFire(SuccessorTrigger.Committed))
        {
            return; // too late: this process began to stop first and said so; the predecessor serves on
        }

        ProcessExitHooks.PendingHandoff = null;
        _logger.Committed(PredecessorPid, ProcessClock.Age.TotalMilliseconds);
        _process.Metrics.Handoff(HandoffTags.Successor, HandoffTags.Committed);
        _process.Metrics.HandoffDuration(HandoffTags.Successor, ProcessClock.Age);
        TakeoverEvent("committed");
        EndTakeover(null);

        // Heartbeats before anything slow: the predecessor's watch started when it sent Committed.
        _watch = BackgroundWork.Start("watch of the predecessor", () => WatchPredecessorAsync(channel), _logger);
        await _process.BecomeOwnerAsync(RoleTrigger.TookOver, HandoffAcquireReason.PredecessorReleased, _process.Participants.All,
            $"Serving; took over from pid {PredecessorPid}");
    }

    /// <summary>The connection broke before the predecessor answered: the kernel closed it because the predecessor died.</summary>
    private async Task CarryOnAloneAsync(HandoffChannel channel, string why)
    {
        if (!Machine.TryFire(SuccessorTrigger.PredecessorVanished))
        {
            return;
        }

        ProcessExitHooks.PendingHandoff = null;
        EndTakeover(null);
        _logger.PredecessorVanished(PredecessorPid, why);
        channel.Dispose();
        await _process.BecomeOwnerAsync(RoleTrigger.TookOver, HandoffAcquireReason.PredecessorVanished, _process.Participants.All,
            $"Serving; predecessor pid {PredecessorPid} vanished during the handoff");
    }

    /// <summary>
    /// The predecessor gave the handoff up (or this process gave up on it): stop without ever owning anything. A
    /// successor that had opened its gate drains what it accepted first, as a predecessor would.
    /// </summary>
    private async Task AbandonAsync(SuccessorTrigger trigger, string reason)
    {
        if (!Machine.TryFire(trigger))
        {
            return;
        }

        _process.Role.TryFire(RoleTrigger.Withdrew);
        ProcessExitHooks.PendingHandoff = null;
        _logger.HandoffAbandoned(PredecessorPid, reason);
        _process.Metrics.Handoff(HandoffTags.Successor, HandoffTags.Abandoned);
        EndTakeover("abandoned: " + reason);
        await _process.Participants.NotifyAsync("abandon", _process.Participants.All, p => p.AbandonAsync(reason, CancellationToken.None));
        _channel?.Dispose();
        if (_process.Gate.HasOpened)
        {
            _process.Gate.Close();
            _process.Lifetime.BeginDrain();
            _logger.AbandonedSuccessorDraining(_process.Drain.Count);
            await _process.DrainAsync(CancellationToken.None);
        }

        _process.StopWithExitCode(ZeroDowntimeExitCodes.HandoffAbandoned);
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
            using var timer = new PeriodicTimer(HeartbeatInterval, _process.Time);
            while (channel.TrySend(new HeartbeatMessage()) && await timer.WaitForNextTickAsync(done.Token))
            {
            }
        }, _logger);

        bool stoppingInOrder = false;
        try
        {
            var message = await channel.ReadAsync(Timeout.InfiniteTimeSpan, done.Token);
            if (message is RevokedMessage revoked && Machine.TryFire(SuccessorTrigger.Revoked))
            {
                _process.Role.TryFire(RoleTrigger.Revoked);
                _logger.HandoffRevoked(PredecessorPid, revoked.Reason);
                _process.Metrics.Handoff(HandoffTags.Successor, HandoffTags.Revoked);
                _process.StopWithExitCode(ZeroDowntimeExitCodes.HandoffAbandoned);
            }
            else if (Machine.TryFire(SuccessorTrigger.PredecessorExited))
            {
                _logger.PredecessorExited(PredecessorPid);
            }
        }
        catch (OperationCanceledException)
        {
            // This process stops in order, or has committed to a successor of its own: say so, so that a still-draining
            // predecessor does not take the end of the heartbeats for a crash and resume beside whoever serves now.
            stoppingInOrder = Machine.TryFire(SuccessorTrigger.ReleasedPredecessor);
        }
        catch (HandoffChannelException)
        {
            if (Machine.TryFire(SuccessorTrigger.PredecessorExited))
            {
                _logger.PredecessorExited(PredecessorPid);
            }
        }
        finally
        {
            await done.CancelAsync();
            await heartbeats;
            if (stoppingInOrder)
            {
                channel.TrySend(new ReleaseMessage());
            }

            channel.Dispose();
        }
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
