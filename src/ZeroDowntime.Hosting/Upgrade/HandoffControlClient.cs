using ZeroDowntime.Hosting.Interop;
using ZeroDowntime.Hosting.Protocol;

namespace ZeroDowntime.Hosting.Upgrade;

/// <summary>
/// The client side of the control requests (protocol v2) that the <c>zerodowntime</c> tool sends over the handoff
/// socket: <c>status</c>, <c>upgrade</c> and <c>rollback</c>. Same checks as a handoff: the server must run as this user
/// (<c>SO_PEERCRED</c>), every step is bounded, and what goes wrong is one <see cref="ControlException"/> that says why.
/// </summary>
internal static class HandoffControlClient
{
    /// <summary>
    /// How long the first <see cref="ProbationUpdateMessage"/> is waited for after a committed result: a build with
    /// probation sends it at once (docs/probation-design.md 2.3), an earlier one closes the connection.
    /// </summary>
    internal static readonly TimeSpan ProbationStartTimeout = TimeSpan.FromSeconds(5);

    /// <summary>How long after the announced end of the window the final <see cref="ProbationUpdateMessage"/> is waited for.</summary>
    internal static readonly TimeSpan ProbationEndMargin = TimeSpan.FromSeconds(30);

    /// <summary>How often a status answer that says Draining is asked again while the successor takes the path over.</summary>
    private static readonly TimeSpan HandedOverPoll = TimeSpan.FromMilliseconds(50);

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
        using var channel = await ConnectAsync(socketPath, timeout, cancellationToken);
        return await RequestUpgradeAsync(channel, socketPath, timeout, started, cancellationToken);
    }

    /// <summary>
    /// As <see cref="UpgradeAsync"/>, then, when the successor committed (<paramref name="committed"/> is told the
    /// result at once), waits on the same connection for its probation: <paramref name="probationStarted"/> is told the first <see cref="ProbationUpdateMessage"/> when it
    /// says <see cref="ProbationProgress.Started"/>, and the final one is returned (<see cref="ProbationProgress.Passed"/>,
    /// <see cref="ProbationProgress.RolledBack"/> or <see cref="ProbationProgress.EndedEarly"/>, with the window's
    /// announced end when it carries none; or <see cref="ProbationProgress.None"/> at once). <paramref name="timeout"/> bounds the handoff only; the probation
    /// is waited for until the window's announced end plus <see cref="ProbationEndMargin"/>. The probation is null when
    /// the upgrade did not commit, or when the process closed the connection after the result: its build has no
    /// probation. A connection closed during the window (the old process was killed or stopped) ends it early.
    /// </summary>
    public static async Task<UpgradeWithProbation> UpgradeThroughProbationAsync(
        string socketPath,
        TimeSpan timeout,
        Action<int>? started,
        Action<UpgradeResultMessage>? committed,
        Action<ProbationUpdateMessage>? probationStarted,
        CancellationToken cancellationToken = default)
    {
        using var channel = await ConnectAsync(socketPath, timeout, cancellationToken);
        var result = await RequestUpgradeAsync(channel, socketPath, timeout, started, cancellationToken);
        if (result.Outcome != UpgradeOutcome.Committed)
        {
            return new UpgradeWithProbation(result, null);
        }

        committed?.Invoke(result);

        var first = await ReadProbationUpdateAsync(channel, ProbationStartTimeout, socketPath, cancellationToken);
        if (first is null or { Progress: not ProbationProgress.Started })
        {
            return new UpgradeWithProbation(result, first);
        }

        probationStarted?.Invoke(first);
        var now = TimeProvider.System.GetUtcNow();
        var left = DateTimeOffset.FromUnixTimeMilliseconds(first.EndsUnixMilliseconds) - now;
        var bound = (left > TimeSpan.Zero ? left : TimeSpan.Zero) + ProbationEndMargin;
        var final = await ReadProbationUpdateAsync(channel, bound, socketPath, cancellationToken)
            ?? new ProbationUpdateMessage(ProbationProgress.EndedEarly, first.EndsUnixMilliseconds, RollbackOrigin.None,
                $"the process serving {socketPath} closed the connection before the probation ended (it was stopped or killed): the new release serves with no way back");
        if (final.Progress is ProbationProgress.Started or ProbationProgress.None)
        {
            throw new ControlException(ControlError.Protocol,
                $"The process serving {socketPath} sent probation {final.Progress} after the probation had started.");
        }

        // The window's end as announced at the start, when the final update carries none.
        return new UpgradeWithProbation(result, final.EndsUnixMilliseconds == 0 ? final with { EndsUnixMilliseconds = first.EndsUnixMilliseconds } : final);
    }

    /// <summary>
    /// Asks the process serving <paramref name="socketPath"/> who it is, and the probation in course: null when its
    /// build has no probation (it closes the connection right after <see cref="StatusMessage"/>).
    /// </summary>
    public static async Task<ControlStatus> StatusWithProbationAsync(string socketPath, TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        var time = TimeProvider.System;
        long start = time.GetTimestamp();
        using var channel = await ConnectAsync(socketPath, timeout, cancellationToken);
        Send(channel, new StatusRequestMessage(HandoffProtocol.Version), socketPath);
        var status = await ReadAsync(channel, timeout, socketPath, cancellationToken) switch
        {
            StatusMessage answer => answer,
            var other => throw Unexpected(other, socketPath),
        };

        var probation = await ReadOptionalAsync(channel, Remaining(time, start, timeout), socketPath, cancellationToken) switch
        {
            null => null,
            ProbationStatusMessage answer => answer,
            var other => throw Unexpected(other, socketPath),
        };
        return new ControlStatus(status, probation);
    }

    /// <summary>
    /// Asks the process serving <paramref name="socketPath"/> to roll back to the generation on probation, and waits
    /// (at most <paramref name="timeout"/>, the status step included) until the rollback ended either way. First a
    /// status connection: its answer must carry <see cref="ProbationStatusMessage"/>, else the build has no probation
    /// and nothing more is sent (<see cref="ControlError.NoProbation"/>): an earlier build would take an unknown frame
    /// for a protocol error. A Draining answer (the old process still holds the path for a moment after a commit) is
    /// asked again for at most <paramref name="handedOverWait"/>, as status does.
    /// </summary>
    public static async Task<RollbackReply> RollbackAsync(
        string socketPath, TimeSpan timeout, string note, TimeSpan handedOverWait = default, CancellationToken cancellationToken = default)
    {
        var time = TimeProvider.System;
        long start = time.GetTimestamp();
        var before = await StatusWithProbationAsync(socketPath, timeout, cancellationToken);
        while (before.Status.State == ServingState.Draining && time.GetElapsedTime(start) < handedOverWait)
        {
            await Task.Delay(HandedOverPoll, time, cancellationToken);
            before = await StatusWithProbationAsync(socketPath, Remaining(time, start, timeout), cancellationToken);
        }

        if (before.Probation is not { } probation)
        {
            throw new ControlException(ControlError.NoProbation,
                $"The process serving {socketPath} (pid {before.Status.ProcessId}) runs a build without probation: it has no generation to roll back to. Nothing was asked.");
        }

        var remaining = Remaining(time, start, timeout);
        using var channel = await ConnectAsync(socketPath, remaining, cancellationToken);
        Send(channel, new RollbackCommandMessage(HandoffProtocol.Version, HandoffProtocol.FitText(note)), socketPath);
        return await ReadAsync(channel, Remaining(time, start, timeout), socketPath, cancellationToken) switch
        {
            RollbackResultMessage result => new RollbackReply(before.Status, probation, result),
            var other => throw Unexpected(other, socketPath),
        };
    }

    private static async Task<UpgradeResultMessage> RequestUpgradeAsync(
        HandoffChannel channel, string socketPath, TimeSpan timeout, Action<int>? started, CancellationToken cancellationToken)
    {
        var time = TimeProvider.System;
        long start = time.GetTimestamp();
        Send(channel, new UpgradeRequestMessage(HandoffProtocol.Version), socketPath);
        while (true)
        {
            switch (await ReadAsync(channel, Remaining(time, start, timeout), socketPath, cancellationToken))
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

    private static async Task<ProbationUpdateMessage?> ReadProbationUpdateAsync(
        HandoffChannel channel, TimeSpan timeout, string socketPath, CancellationToken cancellationToken) =>
        await ReadOptionalAsync(channel, timeout, socketPath, cancellationToken) switch
        {
            null => null,
            ProbationUpdateMessage update => update,
            var other => throw Unexpected(other, socketPath),
        };

    /// <summary>The next frame, or null when the process closed the connection instead (a frame its build does not send).</summary>
    private static async Task<HandoffMessage?> ReadOptionalAsync(HandoffChannel channel, TimeSpan timeout, string socketPath, CancellationToken cancellationToken)
    {
        try
        {
            return await channel.ReadAsync(timeout, cancellationToken);
        }
        catch (HandoffChannelException ex) when (ex.Error == HandoffChannelError.Closed)
        {
            return null;
        }
        catch (HandoffChannelException ex)
        {
            throw Translate(ex, timeout, socketPath);
        }
    }

    private static TimeSpan Remaining(TimeProvider time, long start, TimeSpan timeout)
    {
        var remaining = timeout - time.GetElapsedTime(start);
        return remaining > TimeSpan.Zero ? remaining : TimeSpan.Zero;
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
            throw Translate(ex, timeout, socketPath);
        }
    }

    private static ControlException Translate(HandoffChannelException ex, TimeSpan timeout, string socketPath) =>
        ex.Error switch
        {
            HandoffChannelError.TimedOut => new ControlException(ControlError.TimedOut,
                $"No answer from the process serving {socketPath} within {timeout.TotalSeconds:0} s."),
            HandoffChannelError.Closed when ex.InnerException is null => new ControlException(ControlError.Protocol,
                $"The process serving {socketPath} closed the connection without answering: it runs a build that does not know control requests (protocol v1), or it is exiting."),
            _ => new ControlException(ControlError.Protocol, $"The process serving {socketPath} sent something unexpected: {ex.Message}"),
        };

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

    /// <summary>rollback: the process's build has no probation (its status came without <see cref="ProbationStatusMessage"/>); nothing was asked.</summary>
    NoProbation,
}

/// <summary>A status answer, and the probation in course (null from a build without probation).</summary>
internal sealed record ControlStatus(StatusMessage Status, ProbationStatusMessage? Probation);

/// <summary>A rollback: who served and the probation before it was asked for, and how it ended.</summary>
internal sealed record RollbackReply(StatusMessage Before, ProbationStatusMessage Probation, RollbackResultMessage Result);

/// <summary>
/// An upgrade's result and, when it committed, its probation's final update (null: no update came, the process's
/// build has no probation, or the upgrade did not commit).
/// </summary>
internal sealed record UpgradeWithProbation(UpgradeResultMessage Result, ProbationUpdateMessage? Probation);

internal sealed class ControlException(ControlError error, string message) : Exception(message)
{
    public ControlError Error { get; } = error;
}
