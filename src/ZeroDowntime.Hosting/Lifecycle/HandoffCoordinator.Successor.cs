using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using ZeroDowntime.Hosting.Diagnostics;
using ZeroDowntime.Hosting.Interop;
using ZeroDowntime.Hosting.Logging;
using ZeroDowntime.Hosting.Protocol;

namespace ZeroDowntime.Hosting.Lifecycle;

/// <summary>The successor's side: take the listeners over, say ready, own them after the commit.</summary>
internal sealed partial class HandoffCoordinator
{
    private async Task<HandoffChannel?> ConnectToPredecessorAsync(string path, CancellationToken cancellationToken)
    {
        long start = _time.GetTimestamp();
        ushort version = HandoffProtocol.Version;
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
                var (welcome, olderVersion) = await GreetAsync(channel, path, version, cancellationToken);
                if (welcome is not null)
                {
                    _predecessorPid = welcome.ProcessId;
                    AdoptGeneration(welcome);
                    _logger.ListenersReceived(welcome.Listeners.Count, welcome.ProcessId, _time.GetElapsedTime(start).TotalMilliseconds);
                    TakeoverEvent("listeners received");
                    _takeover?.SetTag("zerodowntime.predecessor.pid", welcome.ProcessId);
                    _takeover?.SetTag("zerodowntime.protocol.version", (int)welcome.Version);
                    await FaultInjection.PauseIfRequestedAsync("after-receive", _logger, cancellationToken);
                    return channel;
                }

                if (olderVersion is { } older)
                {
                    // The running process was built from an earlier release: greet it again in its own version.
                    channel.Dispose();
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
                throw new ZeroDowntimeStartupException(ZeroDowntimeExitCodes.RefusedByPredecessor,
                    $"The process serving {path} kept saying it had handed over, and no successor took the path over.");
            }

            await Task.Delay(TimeSpan.FromMilliseconds(50 * attempt), _time, cancellationToken);
        }
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
            _firstStartUnixMilliseconds = welcome.FirstStartUnixMilliseconds;
        }
        else
        {
            _metrics.Generation = 2;
            _firstStartUnixMilliseconds = ProcessClock.StartedAt(welcome.ProcessId)?.ToUnixTimeMilliseconds() ?? _time.GetUtcNow().ToUnixTimeMilliseconds();
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
            throw new ZeroDowntimeStartupException(ZeroDowntimeExitCodes.InvalidConfiguration, $"Refusing to take sockets from {path}: {reason}.");
        }

        _logger.PredecessorFound(channel.PeerProcessId, path);
        await FaultInjection.PauseIfRequestedAsync("after-connect", _logger, cancellationToken);

        var fds = new List<int>();
        HandoffMessage? answer;
        try
        {
            channel.Send(new HelloMessage(version, Environment.ProcessId, _options.ApplicationId!));
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
            case WelcomeMessage welcome when welcome.Version != version:
                FdPassing.CloseAll(fds);
                _logger.ProtocolVersionMismatch(welcome.ProcessId, welcome.Version, version);
                throw new ZeroDowntimeStartupException(ZeroDowntimeExitCodes.ProtocolVersionMismatch,
                    $"Predecessor answered in handoff protocol v{welcome.Version} to a greeting in v{version}.");
            case WelcomeMessage welcome:
                if (fds.Count != welcome.Listeners.Count)
                {
                    FdPassing.CloseAll(fds);
                    throw new ZeroDowntimeStartupException(ZeroDowntimeExitCodes.RefusedByPredecessor,
                        $"Predecessor announced {welcome.Listeners.Count} listeners but sent {fds.Count} descriptors.");
                }

                _registry.AddInherited(welcome.ProcessId, welcome.Listeners, fds);
                return (welcome, null);
            case RefusedMessage { Reason: RefusalReason.AlreadyHandedOver }:
                return (null, null);
            case RefusedMessage { Reason: RefusalReason.VersionMismatch } refused
                when refused.Version >= HandoffProtocol.MinimumVersion && refused.Version < version:
                return (null, refused.Version);
            case RefusedMessage { Reason: RefusalReason.VersionMismatch } refused:
                _metrics.Handoff(HandoffTags.Successor, HandoffTags.Refused);
                _logger.ProtocolVersionMismatch(channel.PeerProcessId, refused.Version, HandoffProtocol.Version);
                throw new ZeroDowntimeStartupException(ZeroDowntimeExitCodes.ProtocolVersionMismatch,
                    $"Predecessor refused the handoff: {refused.Detail}");
            case RefusedMessage refused:
                _metrics.Handoff(HandoffTags.Successor, HandoffTags.Refused);
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
                MoveTo(Role.Owner);
                ServingFromNow();
                _metrics.Generation = 1;
                _firstStartUnixMilliseconds = _time.GetUtcNow().ToUnixTimeMilliseconds();
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
        _gateOpened = true;
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
            TakeoverEvent("ready sent");
            await FaultInjection.PauseIfRequestedAsync("after-ready", _logger, _stopping.Token);
            answer = await channel.ReadAsync(_options.HandoffTimeout + ReadTimeout, _stopping.Token);
        }
        catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
        {
            // Stopping before the commit: OnStopping has told the predecessor already.
            return;
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
            or HandoffProtocolException or InvalidDataException or ObjectDisposedException)
        {
            answer = null;
            failure = ex.Message;
        }

        switch (answer)
        {
            case CommittedMessage when TryMove(Role.Successor, Role.Owner):
                ProcessExitHooks.PendingHandoff = null;
                ServingFromNow();
                _logger.Committed(_predecessorPid, ProcessClock.Age.TotalMilliseconds);
                _metrics.Handoff(HandoffTags.Successor, HandoffTags.Committed);
                _metrics.HandoffDuration(HandoffTags.Successor, ProcessClock.Age);
                TakeoverEvent("committed");
                EndTakeover(null);

                // Heartbeats before anything slow: the predecessor's watch started when it sent Committed.
                _predecessorWatch = BackgroundWork.Start("watch of the predecessor", () => WatchPredecessorAsync(channel), _logger);
                await NotifyParticipantsAsync("acquire", p => p.AcquireAsync(HandoffAcquireReason.PredecessorReleased, _shutdown.Token));
                _registry.RemoveUnusedInheritedUnixFiles();
                _systemd.MainProcess($"Serving; took over from pid {_predecessorPid}");
                StartHandoffServer();
                break;
            case AbandonedMessage abandoned:
                await AbandonAsync(channel, abandoned.Reason);
                break;
            case CommittedMessage or RevokedMessage:
                // Too late: this process began to stop first and said so; the predecessor serves on.
                break;
            default:
                // The connection broke: the kernel closed it because the predecessor died. Carry on alone.
                if (!TryMove(Role.Successor, Role.Owner))
                {
                    break;
                }

                ProcessExitHooks.PendingHandoff = null;
                ServingFromNow();
                EndTakeover(null);
                _logger.PredecessorVanished(_predecessorPid, failure ?? (answer is null ? "it closed the connection" : $"it answered {answer.Type}"));
                channel.Dispose();
                await NotifyParticipantsAsync("acquire", p => p.AcquireAsync(HandoffAcquireReason.PredecessorVanished, _shutdown.Token));
                _registry.RemoveUnusedInheritedUnixFiles();
                _systemd.MainProcess($"Serving; predecessor pid {_predecessorPid} vanished during the handoff");
                StartHandoffServer();
                break;
        }
    }

    /// <summary>
    /// The predecessor gave the handoff up (or this process gave up on it): stop without ever owning anything. A
    /// successor that had opened its gate drains what it accepted first, as a predecessor would.
    /// </summary>
    private async Task AbandonAsync(HandoffChannel channel, string reason)
    {
        if (!TryMove(Role.Successor, Role.Stopping))
        {
            return;
        }

        ProcessExitHooks.PendingHandoff = null;
        _logger.HandoffAbandoned(_predecessorPid, reason);
        _metrics.Handoff(HandoffTags.Successor, HandoffTags.Abandoned);
        EndTakeover("abandoned: " + reason);
        await NotifyParticipantsAsync("abandon", p => p.AbandonAsync(reason, CancellationToken.None));
        channel.Dispose();
        if (_gateOpened)
        {
            _gate.Close();
            _lifetime.BeginDrain();
            _logger.AbandonedSuccessorDraining(_tracker.Count);
            await DrainAsync(CancellationToken.None);
        }

        StopWithExitCode(ZeroDowntimeExitCodes.HandoffAbandoned);
    }

    /// <summary>
    /// After the commit: heartbeats to the draining predecessor, a last <see cref="MessageType.Stopping"/> when this
    /// process stops in order or commits to its own successor, and the predecessor's last word (end of stream when it
    /// exits, or a revocation).
    /// </summary>
    private async Task WatchPredecessorAsync(HandoffChannel channel)
    {
        using var done = CancellationTokenSource.CreateLinkedTokenSource(_shutdown.Token, _releasePredecessor.Token);
        var heartbeats = BackgroundWork.Start("heartbeats to the predecessor", async () =>
        {
            using var timer = new PeriodicTimer(HeartbeatInterval, _time);
            while (channel.TrySend(new HeartbeatMessage()) && await timer.WaitForNextTickAsync(done.Token))
            {
            }
        }, _logger);

        bool stoppingInOrder = false;
        try
        {
            var message = await channel.ReadAsync(Timeout.InfiniteTimeSpan, done.Token);
            if (message is RevokedMessage revoked)
            {
                MoveTo(Role.Stopping);
                _logger.HandoffRevoked(_predecessorPid, revoked.Reason);
                _metrics.Handoff(HandoffTags.Successor, HandoffTags.Revoked);
                StopWithExitCode(ZeroDowntimeExitCodes.HandoffAbandoned);
            }
            else
            {
                _logger.PredecessorExited(_predecessorPid);
            }
        }
        catch (OperationCanceledException)
        {
            // This process stops in order, or has committed to a successor of its own: say so, so that a still-draining
            // predecessor does not take the end of the heartbeats for a crash and resume beside whoever serves now.
            stoppingInOrder = true;
        }
        catch (Exception ex) when (ex is SocketException or System.ComponentModel.Win32Exception or HandoffProtocolException
            or InvalidDataException or ObjectDisposedException)
        {
            _logger.PredecessorExited(_predecessorPid);
        }
        finally
        {
            await done.CancelAsync();
            await heartbeats;
            if (stoppingInOrder)
            {
                channel.TrySend(new StoppingMessage());
            }

            channel.Dispose();
        }
    }

    /// <summary>
    /// Called when this process commits to its own successor, before that successor hears it: the predecessor that
    /// may still drain is told Stopping and the channel closed, so that it never resumes whatever happens to this
    /// process from now on (the successor serves). A predecessor that lost this process before it committed onward
    /// still resumes, as it must.
    /// </summary>
    private async Task ReleasePredecessorAsync()
    {
        if (_predecessorWatch.IsCompleted)
        {
            return;
        }

        await _releasePredecessor.CancelAsync();
        await _predecessorWatch;
        _logger.ToldPredecessorStopping(_predecessorPid);
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
}
