using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using ZeroDowntime.Hosting.Diagnostics;
using ZeroDowntime.Hosting.Drain;
using ZeroDowntime.Hosting.Listeners;
using ZeroDowntime.Hosting.Logging;
using ZeroDowntime.Hosting.Systemd;

namespace ZeroDowntime.Hosting.Handoff;

/// <summary>
/// This process in the handoff: what its machines share (the listeners, the gate, the participants, the drain, the
/// handoff socket) and the one machine of its <see cref="ProcessRole"/>. "Become the owner" is written here once, for
/// its four occasions: a first start, a commit, a predecessor that vanished, and serving again after a handoff that
/// did not complete.
/// </summary>
internal sealed class HandoffProcess : IDisposable
{
    private readonly IHostApplicationLifetime _applicationLifetime;
    private readonly CancellationTokenSource _shutdown = new();
    private readonly CancellationTokenSource _hostStopping = new();
    private readonly Lock _ownership = new();
    private long _servingSinceUnixMilliseconds;
    private Func<System.Net.Sockets.Socket, Task>? _handleConnection;

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
        ILogger logger,
        TimeProvider time,
        ServiceManagerFdStore? fdStore = null)
    {
        Options = options;
        Registry = registry;
        Gate = gate;
        Lifetime = lifetime;
        _applicationLifetime = applicationLifetime;
        Participants = participants;
        Drain = drain;
        Server = server;
        NotifySocket = notifySocket;
        Metrics = metrics;
        Logger = logger;
        Time = time;
        FdStore = fdStore;
        Role = new StateMachine<ProcessRole, RoleTrigger>(ProcessRoles.Table, (from, trigger, to) => logger.StateChanged(nameof(ProcessRole), from.ToString(), trigger.ToString(), to.ToString()));
    }

    public ZeroDowntimeOptions Options { get; }

    public ListenerRegistry Registry { get; }

    public AcceptGate Gate { get; }

    public ZeroDowntimeLifetime Lifetime { get; }

    public ParticipantRunner Participants { get; }

    public ConnectionDrain Drain { get; }

    public HandoffSocketServer Server { get; }

    public NotifySocketClient NotifySocket { get; }

    /// <summary>The service manager's fd store, told about the listeners whenever this process becomes the owner; null in tests.</summary>
    public ServiceManagerFdStore? FdStore { get; }

    public ZeroDowntimeMetrics Metrics { get; }

    public ILogger Logger { get; }

    public TimeProvider Time { get; }

    public StateMachine<ProcessRole, RoleTrigger> Role { get; }

    /// <summary>The handoff session with the latest successor (null before the first).</summary>
    public SuccessorSession? LatestSession { get; set; }

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
    public bool IsSoleServer => Role.State is ProcessRole.Owner or ProcessRole.HandingOver or ProcessRole.ShuttingDown
        && LatestSession is not { SharesListeners: true };

    /// <summary>Where the handoff socket's connections go (set once by the coordinator).</summary>
    public void ServeConnectionsWith(Func<System.Net.Sockets.Socket, Task> handleConnection) => _handleConnection = handleConnection;

    public void BeginHostStop() => _hostStopping.Cancel();

    public void EndHost() => _shutdown.Cancel();

    /// <summary>Opens the gate: every listener accepts from now. The first opening is logged.</summary>
    public void OpenGate()
    {
        bool first = !Gate.HasOpened;
        Gate.Open();
        if (first)
        {
            Logger.Accepting(Registry.ActiveListeners().Count);
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
    public async Task BecomeOwnerAsync(HandoffAcquireReason reason, IReadOnlyList<IHandoffParticipant> participants, string status,
        HandoffSocketStep socket)
    {
        Interlocked.Exchange(ref _servingSinceUnixMilliseconds, Time.GetUtcNow().ToUnixTimeMilliseconds());
        IReadOnlyList<ListenerKey> dropped = [];
        if (reason is HandoffAcquireReason.PredecessorReleased or HandoffAcquireReason.PredecessorVanished)
        {
            // First: from the commit, the draining predecessor's copies of the endpoints this process dropped queue for
            // nobody. Shut down, the kernel refuses them at once.
            dropped = Registry.ShutDownDropped();
        }
        else if (reason is HandoffAcquireReason.Reclaimed or HandoffAcquireReason.NotCommitted)
        {
            // Before the gate reopens: an endpoint that the lost successor dropped (and so shut down) is bound anew.
            Registry.ReviveDeadListeners();
        }

        if (reason == HandoffAcquireReason.FirstStart)
        {
            // Listeners passed at start (LISTEN_FDS) that no endpoint asked for: closed, and taken out of the store.
            dropped = Registry.CloseDropped();
            await Participants.AcquireAsync(reason, participants, ShutdownToken);
            OpenGate();
        }
        else
        {
            OpenGate();
            await Participants.AcquireAsync(reason, participants, ShutdownToken);
        }

        // The acquisition took time (up to 5 s a participant, more if this process froze): the predecessor may have
        // revoked this process meanwhile and serve again. Then this process must not claim anything shared: not the
        // Unix files, not MAINPID (systemd would follow a process that is about to exit 77), not the handoff socket
        // (the next deploy would find a dead one). The check and the claims are one step under the lock that the
        // revocation takes too, so a revocation read now waits until the claims are made, and is then seen by the
        // predecessor's own MAINPID, which it sends after its Revoked.
        lock (_ownership)
        {
            if (Role.State == ProcessRole.Leaving)
            {
                Logger.OwnershipWithdrawn(status);
                return;
            }

            if (reason is HandoffAcquireReason.PredecessorReleased or HandoffAcquireReason.PredecessorVanished)
            {
                Registry.RemoveUnusedInheritedUnixFiles();
            }

            NotifySocket.MainProcess(status);

            // The service manager (systemd with FileDescriptorStoreMax=, or zerodowntime run) keeps a copy of every
            // listener, so that a crash of this process leaves the queue listening; what nobody serves leaves it.
            foreach (var key in dropped)
            {
                FdStore?.Remove(key);
            }

            FdStore?.Store(Registry);
            switch (socket)
            {
                case HandoffSocketStep.Serve:
                    StartHandoffServer();
                    break;
                case HandoffSocketStep.ServeAgain:
                    Server.Stop(removeFile: false);
                    StartHandoffServer();
                    break;
            }
        }
    }

    /// <summary>
    /// This process's predecessor took it for lost and serves again: the role becomes Leaving, in one step with
    /// <see cref="BecomeOwnerAsync"/>'s claims (see there). False when the role had no such arrow.
    /// </summary>
    public bool Revoke()
    {
        lock (_ownership)
        {
            return Role.TryFire(RoleTrigger.Revoked);
        }
    }

    /// <summary>The drain after the goodbye; false when <paramref name="successorLost"/> cut it short.</summary>
    public Task<bool> DrainAsync(CancellationToken successorLost) => Drain.RunAsync(Options, successorLost);

    /// <summary>
    /// The drain after a committed handoff: as <see cref="DrainAsync"/>, while this generation is one of the draining
    /// generations (its state file beside the handoff socket), ended at once when
    /// <see cref="ZeroDowntimeOptions.MaxDrainingGenerations"/> newer ones drain too.
    /// </summary>
    public async Task<bool> DrainAfterHandoffAsync(CancellationToken successorLost)
    {
        var now = Time.GetUtcNow();
        var self = new DrainingGeneration(Environment.ProcessId, Metrics.Generation,
            (ProcessClock.StartedAt(Environment.ProcessId) ?? now).ToUnixTimeMilliseconds(), Drain.Count,
            (now + Options.DrainTimeout).ToUnixTimeMilliseconds());
        await using var watch = new DrainingGenerationWatch(Options.SocketPath!, self, Options.MaxDrainingGenerations, () => Drain.Count, Logger, Time);
        watch.Start();
        return await Drain.RunAsync(Options, successorLost, watch.EndNow);
    }

    /// <summary>Stops this process without ever owning anything more: the gate closes and the host stops with <paramref name="exitCode"/>.</summary>
    public void StopWithExitCode(int exitCode)
    {
        Gate.Close();
        ProcessExitHooks.ExitWith(exitCode);
        _applicationLifetime.StopApplication();
    }

    /// <summary>The handoff completed and the drain is over: this process exits 0.</summary>
    public void Exit() => _applicationLifetime.StopApplication();

    public void Dispose()
    {
        Server.Dispose();
        _shutdown.Dispose();
        _hostStopping.Dispose();
    }

    private void StartHandoffServer()
    {
        try
        {
            Server.Start(_handleConnection ?? throw new InvalidOperationException("No handler for the handoff socket."));
        }
        catch (Exception ex) when (ex is IOException or System.Net.Sockets.SocketException or UnauthorizedAccessException)
        {
            Logger.HandoffServerFailed(ex);
        }
    }
}

/// <summary>What <see cref="HandoffProcess.BecomeOwnerAsync"/> does with the handoff socket.</summary>
internal enum HandoffSocketStep
{
    /// <summary>Serve it: a first start, or a successor that now owns the listeners.</summary>
    Serve,

    /// <summary>Bind it again: a successor that was lost after the commit may have renamed its own over the path.</summary>
    ServeAgain,

    /// <summary>Keep it as it is: the handoff was abandoned before any successor served the path.</summary>
    Keep,
}
