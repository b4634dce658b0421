using System.Runtime.InteropServices;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using ZeroDowntime.Hosting.Diagnostics;
using ZeroDowntime.Hosting.Interop;
using ZeroDowntime.Hosting.Listeners;
using ZeroDowntime.Hosting.Logging;
using ZeroDowntime.Hosting.Protocol;

namespace ZeroDowntime.Hosting.Lifecycle;

/// <summary>
/// Runs both sides of the handoff. As a successor it takes the listeners over before Kestrel binds
/// (<see cref="StartingAsync"/>), says it is ready once the host has started, and serves the handoff socket as soon
/// as the predecessor commits. As the running process it hands its listeners to one successor at a time, stops
/// accepting only when that successor is ready, drains, and exits; if the successor fails or is lost it keeps
/// (or resumes) serving. The states are in docs/architecture.md.
/// </summary>
internal sealed partial class HandoffCoordinator : IHostedLifecycleService, IDisposable
{
    /// <summary>The deadline of each single protocol step (connect, greeting, welcome).</summary>
    internal static readonly TimeSpan ReadTimeout = TimeSpan.FromSeconds(5);

    /// <summary>How often a successor tells its draining predecessor that it is alive.</summary>
    internal static readonly TimeSpan HeartbeatInterval = TimeSpan.FromSeconds(1);

    /// <summary>Silence after which a draining predecessor considers its successor lost and accepts again.</summary>
    internal static readonly TimeSpan HeartbeatTimeout = TimeSpan.FromSeconds(5);

    /// <summary>The longest one participant (a log file handoff) may hold up a step of the handoff.</summary>
    internal static readonly TimeSpan ParticipantTimeout = TimeSpan.FromSeconds(5);

    private readonly IOptions<ZeroDowntimeOptions> _optionsAccessor;
    private readonly ListenerRegistry _registry;
    private readonly AcceptGate _gate;
    private readonly ConnectionTracker _tracker;
    private readonly ZeroDowntimeLifetime _lifetime;
    private readonly IHostApplicationLifetime _applicationLifetime;
    private readonly IHandoffParticipant[] _participants;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly SystemdNotifier _systemd = new();
    private readonly ZeroDowntimeMetrics _metrics;

    /// <summary>Cancelled by a second SIGTERM: what is left of the shutdown delay is skipped.</summary>
    private readonly CancellationTokenSource _skipShutdownDelay = new();
    private int _terminations;
    private PosixSignalRegistration? _termination;

    /// <summary>When the first process of this chain of handoffs started (Unix ms), carried by every welcome.</summary>
    private long _firstStartUnixMilliseconds;
    private readonly CancellationTokenSource _shutdown = new();

    /// <summary>Cancelled as soon as the host begins to stop (ApplicationStopping), before anything is torn down.</summary>
    private readonly CancellationTokenSource _stopping = new();

    /// <summary>Cancelled when this process commits to its own successor: the watch of its predecessor then says Stopping.</summary>
    private readonly CancellationTokenSource _releasePredecessor = new();

    private ZeroDowntimeOptions _options = null!;
    private HandoffSocketServer _server = null!;
    private HandoffChannel? _predecessor;
    private int _predecessorPid;
    private Task _predecessorWatch = Task.CompletedTask;
    private PosixSignalRegistration? _hangup;

    /// <summary>The successor's side of the handoff as a trace: from connecting to the commit (or the end).</summary>
    private System.Diagnostics.Activity? _takeover;

    /// <summary>True once this process has opened its gate (it may hold accepted connections).</summary>
    private volatile bool _gateOpened;

    private int _role = (int)Role.Starting;

    /// <summary>1 while a successor holds the handoff slot (from its valid greeting to commit or failure).</summary>
    private int _handoffInProgress;

    /// <summary>
    /// True from the moment this process sent its listeners to a successor until it knows that successor is gone:
    /// meanwhile another live process may serve the same Unix socket files, so a shutdown must not remove them.
    /// </summary>
    private volatile bool _listenersShared;

