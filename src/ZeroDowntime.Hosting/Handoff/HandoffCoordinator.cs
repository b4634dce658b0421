using System.Net.Sockets;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using ZeroDowntime.Hosting.Diagnostics;
using ZeroDowntime.Hosting.Drain;
using ZeroDowntime.Hosting.Interop;
using ZeroDowntime.Hosting.Listeners;
using ZeroDowntime.Hosting.Logging;
using ZeroDowntime.Hosting.Protocol;
using ZeroDowntime.Hosting.Systemd;
using ZeroDowntime.Hosting.Testing;
using ZeroDowntime.Hosting.Upgrade;
using ZeroDowntime.Hosting.Warmup;

namespace ZeroDowntime.Hosting.Handoff;

/// <summary>
/// Wires the host's lifecycle to the three machines of the handoff (docs/architecture.md): the process's
/// <see cref="ProcessRole"/> (in <see cref="HandoffProcess"/>), the <see cref="PredecessorLink"/> of this start, and a
/// <see cref="SuccessorSession"/> per successor that greets it. It owns no state of its own beyond that wiring.
/// </summary>
internal sealed class HandoffCoordinator : IHostedLifecycleService, IDisposable
{
    private readonly IOptions<ZeroDowntimeOptions> _optionsAccessor;
    private readonly ListenerRegistry _registry;
    private readonly AcceptGate _gate;
    private readonly ConnectionTracker _tracker;
    private readonly ZeroDowntimeLifetime _lifetime;
    private readonly IHostApplicationLifetime _applicationLifetime;
    private readonly IEnumerable<IHandoffParticipant> _participants;
    private readonly ILogger _logger;
    private readonly ILoggerFactory _loggerFactory;
    private readonly ZeroDowntimeMetrics _metrics;
    private readonly TimeProvider _time;
    private readonly NotifySocketClient _notifySocket;
    private readonly ProcessExitHooks _exitHooks;
    private readonly HandoffFaultPoints _faultPoints;
    private readonly Warmup.TakeoverPreparation? _preparation;

    /// <summary>Cancelled by a second SIGTERM: what is left of the shutdown delay is skipped.</summary>
    private readonly CancellationTokenSource _skipShutdownDelay = new();
    private int _terminations;
    private PosixSignalRegistration? _termination;

    private HandoffProcess? _process;
    private HandoffSocketServer? _server;
    /// <summary>This process's link to the predecessor that welcomed it (null on a first start).</summary>
    private PredecessorLink? _predecessor;
    private UpgradeRunner? _upgrades;
    private ControlRequests? _control;
    private readonly Probation.ProbationWatch? _probationWatch;
    private PosixSignalRegistration? _rollbackSignal;

    public HandoffCoordinator(
        IOptions<ZeroDowntimeOptions> options,
        ListenerRegistry registry,
        AcceptGate gate,
        ConnectionTracker tracker,
        ZeroDowntimeLifetime lifetime,
        IHostApplicationLifetime applicationLifetime,
        IEnumerable<IHandoffParticipant> participants,
        ILoggerFactory loggerFactory,
        ZeroDowntimeMetrics metrics,
        TimeProvider? time = null,
        NotifySocketClient? notifySocket = null,
        Warmup.TakeoverPreparation? preparation = null,
        ProcessExitHooks? exitHooks = null,
        HandoffFaultPoints? faultPoints = null,
        Probation.ProbationWatch? probationWatch = null)
    {
        _probationWatch = probationWatch;
        _optionsAccessor = options;
        _registry = registry;
        _gate = gate;
        _tracker = tracker;
        _lifetime = lifetime;
        _applicationLifetime = applicationLifetime;
        _participants = participants;
        _loggerFactory = loggerFactory;
        _logger = loggerFactory.CreateLogger(LogCategories.Handoff);
        _metrics = metrics;
        _time = time ?? TimeProvider.System;
        _notifySocket = notifySocket ?? new NotifySocketClient();
        _preparation = preparation;
        _exitHooks = exitHooks ?? new ProcessExitHooks();
        _faultPoints = faultPoints ?? HandoffFaultPoints.None;
    }

    /// <summary>This process's role (for tests and diagnostics); Starting before <see cref="StartingAsync"/>.</summary>
    internal ProcessRole Role => _process?.Role ?? ProcessRole.Starting;

