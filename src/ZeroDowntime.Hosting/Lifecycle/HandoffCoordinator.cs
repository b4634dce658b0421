using System.Net.Sockets;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
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
internal sealed class HandoffCoordinator : IHostedLifecycleService, IDisposable
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
    private readonly CancellationTokenSource _shutdown = new();

    private ZeroDowntimeOptions _options = null!;
    private HandoffSocketServer _server = null!;
    private HandoffChannel? _predecessor;
    private int _predecessorPid;

    private volatile Role _role = Role.Starting;

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

        _predecessor = await ConnectToPredecessorAsync(path, cancellationToken);
        if (_predecessor is not null)
        {
            _role = Role.Successor;
            _lifetime.IsSuccessor = true;
            ProcessExitHooks.PendingHandoff = _predecessor;
        }

        _applicationLifetime.ApplicationStarted.Register(() => _ = Task.Run(OnApplicationStartedAsync));
    }

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StoppingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

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
        _server?.Dispose();
        _shutdown.Dispose();
    }

    private bool IsSoleServer => _role == Role.Owner && !_listenersShared;

    // ---------------------------------------------------------------- successor side

    private async Task<HandoffChannel?> ConnectToPredecessorAsync(string path, CancellationToken cancellationToken)
    {
        long start = _time.GetTimestamp();
        for (int attempt = 1; ; attempt++)
        {
            var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try
            {
                using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                deadline.CancelAfter(ReadTimeout);
                await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), deadline.Token);
            }
            catch (SocketException ex) when (ex.SocketErrorCode is SocketError.AddressNotAvailable or SocketError.ConnectionRefused)
            {
                socket.Dispose();
                if (ex.SocketErrorCode == SocketError.ConnectionRefused)
                {
                    _logger.StaleSocket(path);
                }
                else
                {
                    _logger.NoPredecessor(path);
                }

                return null;
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                socket.Dispose();
                throw new ZeroDowntimeStartupException(ZeroDowntimeExitCodes.RefusedByPredecessor,
                    $"The process serving {path} did not accept the handoff connection within {ReadTimeout.TotalSeconds:0} s.");
            }
            catch
            {
                socket.Dispose();
                throw;
            }

            var channel = new HandoffChannel(socket);
            try
            {
                var welcome = await GreetAsync(channel, path, cancellationToken);
                if (welcome is not null)
                {
                    _predecessorPid = welcome.ProcessId;
                    _logger.ListenersReceived(welcome.Listeners.Count, welcome.ProcessId, _time.GetElapsedTime(start).TotalMilliseconds);
                    await FaultInjection.PauseIfRequestedAsync("after-receive", _logger, cancellationToken);
                    return channel;
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
                throw new ZeroDowntimeStartupException(ZeroDowntimeExitCodes.RefusedByPredecessor,
                    $"The process serving {path} kept saying it had handed over, and no successor took the path over.");
            }

            await Task.Delay(TimeSpan.FromMilliseconds(50 * attempt), _time, cancellationToken);
        }
    }

    /// <summary>Returns the welcome, or null when the predecessor has just handed over to another process.</summary>
    private async Task<WelcomeMessage?> GreetAsync(HandoffChannel channel, string path, CancellationToken cancellationToken)
    {
        uint me = Libc.geteuid();
        if (channel.PeerUserId != me)
        {
            string reason = $"the process listening on it runs as uid {channel.PeerUserId}, not as this user (uid {me})";
            _logger.PredecessorUntrusted(path, reason);
            throw new ZeroDowntimeStartupException(ZeroDowntimeExitCodes.InvalidConfiguration, $"Refusing to take sockets from {path}: {reason}.");
        }

        _logger.PredecessorFound(channel.PeerProcessId, path);
        await FaultInjection.PauseIfRequestedAsync("after-connect", _logger, cancellationToken);

        var fds = new List<int>();
        HandoffMessage? answer;
        try
        {
            channel.Send(new HelloMessage(HandoffProtocol.Version, Environment.ProcessId, _options.ApplicationId!));
            answer = await channel.ReadAsync(ReadTimeout, cancellationToken, fds);
        }
        catch (Exception ex) when (ex is TimeoutException or HandoffProtocolException or InvalidDataException
            or SocketException or System.ComponentModel.Win32Exception)
        {
            _logger.TakeoverFailed(ex.Message, null);
            throw new ZeroDowntimeStartupException(ZeroDowntimeExitCodes.RefusedByPredecessor,
                $"The process serving {path} did not answer the greeting properly: {ex.Message}", ex);
        }

        switch (answer)
        {
            case WelcomeMessage welcome when welcome.Version != HandoffProtocol.Version:
                FdPassing.CloseAll(fds);
                _logger.ProtocolVersionMismatch(welcome.ProcessId, welcome.Version, HandoffProtocol.Version);
                throw new ZeroDowntimeStartupException(ZeroDowntimeExitCodes.ProtocolVersionMismatch,
                    $"Predecessor speaks handoff protocol v{welcome.Version}, this process v{HandoffProtocol.Version}.");
            case WelcomeMessage welcome:
                if (fds.Count != welcome.Listeners.Count)
                {
                    FdPassing.CloseAll(fds);
                    throw new ZeroDowntimeStartupException(ZeroDowntimeExitCodes.RefusedByPredecessor,
                        $"Predecessor announced {welcome.Listeners.Count} listeners but sent {fds.Count} descriptors.");
                }

                _registry.AddInherited(welcome.Listeners, fds);
                return welcome;
            case RefusedMessage { Reason: RefusalReason.AlreadyHandedOver }:
                return null;
            case RefusedMessage { Reason: RefusalReason.VersionMismatch } refused:
                _logger.ProtocolVersionMismatch(channel.PeerProcessId, refused.Version, HandoffProtocol.Version);
                throw new ZeroDowntimeStartupException(ZeroDowntimeExitCodes.ProtocolVersionMismatch,
                    $"Predecessor refused the handoff: {refused.Detail}");
            case RefusedMessage refused:
                _logger.RefusedByPredecessor(channel.PeerProcessId, refused.Reason.ToString(), refused.Detail);
                throw new ZeroDowntimeStartupException(ZeroDowntimeExitCodes.RefusedByPredecessor,
                    $"Predecessor refused the handoff ({refused.Reason}): {refused.Detail}");
            default:
                string what = answer is null ? "closed the connection" : $"answered {answer.Type}";
                _logger.TakeoverFailed($"the process serving {path} {what} instead of a welcome", null);
                throw new ZeroDowntimeStartupException(ZeroDowntimeExitCodes.RefusedByPredecessor,
                    $"The process serving {path} {what} instead of a welcome.");
        }
    }

    private async Task OnApplicationStartedAsync()
    {
        try
        {
            await FaultInjection.PauseIfRequestedAsync("before-ready", _logger, _shutdown.Token);
            if (_predecessor is not null && await WasAbandonedWhileStartingAsync(_predecessor))
            {
                return;
            }

            _registry.CloseUnusedInherited();
            if (_predecessor is null)
            {
                // First start: Kestrel has bound every endpoint, so this process is the server; only now may it
                // take the files over (a second copy that fails to bind must not have touched them).
                _role = Role.Owner;
                await NotifyParticipantsAsync("acquire", p => p.AcquireAsync(HandoffAcquireReason.FirstStart, _shutdown.Token));
                OpenGate();
                _systemd.MainProcess("Serving");
                StartHandoffServer();
            }
            else
            {
                OpenGate();
                await CompleteTakeoverAsync(_predecessor);
            }
        }
        catch (Exception ex) when (_shutdown.IsCancellationRequested)
        {
            _logger.TakeoverFailed("the host is stopping", ex);
        }
    }

    private void OpenGate()
    {
        _gate.Open();
        _logger.Accepting(_registry.ActiveListeners().Count);
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

        HandoffMessage? message;
        try
        {
            message = await channel.ReadAsync(ReadTimeout, _shutdown.Token);
        }
        catch (Exception ex) when (ex is SocketException or System.ComponentModel.Win32Exception or TimeoutException
            or HandoffProtocolException or InvalidDataException)
        {
            return false;
        }

        if (message is not AbandonedMessage abandoned)
        {
            return false;
        }

        await AbandonAsync(channel, abandoned.Reason);
        return true;
    }

    private async Task CompleteTakeoverAsync(HandoffChannel channel)
    {
        HandoffMessage? answer;
        string? failure = null;
        try
        {
            channel.Send(new ReadyMessage());
            _logger.SentReady(ProcessClock.Age.TotalMilliseconds, _predecessorPid);
            answer = await channel.ReadAsync(_options.HandoffTimeout + ReadTimeout, _shutdown.Token);
        }
        catch (TimeoutException)
        {
            // The predecessor is alive (the connection is open) but silent: frozen. Taking over now would leave two
            // servers once it wakes up; stop instead, and let it carry on as the server it still is.
            channel.TrySend(new FailedMessage("no answer to Ready within the handoff timeout"));
            await AbandonAsync(channel, $"pid {_predecessorPid} did not answer within {_options.HandoffTimeout + ReadTimeout}");
            return;
        }
        catch (Exception ex) when (ex is SocketException or System.ComponentModel.Win32Exception
            or HandoffProtocolException or InvalidDataException)
        {
            answer = null;
            failure = ex.Message;
        }

        ProcessExitHooks.PendingHandoff = null;
        switch (answer)
        {
            case CommittedMessage:
                _role = Role.Owner;
                _logger.Committed(_predecessorPid, ProcessClock.Age.TotalMilliseconds);

                // Heartbeats before anything slow: the predecessor's watch started when it sent Committed.
                _ = WatchPredecessorAsync(channel);
                await NotifyParticipantsAsync("acquire", p => p.AcquireAsync(HandoffAcquireReason.PredecessorReleased, _shutdown.Token));
                _registry.RemoveUnusedInheritedUnixFiles();
                _systemd.MainProcess($"Serving; took over from pid {_predecessorPid}");
                StartHandoffServer();
                break;
            case AbandonedMessage abandoned:
                await AbandonAsync(channel, abandoned.Reason);
                break;
            default:
                // The connection broke: the kernel closed it because the predecessor died. Carry on alone.
                _logger.PredecessorVanished(_predecessorPid, failure ?? (answer is null ? "it closed the connection" : $"it answered {answer.Type}"));
                channel.Dispose();
                _role = Role.Owner;
                await NotifyParticipantsAsync("acquire", p => p.AcquireAsync(HandoffAcquireReason.PredecessorVanished, _shutdown.Token));
                _registry.RemoveUnusedInheritedUnixFiles();
                _systemd.MainProcess($"Serving; predecessor pid {_predecessorPid} vanished during the handoff");
                StartHandoffServer();
                break;
        }
    }

    private async Task AbandonAsync(HandoffChannel channel, string reason)
    {
        ProcessExitHooks.PendingHandoff = null;
        _role = Role.Stopping;
        _logger.HandoffAbandoned(_predecessorPid, reason);
        await NotifyParticipantsAsync("abandon", p => p.AbandonAsync(reason, CancellationToken.None));
        channel.Dispose();
        StopWithExitCode(ZeroDowntimeExitCodes.HandoffAbandoned);
    }

    /// <summary>
    /// After the commit: heartbeats to the draining predecessor, a last <see cref="MessageType.Stopping"/> when this
    /// process stops in order, and the predecessor's last word (end of stream when it exits, or a revocation).
    /// </summary>
    private async Task WatchPredecessorAsync(HandoffChannel channel)
    {
        using var done = CancellationTokenSource.CreateLinkedTokenSource(_shutdown.Token);
        var heartbeats = Task.Run(async () =>
        {
            using var timer = new PeriodicTimer(HeartbeatInterval, _time);
            try
            {
                while (channel.TrySend(new HeartbeatMessage()) && await timer.WaitForNextTickAsync(done.Token))
                {
                }
            }
            catch (OperationCanceledException)
            {
            }
        });

        try
        {
            var message = await channel.ReadAsync(Timeout.InfiniteTimeSpan, _shutdown.Token);
            if (message is RevokedMessage revoked)
            {
                _role = Role.Stopping;
                _logger.HandoffRevoked(_predecessorPid, revoked.Reason);
                StopWithExitCode(ZeroDowntimeExitCodes.HandoffAbandoned);
            }
            else
            {
                _logger.PredecessorExited(_predecessorPid);
            }
        }
        catch (OperationCanceledException)
        {
            // This process stops in order: say so, so that a still-draining predecessor does not take the end of the
            // heartbeats for a crash and resume serving beside whoever serves now.
            channel.TrySend(new StoppingMessage());
        }
        catch (Exception ex) when (ex is SocketException or System.ComponentModel.Win32Exception or HandoffProtocolException
            or InvalidDataException)
        {
            _logger.PredecessorExited(_predecessorPid);
        }
        finally
        {
            await done.CancelAsync();
            await heartbeats;
            channel.Dispose();
        }
    }

    private void StopWithExitCode(int exitCode)
    {
        _gate.Close();
        Environment.ExitCode = exitCode;
        _applicationLifetime.StopApplication();
    }

    private void StartHandoffServer()
    {
        try
        {
            _server.Start(HandleSuccessorAsync);
        }
        catch (Exception ex) when (ex is IOException or SocketException or UnauthorizedAccessException)
        {
            _logger.HandoffServerFailed(ex);
        }
    }

    // ---------------------------------------------------------------- predecessor side

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

        if (greeting is not HelloMessage hello)
        {
            _logger.HandoffProtocolError(pid, greeting is null ? "closed without a greeting" : $"sent {greeting.Type} instead of a greeting");
            return;
        }

        if (hello.Version != HandoffProtocol.Version)
        {
            Refuse(channel, pid, RefusalReason.VersionMismatch,
                $"protocol version mismatch: this process (pid {Environment.ProcessId}) speaks v{HandoffProtocol.Version}, the successor speaks v{hello.Version}");
            return;
        }

        if (!string.Equals(hello.ApplicationId, _options.ApplicationId, StringComparison.Ordinal))
        {
            Refuse(channel, pid, RefusalReason.ApplicationMismatch,
                $"this socket serves application '{_options.ApplicationId}', the successor is '{hello.ApplicationId}'");
            return;
        }

        if (_role != Role.Owner)
        {
            Refuse(channel, pid, RefusalReason.AlreadyHandedOver, $"pid {Environment.ProcessId} has already handed over and is draining");
            return;
        }

        if (Interlocked.CompareExchange(ref _handoffInProgress, 1, 0) != 0)
        {
            Refuse(channel, pid, RefusalReason.Busy, $"another handoff from pid {Environment.ProcessId} is in progress");
            return;
        }

        try
        {
            long greeted = _time.GetTimestamp();
            var listeners = _registry.ActiveListeners();
            _listenersShared = true;
            channel.Send(
                new WelcomeMessage(HandoffProtocol.Version, Environment.ProcessId, listeners.Select(l => new ListenerDescriptor(l.Key, l.Description)).ToArray()),
                listeners.Select(l => l.Fd).ToArray());
            _logger.HandoffRequested(pid, listeners.Count);

            if (!await WaitForReadyAsync(channel, pid, greeted))
            {
                // The successor failed, vanished or was told to stop: it will not serve these listeners.
                _listenersShared = false;
                return;
            }

            _logger.SuccessorReady(pid, _time.GetElapsedTime(greeted).TotalMilliseconds);
            await CommitAndDrainAsync(channel, pid);
        }
        finally
        {
            // Still (or again) the server: the slot is free. A process that handed over keeps it taken.
            if (_role == Role.Owner)
            {
                Volatile.Write(ref _handoffInProgress, 0);
            }
        }
    }

    private void Refuse(HandoffChannel channel, int pid, RefusalReason reason, string detail)
    {
        _logger.HandoffRefused(pid, channel.PeerUserId, detail);
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
            return false;
        }
        catch (Exception ex) when (ex is HandoffProtocolException or InvalidDataException)
        {
            channel.TrySend(new AbandonedMessage(HandoffProtocol.FitText($"protocol error: {ex.Message}")));
            _logger.HandoffProtocolError(pid, ex.Message);
            return false;
        }

        switch (message)
        {
            case ReadyMessage:
                return true;
            case FailedMessage failed:
                _logger.SuccessorFailed(pid, failed.Reason);
                return false;
            case null:
                _logger.SuccessorFailed(pid, "it disconnected before it was ready: it exited or crashed during start-up");
                return false;
            default:
                channel.TrySend(new AbandonedMessage($"unexpected {message.Type} before Ready"));
                _logger.HandoffProtocolError(pid, $"sent {message.Type} before Ready");
                return false;
        }
    }

    private async Task CommitAndDrainAsync(HandoffChannel channel, int pid)
    {
        // Commit point: from here the successor is the server. Stop accepting first, so that when the successor
        // hears "committed" this process takes no new connection. The handoff socket stays open (answering
        // "already handed over", which successors retry) until the successor renames its own over the path.
        _gate.Close();
        _role = Role.HandedOver;
        await NotifyParticipantsAsync("release", p => p.ReleaseAsync(_shutdown.Token));

        using var lost = new CancellationTokenSource();
        Task<string?> watch;
        if (channel.TrySend(new CommittedMessage()))
        {
            watch = WatchSuccessorAsync(channel, lost);
        }
        else
        {
            watch = Task.FromResult<string?>("the connection broke at the commit");
            await lost.CancelAsync();
        }

        _lifetime.BeginDrain();
        _systemd.Status($"Handed over to pid {pid}; draining");
        if (await DrainAsync(lost.Token))
        {
            _logger.Exiting(pid);
            _applicationLifetime.StopApplication();
            return;
        }

        // The successor died or froze after the commit: nobody else accepts. Serve again, as if the handoff never
        // happened, and tell the successor (should it wake up) that it must stop.
        string reason = await watch ?? "unknown";
        _logger.SuccessorLost(pid, reason);
        channel.TrySend(new RevokedMessage(HandoffProtocol.FitText(reason)));
        _lifetime.Resume();
        _listenersShared = false;
        _role = Role.Owner;
        _gate.Open();
        await NotifyParticipantsAsync("acquire", p => p.AcquireAsync(HandoffAcquireReason.PredecessorVanished, _shutdown.Token));
        _systemd.MainProcess($"Serving again; successor pid {pid} was lost");
        _server.Stop(removeFile: false);
        StartHandoffServer();
    }

    /// <summary>
    /// Reads heartbeats until the successor stops in order (null: keep draining) or is lost (the reason; the drain
    /// is cancelled through <paramref name="lost"/>).
    /// </summary>
    private async Task<string?> WatchSuccessorAsync(HandoffChannel channel, CancellationTokenSource lost)
    {
        string reason;
        try
        {
            while (true)
            {
                var message = await channel.ReadAsync(HeartbeatTimeout, _shutdown.Token);
                if (message is HeartbeatMessage)
                {
                    continue;
                }

                if (message is StoppingMessage)
                {
                    return null;
                }

                reason = message is null ? "it closed the handoff connection without stopping in order" : $"it sent {message.Type}";
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

    /// <summary>Returns true when the drain ended (all connections closed or the deadline passed).</summary>
    private async Task<bool> DrainAsync(CancellationToken successorLost)
    {
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
        _logger.DrainCompleted(_time.GetElapsedTime(start).TotalMilliseconds, aborted);
        return true;
    }

    /// <summary>
    /// Runs each participant off this thread with a deadline, so that neither a synchronous nor a hung participant
    /// can stall the handoff; one that fails or overruns is logged and the handoff goes on.
    /// </summary>
    private async Task NotifyParticipantsAsync(string stage, Func<IHandoffParticipant, Task> action)
    {
        foreach (var participant in _participants)
        {
            try
            {
                await Task.Run(() => action(participant)).WaitAsync(ParticipantTimeout);
            }
            catch (Exception ex)
            {
                _logger.ParticipantFailed(stage, ex);
            }
        }
    }
}