    public HandoffCoordinator(
        IOptions<ZeroDowntimeOptions> options,
        ListenerRegistry registry,
        AcceptGate gate,
        ConnectionTracker tracker,
        ZeroDowntimeLifetime lifetime,
        IHostApplicationLifetime applicationLifetime,
        IEnumerable<IHandoffParticipant> participants,
        ILogger<HandoffCoordinator> logger,
        ZeroDowntimeMetrics metrics,
        TimeProvider? time = null)
    {
        _optionsAccessor = options;
        _registry = registry;
        _gate = gate;
        _tracker = tracker;
        _lifetime = lifetime;
        _applicationLifetime = applicationLifetime;
        _participants = participants.ToArray();
        _logger = logger;
        _metrics = metrics;
        _time = time ?? TimeProvider.System;
    }

    private enum Role
    {
        /// <summary>Before the predecessor question is settled.</summary>
        Starting,

        /// <summary>Has the predecessor's listeners, not committed yet: shares them with a live process.</summary>
        Successor,

        /// <summary>The one server of the listeners (first start, committed, or predecessor vanished).</summary>
        Owner,

        /// <summary>Committed to a successor: no longer accepts, drains.</summary>
        HandedOver,

        /// <summary>The sole server on a plain shutdown: its delay, then its drain. Hands over to nobody.</summary>
        ShuttingDown,

        /// <summary>Abandoned or revoked successor on its way out: must not touch anything shared.</summary>
        Stopping,
    }

    public async Task StartingAsync(CancellationToken cancellationToken)
    {
        _options = _optionsAccessor.Value;
        string path = _options.SocketPath!;
        _logger.HandoffSocket(path, _options.ApplicationId!, HandoffProtocol.Version);
        SocketPathGuard.EnsureSafe(path);
        _server = new HandoffSocketServer(path, _logger);

        InstallUpgradeTrigger();

        // A second SIGTERM skips what is left of the shutdown delay (the host's own handler stops the app on the first).
        _termination = PosixSignalRegistration.Create(PosixSignal.SIGTERM, _ =>
        {
            if (Interlocked.Increment(ref _terminations) > 1)
            {
                _skipShutdownDelay.Cancel();
            }
        });

        // Started detached (not Activity.Current), so that the host's start-up and requests are not its children.
        var outer = System.Diagnostics.Activity.Current;
        _takeover = ZeroDowntimeMetrics.ActivitySource.StartActivity("zerodowntime.handoff", System.Diagnostics.ActivityKind.Client);
        _takeover?.SetTag(ZeroDowntimeMetrics.RoleTag, HandoffTags.Successor);
        System.Diagnostics.Activity.Current = outer;
        try
        {
            _predecessor = await ConnectToPredecessorAsync(path, cancellationToken);
        }
        catch (Exception ex)
        {
            EndTakeover(ex.Message);
            throw;
        }

        if (_predecessor is null)
        {
            EndTakeover(null);
        }
        else
        {
            MoveTo(Role.Successor);
            _lifetime.IsSuccessor = true;
            ProcessExitHooks.PendingHandoff = _predecessor;
        }

        _applicationLifetime.ApplicationStopping.Register(OnStopping);
        _applicationLifetime.ApplicationStarted.Register(() => BackgroundWork.Start("start-up at ApplicationStarted", OnApplicationStartedAsync, _logger));
    }

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    /// <summary>
    /// A plain shutdown of the sole server (SIGTERM or StopApplication, no successor): first the delay, in which the
    /// readiness check says Unhealthy while everything is still served, so that load balancers move away; then the
    /// same drain as after a handoff, with the listeners closed so that the kernel refuses what nobody will accept.
    /// It runs before Kestrel's stop, so <see cref="ZeroDowntimeOptions.DrainTimeout"/> holds beyond the host's
    /// ShutdownTimeout. A successor that waits for its commit, or a process that handed over, never runs it.
    /// </summary>
    public async Task StoppingAsync(CancellationToken cancellationToken)
    {
        if (_options is not { DrainOnShutdown: true } || !TryMove(Role.Owner, Role.ShuttingDown))
        {
            return;
        }

        _lifetime.BeginShutdown();
        using var activity = ZeroDowntimeMetrics.ActivitySource.StartActivity("zerodowntime.shutdown");
        if (_options.ShutdownDelay > TimeSpan.Zero)
        {
            _logger.ShutdownDelayStarted(_options.ShutdownDelay);
            _systemd.Status($"Shutting down: out of rotation for {_options.ShutdownDelay}, then draining");
            try
            {
                await Task.Delay(_options.ShutdownDelay, _time, _skipShutdownDelay.Token);
            }
            catch (OperationCanceledException)
            {
                _logger.ShutdownDelaySkipped();
            }
        }

        activity?.AddEvent(new System.Diagnostics.ActivityEvent("delay over"));
        _registry.StopListening();
        _gate.Close();
        _server.Stop(removeFile: true);
        _lifetime.BeginDrain(handingOver: false);
        _systemd.Status("Shutting down: draining");
        await DrainAsync(CancellationToken.None);
        activity?.AddEvent(new System.Diagnostics.ActivityEvent("drained"));
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        _shutdown.Cancel();
        _server?.Stop(removeFile: IsSoleServer);
        return Task.CompletedTask;
    }

