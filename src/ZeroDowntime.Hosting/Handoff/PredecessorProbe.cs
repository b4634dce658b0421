using Microsoft.Extensions.Logging;
using ZeroDowntime.Hosting.Diagnostics;
using ZeroDowntime.Hosting.Interop;
using ZeroDowntime.Hosting.Listeners;
using ZeroDowntime.Hosting.Logging;
using ZeroDowntime.Hosting.Protocol;
using ZeroDowntime.Hosting.Testing;

namespace ZeroDowntime.Hosting.Handoff;

/// <summary>
/// The successor's first step (<see cref="PredecessorLinkState.Probing"/>): find the process serving the handoff socket,
/// check that it runs as this user, greet it in the newest version both speak, and take its listeners. It fires the
/// probing arrows of the successor's machine (NoPredecessor, AskAgain, Refused); the caller fires Welcomed.
/// </summary>
internal sealed class PredecessorProbe(
    StateMachine<PredecessorLinkState, PredecessorLinkTrigger> machine,
    ListenerRegistry registry,
    ZeroDowntimeOptions options,
    ZeroDowntimeMetrics metrics,
    HandoffFaultPoints faultPoints,
    ILogger logger,
    TimeProvider time)
{
    /// <summary>
    /// How long a newcomer waits for a process that says it is shutting down. It says so only during its
    /// <see cref="ZeroDowntimeOptions.ShutdownDelay"/> (at most 5 minutes: the options validator refuses more), and then,
    /// within milliseconds, closes its listeners and removes the handoff socket; 10 s more cover a busy machine.
    /// </summary>
    internal static readonly TimeSpan ShutdownWaitLimit = TimeSpan.FromMinutes(5) + TimeSpan.FromSeconds(10);

    /// <summary>How often a waiting newcomer asks again (a status request: the shutting-down process logs nothing for it).</summary>
    internal static readonly TimeSpan ShutdownPollInterval = TimeSpan.FromMilliseconds(200);

    private readonly ILogger _logger = logger;

    /// <summary>
    /// Connects to <paramref name="path"/> and greets whoever serves it, until it welcomes this process (the channel and
    /// the welcome, the listeners already in the registry) or nobody serves the path (null). A refusal, another uid or
    /// no proper answer fails the start with a <see cref="ZeroDowntimeStartupException"/>.
    /// </summary>
    public async Task<(HandoffChannel Channel, WelcomeMessage Welcome)?> FindAsync(string path, CancellationToken cancellationToken)
    {
        ushort version = HandoffProtocol.Version;
        int handedOverAnswers = 0;
        while (true)
        {
            HandoffChannel channel;
            try
            {
                channel = await HandoffChannel.ConnectAsync(path, PredecessorLink.ReadTimeout, time, cancellationToken);
            }
            catch (HandoffChannelException ex) when (ex.Error is HandoffChannelError.NoServer or HandoffChannelError.ConnectionRefused)
            {
                if (ex.Error == HandoffChannelError.ConnectionRefused)
                {
                    _logger.StaleSocket(path);
                }
                else
                {
                    _logger.NoPredecessor(path);
                }

                machine.TryFire(PredecessorLinkTrigger.NoPredecessor);
                return null;
            }
            catch (HandoffChannelException ex)
            {
                machine.TryFire(PredecessorLinkTrigger.Refused);
                throw new ZeroDowntimeStartupException(ZeroDowntimeExitCodes.RefusedByPredecessor,
                    ex.Error == HandoffChannelError.TimedOut
                        ? $"The process serving {path} did not accept the handoff connection within {PredecessorLink.ReadTimeout.TotalSeconds:0} s."
                        : ex.Message);
            }

            try
            {
                switch (await GreetAsync(channel, path, version, cancellationToken))
                {
                    case (WelcomeMessage welcome, _):
                        return (channel, welcome);
                    case (null, ushort older):
                        // The running process was built from an earlier release: greet it again in its own version.
                        channel.Dispose();
                        machine.TryFire(PredecessorLinkTrigger.AskAgain);
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

            // Refused as "already handed over". A process in its shutdown delay says the same (a build of the previous
            // commit too); its status tells them apart, and it is waited for until it has closed its listeners.
            channel.Dispose();
            if (await WaitWhileShuttingDownAsync(path, cancellationToken))
            {
                machine.TryFire(PredecessorLinkTrigger.AskAgain);
                continue;
            }

            // The process on the path has just committed to another successor, which is about to take the path
            // over (it renames its own socket there within moments). Ask again, briefly.
            if (++handedOverAnswers >= 20)
            {
                machine.TryFire(PredecessorLinkTrigger.Refused);
                throw new ZeroDowntimeStartupException(ZeroDowntimeExitCodes.RefusedByPredecessor,
                    $"The process serving {path} kept saying it had handed over, and no successor took the path over.");
            }

            machine.TryFire(PredecessorLinkTrigger.AskAgain);
            await Task.Delay(TimeSpan.FromMilliseconds(50 * handedOverAnswers), time, cancellationToken);
        }
    }

    /// <summary>
    /// While the process serving <paramref name="path"/> says it is shutting down (a plain shutdown, in its
    /// <see cref="ZeroDowntimeOptions.ShutdownDelay"/>), waits, asking every <see cref="ShutdownPollInterval"/>; returns
    /// true once it no longer does (normally: nobody serves the path any more, so this process starts fresh), false at
    /// once when it did not say so. Fails the start with exit code 75 after <see cref="ShutdownWaitLimit"/>.
    /// </summary>
    private async Task<bool> WaitWhileShuttingDownAsync(string path, CancellationToken cancellationToken)
    {
        long since = 0;
        int pid = 0;
        try
        {
            while (await AskStateAsync(path, cancellationToken) is (ServingState.ShuttingDown, int serving))
            {
                pid = serving;
                if (since == 0)
                {
                    since = time.GetTimestamp();
                    _logger.PredecessorShuttingDown(path, pid, ShutdownWaitLimit);
                }
                else if (time.GetElapsedTime(since) >= ShutdownWaitLimit)
                {
                    throw Refusal(ZeroDowntimeExitCodes.RefusedByPredecessor,
                        $"The process serving {path} (pid {pid}) was still shutting down {ShutdownWaitLimit} after this process first asked, longer than any ShutdownDelay allows: it is stuck; stop it, then start this process again.");
                }

                await Task.Delay(ShutdownPollInterval, time, cancellationToken);
            }
        }
        catch (OperationCanceledException) when (since != 0 && cancellationToken.IsCancellationRequested)
        {
            // Stopped (SIGTERM) while it waited, possibly for minutes: an ordinary refusal (exit 75), not a crash with the
            // host's cancelled start.
            throw Refusal(ZeroDowntimeExitCodes.RefusedByPredecessor,
                $"Stopped while waiting for the process serving {path} (pid {pid}) to finish shutting down; nothing was started.");
        }

        return since != 0;
    }

    /// <summary>
    /// The state and pid that the process serving <paramref name="path"/> reports (a status request, protocol v2), or
    /// null: nobody serves the path, another user does (the greeting then says so), or a build that does not know
    /// status requests (protocol v1, which closes the connection).
    /// </summary>
    private async Task<(ServingState State, int Pid)?> AskStateAsync(string path, CancellationToken cancellationToken)
    {
        HandoffChannel channel;
        try
        {
            channel = await HandoffChannel.ConnectAsync(path, PredecessorLink.ReadTimeout, time, cancellationToken);
        }
        catch (HandoffChannelException)
        {
            return null;
        }

        using (channel)
        {
            if (channel.PeerUserId != Libc.geteuid() || !channel.TrySend(new StatusRequestMessage(HandoffProtocol.Version)))
            {
                return null;
            }

            try
            {
                return await channel.ReadAsync(PredecessorLink.ReadTimeout, cancellationToken) is StatusMessage status ? (status.State, status.ProcessId) : null;
            }
            catch (HandoffChannelException)
            {
                return null;
            }
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
        await faultPoints.PauseAsync("after-connect", _logger, cancellationToken);

        var fds = new List<int>();
        HandoffMessage answer;
        try
        {
            // From v2 on this build says that it knows probation, and how long it asks its predecessor to stand by
            // (its own Probation:Duration: the release on trial decides); builds without probation ignore both.
            channel.Send(version >= 2
                ? new HelloMessage(version, Environment.ProcessId, options.ApplicationId!, HandoffFeatures.Probation, (long)options.Probation.Duration.TotalMilliseconds)
                : new HelloMessage(version, Environment.ProcessId, options.ApplicationId!));
            answer = await channel.ReadAsync(PredecessorLink.ReadTimeout, cancellationToken, fds);
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
                registry.AddInherited(welcome.ProcessId, welcome.Listeners, fds);
                return (welcome, null);
            case RefusedMessage { Reason: RefusalReason.AlreadyHandedOver }:
                return (null, null);
            case RefusedMessage { Reason: RefusalReason.VersionMismatch } refused
                when refused.Version >= HandoffProtocol.MinimumVersion && refused.Version < version:
                return (null, refused.Version);
            case RefusedMessage { Reason: RefusalReason.VersionMismatch } refused:
                metrics.Handoff(HandoffTags.Successor, HandoffTags.Refused);
                _logger.ProtocolVersionMismatch(channel.PeerProcessId, refused.Version, HandoffProtocol.Version);
                throw Refusal(ZeroDowntimeExitCodes.ProtocolVersionMismatch, $"Predecessor refused the handoff: {refused.Detail}");
            case RefusedMessage refused:
                metrics.Handoff(HandoffTags.Successor, HandoffTags.Refused);
                _logger.RefusedByPredecessor(channel.PeerProcessId, refused.Reason.ToString(), refused.Detail);
                throw Refusal(ZeroDowntimeExitCodes.RefusedByPredecessor, $"Predecessor refused the handoff ({refused.Reason}): {refused.Detail}");
            default:
                _logger.TakeoverFailed($"the process serving {path} answered {answer.Type} instead of a welcome", null);
                throw Refusal(ZeroDowntimeExitCodes.RefusedByPredecessor, $"The process serving {path} answered {answer.Type} instead of a welcome.");
        }
    }

    private ZeroDowntimeStartupException Refusal(int exitCode, string message, Exception? inner = null)
    {
        machine.TryFire(PredecessorLinkTrigger.Refused);
        return inner is null ? new ZeroDowntimeStartupException(exitCode, message) : new ZeroDowntimeStartupException(exitCode, message, inner);
    }
}
