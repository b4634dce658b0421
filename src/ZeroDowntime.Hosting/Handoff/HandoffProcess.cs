using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using ZeroDowntime.Hosting.Diagnostics;
using ZeroDowntime.Hosting.Drain;
using ZeroDowntime.Hosting.Listeners;
using ZeroDowntime.Hosting.Logging;
using ZeroDowntime.Hosting.Systemd;

namespace ZeroDowntime.Hosting.Handoff;

/// <summary>
/// This process in the handoff: the one machine of its <see cref="ProcessRole"/>, behind methods named after the
/// arrows, each doing what must go with its arrow (the lifetime's flags, the pending handoff of the exit hooks, the
/// gate, the drain). The sides (<see cref="PredecessorLink"/>, <see cref="SuccessorSession"/>) move the role only
/// through these. "Become the owner" is written here once, for its four occasions: a first start, a commit, a
/// predecessor that vanished, and serving again after a handoff that did not complete.
/// </summary>
internal sealed class HandoffProcess : IDisposable
{
    private readonly ZeroDowntimeOptions _options;
    private readonly ListenerRegistry _registry;
    private readonly AcceptGate _gate;
    private readonly ZeroDowntimeLifetime _lifetime;
    private readonly IHostApplicationLifetime _applicationLifetime;
    private readonly ParticipantRunner _participants;
    private readonly ConnectionDrain _drain;
    private readonly HandoffSocketServer _server;
    private readonly NotifySocketClient _notifySocket;
    private readonly ServiceManagerFdStore? _fdStore;
    private readonly ZeroDowntimeMetrics _metrics;
    private readonly ProcessExitHooks _exitHooks;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly StateMachine<ProcessRole, RoleTrigger> _role;
    private readonly CancellationTokenSource _shutdown = new();
    private readonly CancellationTokenSource _hostStopping = new();
    private readonly Lock _ownership = new();
    private long _servingSinceUnixMilliseconds;
    private Func<System.Net.Sockets.Socket, Task>? _handleConnection;
    private SuccessorSession? _latestSession;

    public HandoffProcess(
        ZeroDowntimeOptions options,
        ListenerRegistry registry,
        AcceptGate gate,
        ZeroDowntimeLifetime lifetime,
        IHostApplicationLifetime applicationLifetime,
        ParticipantRunner participants,
        ConnectionDrain drain,
        HandoffSocketServer server,
        NotifySocketClient notifySocket,
        ZeroDowntimeMetrics metrics,
        ProcessExitHooks exitHooks,
        ILogger logger,
        TimeProvider time,
        ServiceManagerFdStore? fdStore = null)
    {
        _options = options;
        _registry = registry;
        _gate = gate;
        _lifetime = lifetime;
        _applicationLifetime = applicationLifetime;
        _participants = participants;
        _drain = drain;
        _server = server;
        _notifySocket = notifySocket;
        _metrics = metrics;
        _exitHooks = exitHooks;
        _logger = logger;
        _time = time;
        _fdStore = fdStore;
        _role = new StateMachine<ProcessRole, RoleTrigger>(ProcessRoles.Table, (from, trigger, to) => logger.StateChanged(nameof(ProcessRole), from.ToString(), trigger.ToString(), to.ToString()));
    }

    /// <summary>The role now (the machine's state).</summary>
    public ProcessRole Role => _role.State;

    /// <summary>The handoff session with the latest successor (null before the first).</summary>
    public SuccessorSession? LatestSession => Volatile.Read(ref _latestSession);

    /// <summary>When the first process of this chain of handoffs started (Unix ms), carried by every welcome.</summary>
    public long FirstStartUnixMilliseconds { get; set; }

    /// <summary>When this process began to serve (first start, commit, or serving again), Unix ms.</summary>
    public long ServingSinceUnixMilliseconds => Interlocked.Read(ref _servingSinceUnixMilliseconds);

    /// <summary>Cancelled when the host stops (StopAsync): background conversations end.</summary>
    public CancellationToken ShutdownToken => _shutdown.Token;

    /// <summary>Cancelled as soon as the host begins to stop (ApplicationStopping), before anything is torn down.</summary>
    public CancellationToken HostStoppingToken => _hostStopping.Token;

    /// <summary>
    /// True when no other live process may serve these listeners, so that a shutdown may remove the Unix socket files:
    /// this process serves alone and no successor holds the listeners it was sent.
    /// </summary>
    public bool IsSoleServer => _role.State is ProcessRole.Owner or ProcessRole.HandingOver or ProcessRole.ShuttingDown
        && LatestSession is not { SharesListeners: true } && !HasPredecessorOnProbation;