    public Task StoppedAsync(CancellationToken cancellationToken)
    {
        // Only the one server of the listeners removes Unix socket files; after a handoff, or while a successor
        // may be serving them, the files stay and the kernel drops this process's references at exit.
        _registry.CloseAll(removeUnixFiles: IsSoleServer);
        return Task.CompletedTask;
    }

    public void Dispose()
    {
        _hangup?.Dispose();
        _upgradeSignal?.Dispose();
        _termination?.Dispose();
        _skipShutdownDelay.Dispose();
        _server?.Dispose();
        _shutdown.Dispose();
        _stopping.Dispose();
        _releasePredecessor.Dispose();
    }

    private Role CurrentRole => (Role)Volatile.Read(ref _role);

    private void TakeoverEvent(string phase) => _takeover?.AddEvent(new System.Diagnostics.ActivityEvent(phase));

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
            takeover.SetStatus(System.Diagnostics.ActivityStatusCode.Error, failure);
        }

        takeover.Stop();
    }

    private bool IsSoleServer => CurrentRole is (Role.Owner or Role.ShuttingDown) && !_listenersShared;

    private void MoveTo(Role role) => Volatile.Write(ref _role, (int)role);

    /// <summary>Moves from <paramref name="from"/> only: when two events race (a commit and a stop), one wins.</summary>
    private bool TryMove(Role from, Role to) => Interlocked.CompareExchange(ref _role, (int)to, (int)from) == (int)from;

    /// <summary>
    /// The host begins to stop. A successor that has not been committed yet tells its predecessor now, not from the
    /// process-exit hook after the whole host shutdown: the predecessor may already have closed its gate, and until
    /// it hears, only this stopping process accepts.
    /// </summary>
    private void OnStopping()
    {
        _stopping.Cancel();
        if (_predecessor is { } channel && TryMove(Role.Successor, Role.Stopping))
        {
            ProcessExitHooks.PendingHandoff = null;
            channel.TrySend(new FailedMessage("it is stopping (SIGTERM or StopApplication) before the commit"));
            _gate.Close(); // the predecessor serves again; what this process accepted, it still finishes
            _logger.StoppingBeforeCommit(_predecessorPid);
            _metrics.Handoff(HandoffTags.Successor, HandoffTags.Failed);
            EndTakeover("stopped before the commit");
        }
    }
}