    public async Task StartingAsync(CancellationToken cancellationToken)
    {
        var options = _optionsAccessor.Value;
        if (!options.Enabled)
        {
            return; // plain Kestrel: no handoff socket, no signals, no drain (the first-start runner tells the participants)
        }

        string path = options.SocketPath!;
        _logger.HandoffSocket(path, options.ApplicationId!, HandoffProtocol.Version);
        SocketPathGuard.EnsureSafe(path);
        if (options.Warmup.JitProfile)
        {
            // As early as the socket's directory is known to be safe: the runtime compiles the earlier profile's methods
            // on a background thread while Kestrel starts, the app's pipeline is built and the warm-up runs.
            Warmup.JitProfile.Start(path, _loggerFactory.CreateLogger(LogCategories.Warmup));
        }

        var server = _server = new HandoffSocketServer(path, _logger, _time);
        var fdStore = new ServiceManagerFdStore(_notifySocket.SocketPath, _loggerFactory.CreateLogger(LogCategories.Systemd), _time);
        var process = _process = new HandoffProcess(options, _registry, _gate, _lifetime, _applicationLifetime,
            new ParticipantRunner(_faultPoints.Pauses("in-release") ? [.. _participants, new FaultPointParticipant(_faultPoints, _logger)] : _participants, _logger, _time), new ConnectionDrain(_tracker, _loggerFactory.CreateLogger(LogCategories.Drain), _metrics, _time),
            server, _notifySocket, _metrics, _exitHooks, _logger, _time, fdStore);
        process.ServeConnectionsWith(HandleConnectionAsync);

        // Kestrel unbinds a listener while this process serves on: a configuration reload dropped the endpoint. Not on
        // a shutdown or after a handoff (a successor, or the next start, serves it): the store keeps those.
        _registry.ListenerReleased = key =>
        {
            if (process.Role == ProcessRole.Owner && !process.HostStoppingToken.IsCancellationRequested)
            {
                fdStore.Remove(key);
            }
        };
        _upgrades = new UpgradeRunner(process, options, _notifySocket, _metrics, _loggerFactory.CreateLogger(LogCategories.Upgrade), _time);
        _upgrades.InstallSignals();
        _control = new ControlRequests(process, _upgrades, _registry, options, _metrics, () => _predecessor);

        // A second SIGTERM skips what is left of the shutdown delay (the host's own handler stops the app on the first).
        _termination = PosixSignalRegistration.Create(PosixSignal.SIGTERM, _ =>
        {
            if (Interlocked.Increment(ref _terminations) > 1)
            {
                _skipShutdownDelay.Cancel();
            }
        });

        InstallRollbackSignal(options);
        var link = new PredecessorLink(process, _registry, options, _metrics, _faultPoints, _logger, _time, _probationWatch);
        if (await link.ProbeAsync(path, cancellationToken))
        {
            _predecessor = link;
        }
        else
        {
            link.Dispose();
        }

        // Listening sockets passed at start (systemd's fd store or .socket unit, zerodowntime run after a crash): adopted
        // like a predecessor's, before Kestrel binds, so that its endpoints serve them instead of binding anew.
        var (activated, others) = SocketActivation.TakeFromEnvironment();
        _registry.AddActivated(activated);
        if (others.Count > 0)
        {
            _logger.ActivatedDescriptorsIgnored(others.Count, string.Join(", ", others));
        }

        _applicationLifetime.ApplicationStopping.Register(OnHostStopping);
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
        var options = _optionsAccessor.Value;
        if (!options.DrainOnShutdown || _process is not { } process || !process.TryBeginShutdown())
        {
            return;
        }

        // The service is being stopped: a predecessor that still drains must neither serve again should this process
        // die during its drain, nor keep its copies of the listeners, which would queue connections that nobody
        // serves once this process stops listening. Release it first (it closes its copies at once).
        if (_predecessor is { } predecessor)
        {
            await predecessor.ReleasePredecessorAsync();
        }

        using var activity = ZeroDowntimeMetrics.ActivitySource.StartActivity("zerodowntime.shutdown");
        if (options.ShutdownDelay > TimeSpan.Zero)
        {
            _logger.ShutdownDelayStarted(options.ShutdownDelay);
            _notifySocket.Status($"Shutting down: out of rotation for {options.ShutdownDelay}, then draining");
            try
            {
                await Task.Delay(options.ShutdownDelay, _time, _skipShutdownDelay.Token);
            }
            catch (OperationCanceledException)
            {
                _logger.ShutdownDelaySkipped();
            }
        }

        activity?.AddEvent(new System.Diagnostics.ActivityEvent("delay over"));
        await process.DrainForShutdownAsync();
        activity?.AddEvent(new System.Diagnostics.ActivityEvent("drained"));
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        _process?.EndHost();

        return Task.CompletedTask;
    }

    public Task StoppedAsync(CancellationToken cancellationToken)
    {
        // Only the one server of the listeners removes Unix socket files; after a handoff, or while a successor
        // may be serving them, the files stay and the kernel drops this process's references at exit.
        _registry.CloseAll(removeUnixFiles: _process?.IsSoleServer ?? false);
        return Task.CompletedTask;
    }

    public void Dispose()
    {
        // Kestrel may unbind its listeners after this (a host disposed without being stopped): nothing of this process's
        // state may be read by then (the callback read a disposed token: ObjectDisposedException out of the dispose).
        _registry.ListenerReleased = null;
        _upgrades?.Dispose();
        _predecessor?.Dispose();
        _termination?.Dispose();
        _rollbackSignal?.Dispose();
        _skipShutdownDelay.Dispose();
        _process?.Dispose();
    }