    /// <summary>Set by the link while a predecessor stands by on probation (it holds the listeners and may serve them again).</summary>
    public bool HasPredecessorOnProbation { get; set; }

    // The arrows of the successor's side (PredecessorLink).

    /// <summary>A predecessor welcomed this process with its listeners (Starting -> Successor).</summary>
    public void BecomeSuccessor(PredecessorLink link)
    {
        _role.TryFire(RoleTrigger.PredecessorFound);
        _lifetime.IsSuccessor = true;
        _exitHooks.PendingHandoff = link;
    }

    /// <summary>
    /// The predecessor committed or vanished (Successor -> Owner), in the same step as the link's own decision, before
    /// anything can race it (a SIGTERM must find an owner to shut down, a revocation a role to leave). The caller then
    /// becomes the owner (<see cref="BecomeOwnerAsync(HandoffAcquireReason, string)"/>), after what must come first (the heartbeats).
    /// </summary>
    public void TookOver()
    {
        _role.TryFire(RoleTrigger.TookOver);
        _exitHooks.PendingHandoff = null;
    }

    /// <summary>The handoff was abandoned, or this process stops before the commit (Successor -> Leaving).</summary>
    public void Withdraw()
    {
        _role.TryFire(RoleTrigger.Withdrew);
        _exitHooks.PendingHandoff = null;
    }

    /// <summary>
    /// A withdrawn successor stops without ever owning anything: the participants hear the abandon, and what it accepted
    /// (its gate had opened) is drained first, as a predecessor would; then the host stops with <paramref name="exitCode"/>.
    /// </summary>
    public async Task LeaveAsync(string reason, int exitCode, Action? beforeDrain = null)
    {
        await _participants.NotifyAsync("abandon", _participants.All, p => p.AbandonAsync(reason, CancellationToken.None));
        beforeDrain?.Invoke();
        if (_gate.HasOpened)
        {
            _gate.Close();
            _lifetime.BeginDrain(handingOver: false); // it never handed anything over: HasHandedOver stays false
            _logger.AbandonedSuccessorDraining(_drain.Count);
            await DrainAsync(CancellationToken.None);
        }

        StopWithExitCode(exitCode);
    }

    /// <summary>The host stops before the commit: the predecessor serves again; what this process accepted, it still finishes.</summary>
    public void StopAccepting() => _gate.Close();

    // The arrows of the running process's side (SuccessorSession).

    /// <summary>A successor's valid greeting takes the one handoff slot (Owner -> HandingOver); false when it is taken or gone.</summary>
    public bool TryTakeHandoffSlot(SuccessorSession session)
    {
        if (!_role.TryFire(RoleTrigger.SuccessorGreeted))
        {
            return false;
        }

        Volatile.Write(ref _latestSession, session);
        return true;
    }

    /// <summary>The session ended without a handover: the slot is free (HandingOver -> Owner; no arrow after a commit or a shutdown).</summary>
    public void HandoffEnded() => _role.TryFire(RoleTrigger.HandoffEnded);

    /// <summary>
    /// The commit begins (HandingOver -> HandedOver): the gate closes. Returns why not when a shutdown or a revocation
    /// came first (this process then hands over to nobody), null when it began.
    /// </summary>
    public string? TryBeginCommit()
    {
        if (_role.TryFire(RoleTrigger.CommitStarted))
        {
            _gate.Close();
            return null;
        }

        return _role.State == ProcessRole.Leaving
            ? "the running process was revoked by its own predecessor, which serves again"
            : "the running process is shutting down";
    }

    /// <summary>The participants release their resources for the successor; the task of one that overran, or null.</summary>
    public Task<Task?> ReleaseParticipantsAsync(List<IHandoffParticipant> released) => _participants.ReleaseAllAsync(released, ShutdownToken);

    /// <summary>Goodbye on every response from now on (the app's Draining token fires), before the successor can log that it serves alone.</summary>
    public void BeginDrainAfterCommit() => _lifetime.BeginDrain();

