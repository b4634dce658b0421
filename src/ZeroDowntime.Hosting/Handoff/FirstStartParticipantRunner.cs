using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using ZeroDowntime.Hosting.Logging;

namespace ZeroDowntime.Hosting.Handoff;

/// <summary>
/// Tells every <see cref="IHandoffParticipant"/> at <c>ApplicationStarted</c> that this process owns its resources
/// (<see cref="HandoffAcquireReason.FirstStart"/>) when no handoff runs: <c>ZeroDowntime:Enabled=false</c>, off
/// Linux, or without <c>UseZeroDowntime()</c> at all. A participant must hear that it owns its resources in every
/// case (the NLog package holds log lines until then), and only the core knows whether handoffs run, so the core
/// decides: <c>UseZeroDowntime</c> marks the service collection (<see cref="CoordinatorCallsParticipantsWhenEnabled"/>)
/// and this runner then stands aside when <c>Enabled</c> is true, since the coordinator makes these calls itself at the right moment (never before a
/// successor's predecessor has released). Each call is bounded and its failure logged, as the coordinator does.
/// </summary>
internal sealed class FirstStartParticipantRunner(
    IEnumerable<IHandoffParticipant> participants,
    IHostApplicationLifetime lifetime,
    IOptions<FirstStartParticipantRunner.Settings> settings,
    ILoggerFactory loggerFactory) : IHostedService
{
    private readonly ILogger logger = loggerFactory.CreateLogger(LogCategories.Handoff);

    private volatile Task _run = Task.CompletedTask;
    private CancellationTokenRegistration _started;

    /// <summary>
    /// Registers the runner once, however often it is called: by the core where no handoff runs, and by a package
    /// with a participant (the NLog one), which may be used without <c>UseZeroDowntime()</c>. It does not look at
    /// what else is registered; the order of the calls does not matter.
    /// </summary>
    public static void Register(IServiceCollection services)
    {
        services.AddOptions();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHostedService, FirstStartParticipantRunner>());
    }

    /// <summary>
    /// Says that the handoff coordinator is registered and, when the bound <see cref="ZeroDowntimeOptions.Enabled"/> is
    /// true, calls the participants itself: the runner then stays idle.
    /// </summary>
    public static void CoordinatorCallsParticipantsWhenEnabled(IServiceCollection services) =>
        services.AddOptions<Settings>().Configure<IOptions<ZeroDowntimeOptions>>(static (s, options) => s.CoordinatorCalls = options.Value.Enabled);

    public Task StartAsync(CancellationToken cancellationToken)
    {
        if (!settings.Value.CoordinatorCalls)
        {
            // At ApplicationStarted, like the coordinator's first start: Kestrel has bound every endpoint by then.
            _started = lifetime.ApplicationStarted.Register(() =>
                _run = BackgroundWork.Start("first start of the handoff participants", AcquireAllAsync, logger));
        }

        return Task.CompletedTask;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        await _started.DisposeAsync();
        await _run.WaitAsync(cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
    }

    private Task AcquireAllAsync()
    {
        // The same bounded, logged calls as the coordinator's (off this thread, 5 s each).
        var runner = new ParticipantRunner(participants, logger, TimeProvider.System);
        return runner.AcquireAsync(HandoffAcquireReason.FirstStart, runner.All, lifetime.ApplicationStopping);
    }

    /// <summary>What the core's registration says about this process.</summary>
    internal sealed class Settings
    {
        /// <summary>The handoff coordinator runs and calls the participants itself.</summary>
        public bool CoordinatorCalls { get; set; }
    }
}