    /// <summary>
    /// SIGUSR1 asks the serving process for a rollback while a predecessor stands by on probation. Its default action
    /// would end the process, so it is always handled while the library is enabled; a SIGUSR1 that asks nothing (no
    /// probation, <c>RollbackSignal=None</c>) is logged and ignored.
    /// </summary>
    private void InstallRollbackSignal(ZeroDowntimeOptions options)
    {
        _rollbackSignal = PosixSignalRegistration.Create((PosixSignal)Libc.SIGUSR1, context =>
        {
            context.Cancel = true;
            if (options.Probation.RollbackSignal == Probation.ProbationRollbackSignal.None)
            {
                _logger.RollbackSignalIgnored("SIGUSR1", "ZeroDowntime:Probation:RollbackSignal is None");
            }
            else if (_predecessor is { Machine.State: PredecessorLinkState.OnProbation } link)
            {
                _ = BackgroundWork.Start("rollback on SIGUSR1", () => link.RequestRollbackAsync(RollbackOrigin.Signal, "SIGUSR1"), _logger);
            }
            else
            {
                _logger.RollbackSignalIgnored("SIGUSR1", _process?.Role is ProcessRole.HandedOver or ProcessRole.HandingOver
                    ? $"this process (pid {Environment.ProcessId}) has handed over; a rollback is asked of the serving process"
                    : $"no generation on probation behind pid {Environment.ProcessId}");
            }
        });
    }

    /// <summary>The host begins to stop: a successor that has not been committed yet tells its predecessor at once.</summary>
    private void OnHostStopping()
    {
        _process?.BeginHostStop();
        _predecessor?.OnHostStopping();
    }

    private async Task OnApplicationStartedAsync()
    {
        var process = _process!;
        try
        {
            await _faultPoints.PauseAsync("before-ready", _logger, process.ShutdownToken);
            if (_predecessor is { } link)
            {
                await link.TakeOverAsync(_preparation is { } preparation ? budget => preparation.BeforeReadyAsync(budget, process.HostStoppingToken) : null);
                return;
            }

            // First start: warm up (and wait for the readiness checks) before the gate first opens.
            if (_preparation is { } firstStart)
            {
                await firstStart.BeforeFirstAcceptAsync(process.HostStoppingToken);
            }

            // First start: Kestrel has bound every endpoint, so this process is the server; only now may it take the
            // files over (a second copy that fails to bind must not have touched them).
            _registry.DropUnusedInherited();
            _metrics.Generation = 1;
            await process.StartAloneAsync();
        }
        catch (Exception ex) when (process.ShutdownToken.IsCancellationRequested)
        {
            _logger.TakeoverFailed("the host is stopping", ex);
        }
    }

    /// <summary>One connection to the handoff socket: a successor's handoff, or a control request of the tool.</summary>
    private async Task HandleConnectionAsync(Socket socket)
    {
        var process = _process!;
        HandoffChannel channel;
        try
        {
            channel = new HandoffChannel(socket, _time);
        }
        catch (Exception ex) when (ex is SocketException or InvalidOperationException)
        {
            socket.Dispose();
            _logger.HandoffProtocolError(0, ex.Message);
            return;
        }

        using (channel)
        {
            int pid = channel.PeerProcessId;
            uint me = Libc.geteuid();
            if (channel.PeerUserId != me)
            {
                _logger.HandoffRefused(pid, channel.PeerUserId, $"it runs as uid {channel.PeerUserId}, not as this process's uid {me}");
                return;
            }

            HandoffMessage greeting;
            try
            {
                greeting = await channel.ReadAsync(PredecessorLink.ReadTimeout, process.ShutdownToken);
            }
            catch (HandoffChannelException ex)
            {
                _logger.HandoffProtocolError(pid, ex.Error == HandoffChannelError.Closed && ex.InnerException is null ? "closed without a greeting" : ex.Message);
                return;
            }
            catch (OperationCanceledException)
            {
                return; // this process is stopping; the peer sees the connection close
            }

            switch (greeting)
            {
                case StatusRequestMessage or UpgradeRequestMessage or RollbackCommandMessage:
                    await _control!.AnswerAsync(channel, greeting, pid);
                    break;
                case HelloMessage hello:
                    try
                    {
                        await new SuccessorSession(process, _upgrades!, _predecessor, channel, hello, _registry, _optionsAccessor.Value, _metrics,
                            _server!, _notifySocket, _logger, _time).RunAsync();
                    }
                    catch (OperationCanceledException) when (process.ShutdownToken.IsCancellationRequested)
                    {
                        // This process is stopping; the peer sees the connection close.
                    }

                    break;
                default:
                    _logger.HandoffProtocolError(pid, $"sent {greeting.Type} instead of a greeting");
                    break;
            }
        }
    }
}