    /// <summary>
    /// The handoff did not complete after all (HandedOver -> HandingOver): this process serves again, as if the handoff
    /// never happened. Not when this process was revoked itself meanwhile.
    /// </summary>
    /// <param name="drainBegan">The drain had begun: the app's lifetime says it serves again, with a fresh Draining token.</param>
    /// <param name="reason">What the participants are told.</param>
    /// <param name="participants">Who acquires: null for all of them, or only those released for a handoff that did not complete.</param>
    /// <param name="status">The STATUS= line for systemd.</param>
    /// <param name="socket">What to do with the handoff socket.</param>
    public async Task ServeAgainAsync(bool drainBegan, HandoffAcquireReason reason, IReadOnlyList<IHandoffParticipant>? participants, string status, HandoffSocketStep socket)
    {
        if (drainBegan)
        {
            _lifetime.Resume();
        }

        if (_role.TryFire(RoleTrigger.Resumed))
        {
            await BecomeOwnerAsync(reason, participants ?? _participants.All, status, socket);
        }
    }

    /// <summary>A released predecessor never serves again: its copies of the listeners go at once (the successor holds its own).</summary>
    public void StopListeningForGood() => _registry.StopListening();

    // Probation: the rollback, on the side that stands by (SuccessorSession).

    /// <summary>
    /// The successor on probation asks for a rollback (HandedOver -> HandingOver): the drain's goodbye ends, endpoints
    /// that the successor dropped are bound again, and the gate opens, before the successor closes its own, so that
    /// at no instant nobody accepts. False when the role has no such arrow (this process is leaving).
    /// </summary>
    public bool TryResumeForRollback()
    {
        if (!_role.TryFire(RoleTrigger.Resumed))
        {
            return false;
        }

        _lifetime.Resume();
        _registry.ReviveDeadListeners();
        OpenGate();
        return true;
    }

    /// <summary>
    /// The successor handed back (or was lost during the rollback): this process owns everything again, as after
    /// serving again, and binds a new handoff socket over the path. The role stays HandingOver until the session ends.
    /// </summary>
    public Task CompleteRollbackAsync(HandoffAcquireReason reason, string status) =>
        BecomeOwnerAsync(reason, _participants.All, status, HandoffSocketStep.ServeAgain);

    /// <summary>
    /// The successor released this process while it rolled back (HandingOver -> HandedOver): it never serves again. The
    /// gate and the listener copies close, and what it accepted meanwhile drains (Connection: close).
    /// </summary>
    public void WithdrawRollback()
    {
        _role.TryFire(RoleTrigger.RollbackWithdrawn);
        _gate.Close();
        _registry.StopListening();
        _lifetime.BeginDrain();
    }

    // Probation: the rollback, on the side on probation (PredecessorLink).

    /// <summary>
    /// After a rollback: waits (at most <paramref name="timeout"/>, a look every 10 ms) until the predecessor serves the
    /// handoff socket's path again. It does so after its participants acquired and after it told systemd (and
    /// <c>zerodowntime run</c>) <c>MAINPID=</c>, so a rolled-back process that exits after this is never taken for the
    /// service's main process dying.
    /// </summary>
    public async Task WaitUntilThePathIsServedByAnotherAsync(TimeSpan timeout)
    {
        long since = _time.GetTimestamp();
        using var tick = new PeriodicTimer(TimeSpan.FromMilliseconds(10), _time);
        while (_server.PathNamesThisSocket && _time.GetElapsedTime(since) < timeout)
        {
            await tick.WaitForNextTickAsync();
        }
    }

    /// <summary>A rollback is asked for (Owner -> HandingBack): no greeting takes the slot meanwhile. False when this process does not serve alone now.</summary>
    public bool TryBeginRollback() => _role.TryFire(RoleTrigger.RollbackBegan);

    /// <summary>The predecessor did not take the service back (HandingBack -> Owner): serve on. False when the rollback went on meanwhile (or a shutdown came).</summary>
    public bool TryRefuseRollback() => _role.TryFire(RoleTrigger.RollbackRefused);

    /// <summary>
    /// The predecessor reopened its gate (HandingBack -> Leaving): this gate closes, and every response says goodbye
    /// from now on (Connection: close, GOAWAY). False when a shutdown came first.
    /// </summary>
    public bool TryHandBack()
    {
        if (!_role.TryFire(RoleTrigger.HandedBack))
        {
            return false;
        }

        _gate.Close();
        _lifetime.BeginDrain();
        _notifySocket.Status("Rolled back: draining");
        return true;
    }

    // A plain shutdown.

    /// <summary>SIGTERM or StopApplication while this process serves alone (Owner or HandingOver -> ShuttingDown); false otherwise.</summary>
    public bool TryBeginShutdown()
    {
        if (!_role.TryFire(RoleTrigger.ShutdownBegan))
        {
            return false;
        }

        _lifetime.BeginShutdown();
        return true;
    }

