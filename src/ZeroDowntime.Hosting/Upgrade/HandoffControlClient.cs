using ZeroDowntime.Hosting.Interop;
using ZeroDowntime.Hosting.Protocol;

namespace ZeroDowntime.Hosting.Upgrade;

/// <summary>
/// The client side of the control requests (protocol v2) that the <c>zerodowntime</c> tool sends over the handoff
/// socket: <c>status</c> and <c>upgrade</c>. Same checks as a handoff: the server must run as this user
/// (<c>SO_PEERCRED</c>), every step is bounded, and what goes wrong is one <see cref="ControlException"/> that says why.
/// </summary>
internal static class HandoffControlClient
{
    /// <summary>Asks the process serving <paramref name="socketPath"/> who it is and what it does.</summary>
    public static async Task<StatusMessage> StatusAsync(string socketPath, TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        using var channel = await ConnectAsync(socketPath, timeout, cancellationToken);
        Send(channel, new StatusRequestMessage(HandoffProtocol.Version), socketPath);
        return await ReadAsync(channel, timeout, socketPath, cancellationToken) switch
        {
            StatusMessage status => status,
            var other => throw Unexpected(other, socketPath),
        };
    }

    /// <summary>
    /// Asks the process serving <paramref name="socketPath"/> to start its successor, and waits (at most
    /// <paramref name="timeout"/>) until the upgrade has ended either way. <paramref name="started"/> is told the pid.
    /// </summary>
    public static async Task<UpgradeResultMessage> UpgradeAsync(string socketPath, TimeSpan timeout, Action<int>? started = null, CancellationToken cancellationToken = default)
    {
        var time = TimeProvider.System;
        long start = time.GetTimestamp();
        using var channel = await ConnectAsync(socketPath, timeout, cancellationToken);
        Send(channel, new UpgradeRequestMessage(HandoffProtocol.Version), socketPath);
        while (true)
        {
            var remaining = timeout - time.GetElapsedTime(start);
            switch (await ReadAsync(channel, remaining > TimeSpan.Zero ? remaining : TimeSpan.Zero, socketPath, cancellationToken))
            {
                case UpgradeStartedMessage upgrade:
                    started?.Invoke(upgrade.SuccessorPid);
                    continue;
                case UpgradeResultMessage result:
                    return result;
                case var other:
                    throw Unexpected(other, socketPath);
            }
        }
    }

    private static async Task<HandoffChannel> ConnectAsync(string socketPath, TimeSpan timeout, CancellationToken cancellationToken)
    {
        HandoffChannel channel;
        try
        {
            channel = await HandoffChannel.ConnectAsync(socketPath, timeout < TimeSpan.FromSeconds(5) ? timeout : TimeSpan.FromSeconds(5),
                TimeProvider.System, cancellationToken);
        }
        catch (HandoffChannelException ex)
        {
            throw new ControlException(ex.Error == HandoffChannelError.TimedOut ? ControlError.TimedOut : ControlError.NoServer,
                ex.Error == HandoffChannelError.TimedOut ? $"The process serving {socketPath} did not accept the connection in time." : ex.Message);
        }

        uint me = Libc.geteuid();
        if (channel.PeerUserId != me)
        {
            channel.Dispose();
            throw new ControlException(ControlError.Untrusted,
                $"The process serving {socketPath} runs as uid {channel.PeerUserId}, not as this user (uid {me}): not asking it anything.");
        }

        return channel;
    }

    private static void Send(HandoffChannel channel, HandoffMessage message, string socketPath)
    {
        if (!channel.TrySend(message))
        {
            throw new ControlException(ControlError.Protocol, $"The process serving {socketPath} closed the connection.");
        }
    }

    private static async Task<HandoffMessage> ReadAsync(HandoffChannel channel, TimeSpan timeout, string socketPath, CancellationToken cancellationToken)
    {
        try
        {
            return await channel.ReadAsync(timeout, cancellationToken);
        }
        catch (HandoffChannelException ex)
        {
            throw ex.Error switch
            {
                HandoffChannelError.TimedOut => new ControlException(ControlError.TimedOut,
                    $"No answer from the process serving {socketPath} within {timeout.TotalSeconds:0} s."),
                HandoffChannelError.Closed when ex.InnerException is null => new ControlException(ControlError.Protocol,
                    $"The process serving {socketPath} closed the connection without answering: it runs a build that does not know control requests (protocol v1), or it is exiting."),
                _ => new ControlException(ControlError.Protocol, $"The process serving {socketPath} sent something unexpected: {ex.Message}"),
            };
        }
    }

    private static ControlException Unexpected(HandoffMessage message, string socketPath) => message switch
    {
        RefusedMessage refused => new ControlException(ControlError.Refused, $"The process serving {socketPath} refused: {refused.Detail}"),
        _ => new ControlException(ControlError.Protocol, $"The process serving {socketPath} answered {message.Type}."),
    };
}

/// <summary>Why a control request did not get an answer.</summary>
internal enum ControlError
{
    /// <summary>No process serves the socket (no file, or a stale one).</summary>
    NoServer,

    /// <summary>The process serving the socket runs as another user.</summary>
    Untrusted,

    /// <summary>No answer within the deadline.</summary>
    TimedOut,

    /// <summary>An older build (protocol v1), a broken connection, or garbage.</summary>
    Protocol,

    /// <summary>The process refused the request.</summary>
    Refused,
}

internal sealed class ControlException(ControlError error, string message) : Exception(message)
{
    public ControlError Error { get; } = error;
}
