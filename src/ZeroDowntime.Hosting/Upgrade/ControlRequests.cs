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
                channel.TrySend(Status());
                break;
            case UpgradeRequestMessage:
                await upgrades.AnswerRequestAsync(channel, clientPid);
                break;
            default:
                throw new ArgumentException($"{request.Type} is not a control request.", nameof(request));
        }
    }

    /// <summary><c>zerodowntime status</c>: who serves, since when, in which state, on which listeners.</summary>
    private StatusMessage Status()
    {
        var state = process.Role switch
        {
            ProcessRole.HandedOver => ServingState.Draining,
            ProcessRole.ShuttingDown => ServingState.ShuttingDown,
            ProcessRole.HandingOver => ServingState.HandingOver,
            _ => ServingState.Serving,
        };
        return new StatusMessage(Environment.ProcessId, options.ApplicationId!, metrics.Generation, process.FirstStartUnixMilliseconds,
            process.ServingSinceUnixMilliseconds, state, registry.DescribeActive(),
            ownPredecessor() is { IsWatchingPredecessor: true } predecessor ? predecessor.PredecessorPid : 0,
            state == ServingState.HandingOver ? process.LatestSession?.SuccessorPid ?? 0 : 0);
    }
}
