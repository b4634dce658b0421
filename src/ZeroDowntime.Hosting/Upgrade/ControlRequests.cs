using ZeroDowntime.Hosting.Diagnostics;
using ZeroDowntime.Hosting.Handoff;
using ZeroDowntime.Hosting.Listeners;
using ZeroDowntime.Hosting.Protocol;

namespace ZeroDowntime.Hosting.Upgrade;

/// <summary>
/// The server side of the control requests, beside their client (<see cref="HandoffControlClient"/>): a connection to
/// the handoff socket that greets with a status or an upgrade request instead of a successor's Hello is answered here.
/// </summary>
internal sealed class ControlRequests(
    HandoffProcess process,
    UpgradeRunner upgrades,
    ListenerRegistry registry,
    ZeroDowntimeOptions options,
    ZeroDowntimeMetrics metrics,
    Func<PredecessorLink?> ownPredecessor)
{
    /// <summary>Answers <paramref name="request"/> (a <see cref="StatusRequestMessage"/> or an <see cref="UpgradeRequestMessage"/>) on <paramref name="channel"/>.</summary>
    public async Task AnswerAsync(HandoffChannel channel, HandoffMessage request, int clientPid)
    {
        switch (request)
        {
            case StatusRequestMessage:
                // Then the probation, always from this build: an earlier tool closes after Status and never reads it,
                // and `zerodowntime rollback` tells from its absence a build without probation.
                if (channel.TrySend(Status()))
                {
                    channel.TrySend(ProbationStatus());
                }

                break;
            case RollbackCommandMessage command:
                channel.TrySend(await RollbackAsync(command, clientPid));
                break;
            case UpgradeRequestMessage:
                await upgrades.AnswerRequestAsync(channel, clientPid);
                break;
            default:
                throw new ArgumentException($"{request.Type} is not a control request.", nameof(request));
        }
    }

    /// <summary>The probation behind this process (it is on probation), or the rollback it served again after.</summary>
    private ProbationStatusMessage ProbationStatus()
    {
        if (ownPredecessor() is { } link && link.ProbationStatus() is { State: not ProbationState.None } onProbation)
        {
            return onProbation;
        }

        return process.LatestSession?.ProbationStatus() ?? new ProbationStatusMessage(ProbationState.None, 0, 0, "");
    }

    /// <summary><c>zerodowntime rollback</c>: back to the generation that stands by, or why not.</summary>
    private async Task<RollbackResultMessage> RollbackAsync(RollbackCommandMessage command, int clientPid)
    {
        string reason = command.Note.Length > 0 ? $"zerodowntime rollback (pid {clientPid}): {command.Note}" : $"zerodowntime rollback (pid {clientPid})";
        if (ownPredecessor() is { } link)
        {
            return await link.RequestRollbackAsync(RollbackOrigin.Tool, reason);
        }

        string why = process.LatestSession?.ProbationStatus() is { State: ProbationState.RolledBack } rolledBack
            ? $"no generation on probation: pid {Environment.ProcessId} serves; it rolled back from pid {rolledBack.PeerPid} ({rolledBack.Reason})"
            : $"no generation on probation: pid {Environment.ProcessId} did not take over on probation";
        return new RollbackResultMessage(RollbackOutcome.Refused, Environment.ProcessId, HandoffProtocol.FitText(why), -1);
    }

    /// <summary><c>zerodowntime status</c>: who serves, since when, in which state, on which listeners.</summary>
    private StatusMessage Status()
    {
        var state = process.Role switch
        {
            ProcessRole.HandedOver or ProcessRole.Leaving => ServingState.Draining,
            ProcessRole.ShuttingDown => ServingState.ShuttingDown,
            ProcessRole.HandingOver or ProcessRole.HandingBack => ServingState.HandingOver,
            _ => ServingState.Serving,
        };
        return new StatusMessage(Environment.ProcessId, options.ApplicationId!, metrics.Generation, process.FirstStartUnixMilliseconds,
            process.ServingSinceUnixMilliseconds, state, registry.DescribeActive(),
            ownPredecessor() is { IsWatchingPredecessor: true } predecessor ? predecessor.PredecessorPid : 0,
            state == ServingState.HandingOver ? process.LatestSession?.SuccessorPid ?? 0 : 0);
    }
}