    /// <summary>After the shutdown delay: the listeners close (the kernel refuses what nobody will accept), the handoff socket goes, and what was accepted drains.</summary>
    public async Task DrainForShutdownAsync()
    {
        _registry.StopListening();
        _gate.Close();
        _server.Stop(removeFile: true);
        _lifetime.BeginDrain(handingOver: false);
        _notifySocket.Status("Shutting down: draining");
        await DrainAsync(CancellationToken.None);
    }

    /// <summary>
    /// A successor that took over (<see cref="TookOver"/>) becomes the owner of everything: all participants acquire,
    /// and it serves the handoff socket.
    /// </summary>
    /// <param name="reason">What the participants are told (the predecessor released, or vanished).</param>
    /// <param name="status">The STATUS= line for systemd.</param>
    public Task BecomeOwnerAsync(HandoffAcquireReason reason, string status) =>
        BecomeOwnerAsync(reason, _participants.All, status, HandoffSocketStep.Serve);

    /// <summary>A first start: Kestrel has bound every endpoint, so this process is the server (Starting -> Owner).</summary>
    public async Task StartAloneAsync()
    {
        FirstStartUnixMilliseconds = _time.GetUtcNow().ToUnixTimeMilliseconds();
        if (_role.TryFire(RoleTrigger.StartedAlone))
        {
            await BecomeOwnerAsync(HandoffAcquireReason.FirstStart, _participants.All, "Serving", HandoffSocketStep.Serve);
        }
    }

    /// <summary>Where the handoff socket's connections go (set once by the coordinator).</summary>
    public void ServeConnectionsWith(Func<System.Net.Sockets.Socket, Task> handleConnection) => _handleConnection = handleConnection;

    public void BeginHostStop() => _hostStopping.Cancel();

    public void EndHost()
    {
        _shutdown.Cancel();
        _server.Stop(removeFile: IsSoleServer);
    }

    /// <summary>Opens the gate: every listener accepts from now. The first opening is logged.</summary>
    public void OpenGate()
    {
        bool first = !_gate.HasOpened;
        _gate.Open();
        if (first)
        {
            _logger.Accepting(_registry.ActiveListeners().Count);
        }
    }

    /// <summary>
    /// What a process does when it has become the one server of the listeners; the caller has moved the role already,
    /// in the same step as its own machine's decision, so that no racing event finds a half-owner. Then:
    /// <list type="number">
    /// <item>the gate opens (on a first start only after the participants acquired: as before, the first request finds
    /// the log file owned; clients wait those few ms in the kernel's queue; a successor's gate is open already, and a
    /// resuming process reopens at once, because nobody else accepts);</item>
    /// <item>the participants acquire (a successor's only after its predecessor released);</item>
    /// <item>systemd hears the new main process;</item>
    /// <item>last the handoff socket, so that a next version finds a process that owns everything.</item>
    /// </list>
    /// </summary>
    /// <param name="reason">What the participants are told.</param>
    /// <param name="participants">Who acquires: all of them, or only those released for a handoff that did not complete.</param>
    /// <param name="status">The STATUS= line for systemd.</param>
    /// <param name="socket">What to do with the handoff socket.</param>
    private async Task BecomeOwnerAsync(HandoffAcquireReason reason, IReadOnlyList<IHandoffParticipant> participants, string status,
        HandoffSocketStep socket)
    {
        Interlocked.Exchange(ref _servingSinceUnixMilliseconds, _time.GetUtcNow().ToUnixTimeMilliseconds());
        IReadOnlyList<ListenerKey> dropped = [];
        if (reason is HandoffAcquireReason.PredecessorReleased or HandoffAcquireReason.PredecessorVanished)
        {
            // First: from the commit, the draining predecessor's copies of the endpoints this process dropped queue for
            // nobody. Shut down, the kernel refuses them at once.
            dropped = _registry.ShutDownDropped();
        }
        else if (reason is HandoffAcquireReason.Reclaimed or HandoffAcquireReason.NotCommitted)
        {
            // Before the gate reopens: an endpoint that the lost successor dropped (and so shut down) is bound anew.
            _registry.ReviveDeadListeners();
        }

        if (reason == HandoffAcquireReason.FirstStart)
        {
            // Listeners passed at start (LISTEN_FDS) that no endpoint asked for: closed, and taken out of the store.
            dropped = _registry.CloseDropped();
            await _participants.AcquireAsync(reason, participants, ShutdownToken);
            OpenGate();
        }
        else
        {
            OpenGate();
            await _participants.AcquireAsync(reason, participants, ShutdownToken);
        }

        // The acquisition took time (up to 5 s a participant, more if this process froze): the predecessor may have
        // revoked this process meanwhile and serve again. Then this process must not claim anything shared: not the
        // Unix files, not MAINPID (systemd would follow a process that is about to exit 77), not the handoff socket
        // (the next deploy would find a dead one). The check and the claims are one step under the lock that the
        // revocation takes too, so a revocation read now waits until the claims are made, and is then seen by the
        // predecessor's own MAINPID, which it sends after its Revoked.
        lock (_ownership)
        {
            if (_role.State == ProcessRole.Leaving)
            {
                _logger.OwnershipWithdrawn(status);
                return;
            }

            if (reason is HandoffAcquireReason.PredecessorReleased or HandoffAcquireReason.PredecessorVanished)
            {
                _registry.RemoveUnusedInheritedUnixFiles();
            }

            _notifySocket.MainProcess(status);

            // The service manager (systemd with FileDescriptorStoreMax=, or zerodowntime run) keeps a copy of every
            // listener, so that a crash of this process leaves the queue listening; what nobody serves leaves it.
            foreach (var key in dropped)
            {
                _fdStore?.Remove(key);
            }

            _fdStore?.Store(_registry);
            switch (socket)
            {
                case HandoffSocketStep.Serve:
                    StartHandoffServer();
                    break;
                case HandoffSocketStep.ServeAgain:
                    _server.Stop(removeFile: false);
                    StartHandoffServer();
                    break;
            }
        }
    }

