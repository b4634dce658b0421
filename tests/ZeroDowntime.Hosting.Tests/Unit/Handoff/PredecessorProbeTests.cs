using ZeroDowntime.Hosting.Handoff;
using ZeroDowntime.Hosting.Protocol;
using ZeroDowntime.Hosting.Tests.Infrastructure;

namespace ZeroDowntime.Hosting.Tests.Unit;

/// <summary>
/// The new process's first step against a running process in its shutdown delay (issue 18 item 2): the real
/// coordinator as the newcomer, the test as the running process on a real Unix socket, the fake clock for every wait.
/// </summary>
public sealed class PredecessorProbeTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(10);

    // A process in its ShutdownDelay refuses as "already handed over"; its status says "shutting down". The newcomer
    // asks again every 200 ms, with no retry limit of its own, until nobody serves the path: then it starts fresh.
    [Fact]
    public async Task Probing_RefusedWhileShuttingDown_WaitsUntilTheSocketIsGone_ThenStartsAlone()
    {
        await using var process = new InProcessCoordinator();
        using var predecessor = new FakePredecessor(process.SocketPath);
        var starting = process.Coordinator.StartingAsync(CancellationToken.None);
        await RefuseAsShuttingDownAsync(predecessor);
        await process.Logger.WaitForAsync(e => e.EventId.Name == "PredecessorShuttingDown", Bound);

        // Far more polls than the 20 tries a newcomer used to give a process that said "already handed over".
        for (int i = 0; i < 30; i++)
        {
            await process.Time.WaitForTimerAsync(PredecessorProbe.ShutdownPollInterval, Bound);
            process.Time.Advance(PredecessorProbe.ShutdownPollInterval);
            await AnswerStatusAsync(predecessor, ServingState.ShuttingDown);
        }

        Assert.False(starting.IsCompleted);
        predecessor.Dispose(); // the delay is over: listeners closed, handoff socket removed
        await process.Time.WaitForTimerAsync(PredecessorProbe.ShutdownPollInterval, Bound);
        process.Time.Advance(PredecessorProbe.ShutdownPollInterval);

        await starting.WaitAsync(Bound);
        Assert.Single(process.Logger.Named("NoPredecessor"));
        Assert.Single(process.Logger.Named("PredecessorShuttingDown"));
        process.Application.Start();
        await process.Logger.WaitForAsync(e => e.EventId.Name == "ServingHandoffSocket", Bound);
        Assert.Equal(ProcessRole.Owner, process.Coordinator.Role);
    }

    // The wait is bounded: a process that still says "shutting down" after the longest ShutdownDelay (5 min) and 10 s
    // more is stuck; the newcomer fails its start with exit code 75 and says why.
    [Fact]
    public async Task Probing_StillShuttingDownAfterTheLimit_FailsWithExit75()
    {
        await using var process = new InProcessCoordinator();
        using var predecessor = new FakePredecessor(process.SocketPath);
        var starting = process.Coordinator.StartingAsync(CancellationToken.None);
        await RefuseAsShuttingDownAsync(predecessor);

        await process.Time.WaitForTimerAsync(PredecessorProbe.ShutdownPollInterval, Bound);
        process.Time.Advance(PredecessorProbe.ShutdownWaitLimit);
        await AnswerStatusAsync(predecessor, ServingState.ShuttingDown);

        var ex = await Assert.ThrowsAsync<ZeroDowntimeStartupException>(() => starting.WaitAsync(Bound));
        Assert.Equal(ZeroDowntimeExitCodes.RefusedByPredecessor, ex.ExitCode);
        Assert.Contains("still shutting down", ex.Message, StringComparison.Ordinal);
    }

    // SIGTERM to a newcomer that waits (the host cancels its start): a refusal with exit code 75 and why, not the host's
    // cancelled start escaping as an unhandled exception (an abort, exit 134, before this was handled).
    [Fact]
    public async Task Probing_StoppedWhileWaitingForShutdown_FailsWithExit75()
    {
        await using var process = new InProcessCoordinator();
        using var predecessor = new FakePredecessor(process.SocketPath);
        using var stopping = new CancellationTokenSource();
        var starting = process.Coordinator.StartingAsync(stopping.Token);
        await RefuseAsShuttingDownAsync(predecessor);
        await process.Time.WaitForTimerAsync(PredecessorProbe.ShutdownPollInterval, Bound);

        await stopping.CancelAsync();

        var ex = await Assert.ThrowsAsync<ZeroDowntimeStartupException>(() => starting.WaitAsync(Bound));
        Assert.Equal(ZeroDowntimeExitCodes.RefusedByPredecessor, ex.ExitCode);
        Assert.Contains("Stopped while waiting", ex.Message, StringComparison.Ordinal);
    }

    // A process that has handed over (it drains; its successor is about to rename its socket over the path) says
    // "draining": the newcomer keeps its short retries, and greets again after 50 ms.
    [Fact]
    public async Task Probing_RefusedByDrainingProcess_GreetsAgainAfter50ms()
    {
        await using var process = new InProcessCoordinator();
        using var predecessor = new FakePredecessor(process.SocketPath);
        var starting = process.Coordinator.StartingAsync(CancellationToken.None);
        using (var greeting = await predecessor.AcceptAsync())
        {
            Assert.IsType<HelloMessage>(await greeting.ReadAsync(Bound, CancellationToken.None));
            greeting.Send(new RefusedMessage(RefusalReason.AlreadyHandedOver, HandoffProtocol.Version, "handed over"));
        }

        await AnswerStatusAsync(predecessor, ServingState.Draining);
        await process.Time.WaitForTimerAsync(TimeSpan.FromMilliseconds(50), Bound);
        process.Time.Advance(TimeSpan.FromMilliseconds(50));
        using var again = await predecessor.AcceptAsync();
        Assert.IsType<HelloMessage>(await again.ReadAsync(Bound, CancellationToken.None));
        again.Send(new RefusedMessage(RefusalReason.Busy, HandoffProtocol.Version, "busy"));

        var ex = await Assert.ThrowsAsync<ZeroDowntimeStartupException>(() => starting.WaitAsync(Bound));
        Assert.Equal(ZeroDowntimeExitCodes.RefusedByPredecessor, ex.ExitCode);
        Assert.Empty(process.Logger.Named("PredecessorShuttingDown"));
    }

    private static async Task RefuseAsShuttingDownAsync(FakePredecessor predecessor)
    {
        using (var greeting = await predecessor.AcceptAsync())
        {
            Assert.IsType<HelloMessage>(await greeting.ReadAsync(Bound, CancellationToken.None));
            greeting.Send(new RefusedMessage(RefusalReason.AlreadyHandedOver, HandoffProtocol.Version, "pid 4242 is shutting down"));
        }

        await AnswerStatusAsync(predecessor, ServingState.ShuttingDown);
    }

    private static async Task AnswerStatusAsync(FakePredecessor predecessor, ServingState state)
    {
        using var channel = await predecessor.AcceptAsync();
        Assert.IsType<StatusRequestMessage>(await channel.ReadAsync(Bound, CancellationToken.None));
        channel.Send(new StatusMessage(4242, "component-test", 1, 0, 0, state, [], 0, 0));
    }
}
