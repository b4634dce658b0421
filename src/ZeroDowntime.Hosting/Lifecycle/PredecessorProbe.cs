using Microsoft.Extensions.Logging;
using ZeroDowntime.Hosting.Diagnostics;
using ZeroDowntime.Hosting.Interop;
using ZeroDowntime.Hosting.Logging;
using ZeroDowntime.Hosting.Protocol;

namespace ZeroDowntime.Hosting.Lifecycle;

/// <summary>
/// The successor's first step (<see cref="SuccessorState.Probing"/>): find the process serving the handoff socket,
/// check that it runs as this user, greet it in the newest version both speak, and take its listeners. It fires the
/// probing arrows of the successor's machine (NoPredecessor, AskAgain, Refused); the caller fires Welcomed.
/// </summary>
internal sealed class PredecessorProbe(HandoffProcess process, StateMachine<SuccessorState, SuccessorTrigger> machine)
{
    private readonly ILogger _logger = process.Logger;

    /// <summary>
    /// Connects to <paramref name="path"/> and greets whoever serves it, until it welcomes this process (the channel and
    /// the welcome, the listeners already in the registry) or nobody serves the path (null). A refusal, another uid or
    /// no proper answer fails the start with a <see cref="ZeroDowntimeStartupException"/>.
    /// </summary>
    public async Task<(HandoffChannel Channel, WelcomeMessage Welcome)?> FindAsync(string path, CancellationToken cancellationToken)
    {
        ushort version = HandoffProtocol.Version;
        for (int attempt = 1; ; attempt++)
        {
            HandoffChannel channel;
            try
            {
                channel = await HandoffChannel.ConnectAsync(path, SuccessorSide.ReadTimeout, process.Time, cancellationToken);
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

                machine.TryFire(SuccessorTrigger.NoPredecessor);
                return null;
            }
            catch (HandoffChannelException ex)
            {
                machine.TryFire(SuccessorTrigger.Refused);
                throw new ZeroDowntimeStartupException(ZeroDowntimeExitCodes.RefusedByPredecessor,
                    ex.Error == HandoffChannelError.TimedOut
                        ? $"The process serving {path} did not accept the handoff connection within {SuccessorSide.ReadTimeout.TotalSeconds:0} s."
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
                        machine.TryFire(SuccessorTrigger.AskAgain);
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
                machine.TryFire(SuccessorTrigger.Refused);
                throw new ZeroDowntimeStartupException(ZeroDowntimeExitCodes.RefusedByPredecessor,
                    $"The process serving {path} kept saying it had handed over, and no successor took the path over.");
            }

            machine.TryFire(SuccessorTrigger.AskAgain);
            await Task.Delay(TimeSpan.FromMilliseconds(50 * attempt), process.Time, cancellationToken);
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
            channel.Send(new HelloMessage(version, Environment.ProcessId, process.Options.ApplicationId!));
            answer = await channel.ReadAsync(SuccessorSide.ReadTimeout, cancellationToken, fds);
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
                process.Registry.AddInherited(welcome.ProcessId, welcome.Listeners, fds);
                return (welcome, null);
            case RefusedMessage { Reason: RefusalReason.AlreadyHandedOver }:
                return (null, null);
            case RefusedMessage { Reason: RefusalReason.VersionMismatch } refused
                when refused.Version >= HandoffProtocol.MinimumVersion && refused.Version < version:
                return (null, refused.Version);
            case RefusedMessage { Reason: RefusalReason.VersionMismatch } refused:
                process.Metrics.Handoff(HandoffTags.Successor, HandoffTags.Refused);
                _logger.ProtocolVersionMismatch(channel.PeerProcessId, refused.Version, HandoffProtocol.Version);
                throw Refusal(ZeroDowntimeExitCodes.ProtocolVersionMismatch, $"Predecessor refused the handoff: {refused.Detail}");
            case RefusedMessage refused:
                process.Metrics.Handoff(HandoffTags.Successor, HandoffTags.Refused);
                _logger.RefusedByPredecessor(channel.PeerProcessId, refused.Reason.ToString(), refused.Detail);
                throw Refusal(ZeroDowntimeExitCodes.RefusedByPredecessor, $"Predecessor refused the handoff ({refused.Reason}): {refused.Detail}");
            default:
                _logger.TakeoverFailed($"the process serving {path} answered {answer.Type} instead of a welcome", null);
                throw Refusal(ZeroDowntimeExitCodes.RefusedByPredecessor, $"The process serving {path} answered {answer.Type} instead of a welcome.");
        }
    }

    private ZeroDowntimeStartupException Refusal(int exitCode, string message, Exception? inner = null)
    {
        machine.TryFire(SuccessorTrigger.Refused);
        return inner is null ? new ZeroDowntimeStartupException(exitCode, message) : new ZeroDowntimeStartupException(exitCode, message, inner);
    }
}