    /// <summary>
    /// This process's predecessor took it for lost and serves again: the role becomes Leaving, in one step with
    /// <c>BecomeOwnerAsync</c>'s claims (see there). False when the role had no such arrow.
    /// </summary>
    public bool Revoke()
    {
        lock (_ownership)
        {
            return _role.TryFire(RoleTrigger.Revoked);
        }
    }

    /// <summary>The drain after the goodbye (a handoff, a plain shutdown, an abandoned successor); false when <paramref name="cutShort"/> ended it first.</summary>
    public Task<bool> DrainAsync(CancellationToken cutShort) => _drain.RunAsync(_options, cutShort);

    /// <summary>
    /// The drain after a committed handoff: as <see cref="DrainAsync"/>, while this generation is one of the draining
    /// generations (its state file beside the handoff socket), ended at once when
    /// <see cref="ZeroDowntimeOptions.MaxDrainingGenerations"/> newer ones drain too.
    /// </summary>
    public async Task<bool> DrainAfterHandoffAsync(CancellationToken successorLost)
    {
        var now = _time.GetUtcNow();
        var self = new DrainingGeneration(Environment.ProcessId, _metrics.Generation,
            (ProcessClock.StartedAt(Environment.ProcessId) ?? now).ToUnixTimeMilliseconds(), _drain.Count,
            (now + _options.DrainTimeout).ToUnixTimeMilliseconds());
        await using var watch = new DrainingGenerationWatch(_options.SocketPath!, self, _options.MaxDrainingGenerations, () => _drain.Count, _drain.Logger, _time);
        watch.Start();
        return await _drain.RunAsync(_options, successorLost, watch.EndNow);
    }

    /// <summary>Stops this process without ever owning anything more: the gate closes and the host stops with <paramref name="exitCode"/>.</summary>
    public void StopWithExitCode(int exitCode)
    {
        _gate.Close();
        _exitHooks.ExitWith(exitCode);
        _applicationLifetime.StopApplication();
    }

    /// <summary>The handoff completed and the drain is over: the host stops, and the process exits 0.</summary>
    public void ExitAfterHandoff() => _applicationLifetime.StopApplication();

    public void Dispose()
    {
        _server.Dispose();
        _shutdown.Dispose();
        _hostStopping.Dispose();
    }

    private void StartHandoffServer()
    {
        try
        {
            _server.Start(_handleConnection ?? throw new InvalidOperationException("No handler for the handoff socket."));
        }
        catch (Exception ex) when (ex is IOException or System.Net.Sockets.SocketException or UnauthorizedAccessException)
        {
            _logger.HandoffServerFailed(ex);
        }
    }
}

/// <summary>What <see cref="HandoffProcess"/> does with the handoff socket when it becomes the owner.</summary>
internal enum HandoffSocketStep
{
    /// <summary>Serve it: a first start, or a successor that now owns the listeners.</summary>
    Serve,

    /// <summary>Bind it again: a successor that was lost after the commit may have renamed its own over the path.</summary>
    ServeAgain,

    /// <summary>Keep it as it is: the handoff was abandoned before any successor served the path.</summary>
    Keep,
}
