using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using ZeroDowntime.Hosting.Protocol;
using ZeroDowntime.Hosting.Tests.Infrastructure;
using ZeroDowntime.Hosting.Warmup;

namespace ZeroDowntime.Hosting.Tests.Unit;

/// <summary>
/// The readiness gate before Ready: the real coordinator as a successor (fake clock) of a predecessor played by the
/// test, with the app's health checks tagged <c>zerodowntime-ready</c>.
/// </summary>
public sealed class ReadinessGateTests
{
    private static readonly TimeSpan HandoffTimeout = TimeSpan.FromSeconds(10);

    /// <summary>The successor gives up 1 s (a tenth, at most 1 s) before the predecessor's deadline, to say why itself.</summary>
    private static readonly TimeSpan Budget = HandoffTimeout - TimeSpan.FromSeconds(1);

    [Fact]
    public async Task TaggedCheckUnhealthy_HoldsReadyUntilTheHandoffTimeout_ThenFailsNamingTheCheck()
    {
        var check = new SwitchableCheck();
        await using var successor = Create(check, out var services);
        using var predecessor = new FakePredecessor(successor.SocketPath);
        using var channel = await StartWelcomedAsync(successor, predecessor);

        // Every poll until the budget is spent: no Ready meanwhile, and the gate stays closed.
        for (var waited = TimeSpan.Zero; waited < Budget; waited += ReadinessGate.PollInterval)
        {
            await successor.Time.WaitForTimerAsync(ReadinessGate.PollInterval, TimeSpan.FromSeconds(10));
            Assert.False(channel.HasPendingData);
            Assert.False(successor.Gate.HasOpened);
            successor.Time.Advance(ReadinessGate.PollInterval);
        }

        var failed = Assert.IsType<FailedMessage>(await channel.ReadAsync(TimeSpan.FromSeconds(10), CancellationToken.None));
        Assert.Contains("'db' is Unhealthy: no connection to the database", failed.Reason, StringComparison.Ordinal);
        var logged = await successor.Logger.WaitForAsync(e => e.EventId.Name == "NotReadyForHandoff", TimeSpan.FromSeconds(10));
        Assert.Contains("'db' is Unhealthy", logged.Message, StringComparison.Ordinal);
        await successor.Application.StopRequested.Task.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(ZeroDowntimeExitCodes.HandoffAbandoned, Environment.ExitCode);
        Assert.False(successor.Gate.HasOpened);
        Assert.True(check.Calls > 30);
        await services.DisposeAsync();
    }

    [Fact]
    public async Task TaggedCheckBecomesHealthy_ReadyFollowsTheNextPoll()
    {
        var check = new SwitchableCheck();
        await using var successor = Create(check, out var services);
        using var predecessor = new FakePredecessor(successor.SocketPath);
        using var channel = await StartWelcomedAsync(successor, predecessor);

        await successor.Time.WaitForTimerAsync(ReadinessGate.PollInterval, TimeSpan.FromSeconds(10));
        Assert.False(channel.HasPendingData);
        check.Healthy = true;
        successor.Time.Advance(ReadinessGate.PollInterval);

        Assert.IsType<ReadyMessage>(await channel.ReadAsync(TimeSpan.FromSeconds(10), CancellationToken.None));
        Assert.True(successor.Gate.HasOpened);
        await successor.Logger.WaitForAsync(e => e.EventId.Name == "ReadinessHealthy", TimeSpan.FromSeconds(10));
        channel.Send(new AbandonedMessage("test over"));
        await successor.Application.StopRequested.Task.WaitAsync(TimeSpan.FromSeconds(10));
        await services.DisposeAsync();
    }

    [Fact]
    public async Task UntaggedUnhealthyCheck_DoesNotHoldReady()
    {
        await using var services = new ServiceCollection().AddLogging()
            .AddHealthChecks().AddCheck("other", () => HealthCheckResult.Unhealthy("not ours"), tags: ["ready"]).Services.BuildServiceProvider();
        await using var successor = new InProcessCoordinator(HandoffTimeout, preparation: c => Preparation(c, services, tagged: 0));
        using var predecessor = new FakePredecessor(successor.SocketPath);
        using var channel = await StartWelcomedAsync(successor, predecessor);

        Assert.IsType<ReadyMessage>(await channel.ReadAsync(TimeSpan.FromSeconds(10), CancellationToken.None));
        channel.Send(new AbandonedMessage("test over"));
        await successor.Application.StopRequested.Task.WaitAsync(TimeSpan.FromSeconds(10));
    }

    private static InProcessCoordinator Create(SwitchableCheck check, out ServiceProvider services)
    {
        var provider = services = new ServiceCollection().AddLogging().AddHealthChecks()
            .AddCheck("db", check, tags: [ZeroDowntimeHealthChecksBuilderExtensions.ReadyForHandoffTag])
            .AddCheck("cache", () => HealthCheckResult.Healthy(), tags: [ZeroDowntimeHealthChecksBuilderExtensions.ReadyForHandoffTag])
            .Services.BuildServiceProvider();
        return new InProcessCoordinator(HandoffTimeout, preparation: c => Preparation(c, provider, tagged: 2));
    }

    private static TakeoverPreparation Preparation(InProcessCoordinator coordinator, IServiceProvider services, int tagged) =>
        new(coordinator.Options, warmup: null, new ReadinessGate(services.GetRequiredService<HealthCheckService>(), tagged, coordinator.Logger, coordinator.Time),
            timeline: null, coordinator.Logger, coordinator.Time);

    private sealed class SwitchableCheck : IHealthCheck
    {
        private int _calls;

        public volatile bool Healthy;

        public int Calls => Volatile.Read(ref _calls);

        public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
        {
            Interlocked.Increment(ref _calls);
            return Task.FromResult(Healthy ? HealthCheckResult.Healthy() : HealthCheckResult.Unhealthy("no connection to the database"));
        }
    }

    /// <summary>Starts the process as the successor of <paramref name="predecessor"/>, which welcomes it, then says started.</summary>
    private static async Task<HandoffChannel> StartWelcomedAsync(InProcessCoordinator successor, FakePredecessor predecessor)
    {
        var starting = successor.Coordinator.StartingAsync(CancellationToken.None);
        var channel = await predecessor.WelcomeAsync();
        await starting;
        successor.Application.Start();
        return channel;
    }
}
