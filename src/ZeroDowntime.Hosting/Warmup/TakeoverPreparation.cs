using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using ZeroDowntime.Hosting.Diagnostics;
using ZeroDowntime.Hosting.Listeners;
using ZeroDowntime.Hosting.Logging;

namespace ZeroDowntime.Hosting.Warmup;

/// <summary>
/// What runs after <c>ApplicationStarted</c> and before this process accepts: before a successor tells its predecessor
/// Ready, and before a first start opens its gate. First the warm-up through Kestrel, then the readiness gate, both
/// bounded by what is left of <see cref="ZeroDowntimeOptions.HandoffTimeout"/>. Each is a phase of the start-up
/// timeline (<c>WarmedUp</c>, <c>ChecksHealthy</c>).
/// </summary>
internal sealed class TakeoverPreparation
{

    private readonly ZeroDowntimeOptions _options;
    private readonly WarmupRunner? _warmup;
    private readonly ReadinessGate _readiness;
    private readonly StartupTimeline? _timeline;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;

    public TakeoverPreparation(ZeroDowntimeOptions options, WarmupRunner? warmup, ReadinessGate readiness, StartupTimeline? timeline, ILogger logger,
        TimeProvider time)
    {
        _time = time;
        _options = options;
        _warmup = warmup;
        _readiness = readiness;
        _timeline = timeline;
        _logger = logger;
    }

    /// <summary>Built from the container: the health checks are the app's, if it added any.</summary>
    internal static TakeoverPreparation Create(IServiceProvider services)
    {
        var options = services.GetRequiredService<IOptions<ZeroDowntimeOptions>>().Value;
        var logger = services.GetRequiredService<ILoggerFactory>().CreateLogger(LogCategories.Warmup);
        var healthChecks = services.GetService<HealthCheckService>();
        int tagged = services.GetService<IOptions<HealthCheckServiceOptions>>()?.Value.Registrations
            .Count(r => r.Tags.Contains(ZeroDowntimeHealthChecksBuilderExtensions.ReadyForHandoffTag)) ?? 0;
        var warmup = options.Warmup is { Enabled: true, Requests.Count: > 0 }
            ? new WarmupRunner(options.Warmup, services.GetRequiredService<HandoffListenerFactory>(), services, logger, services.GetService<WarmupStartupFilter>())
            : null;
        var time = services.GetService<TimeProvider>() ?? TimeProvider.System;
        return new TakeoverPreparation(options, warmup, new ReadinessGate(healthChecks, tagged, logger, time), services.GetService<StartupTimeline>(), logger, time);
    }

    /// <summary>
    /// A successor's preparation: null when it may say Ready, else why it gives the handoff up (a required warm-up
    /// request failed, the warm-up overran <paramref name="budget"/>, or a readiness check is still not Healthy).
    /// </summary>
    public async Task<string?> BeforeReadyAsync(TimeSpan budget, CancellationToken cancellationToken)
    {
        using var timeUp = new CancellationTokenSource(budget > TimeSpan.Zero ? budget : TimeSpan.Zero, _time);
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeUp.Token);
        long start = _time.GetTimestamp();
        if (_warmup is not null && budget <= TimeSpan.Zero)
        {
            // The start-up alone took the whole handoff timeout: the predecessor has given up (or is frozen). Say Ready
            // at once, as without a warm-up, and learn which.
            _logger.WarmupSkipped(_options.HandoffTimeout);
        }
        else if (_warmup is not null)
        {
            // Cut short by the deadline, the warm-up is not a failure unless it is required: a cold request is better
            // than no handoff.
            string? failure = await _warmup.RunAsync("Ready", _options.Warmup.Required, deadline.Token);
            _timeline?.Reached("WarmedUp");
            if (failure is not null && _options.Warmup.Required)
            {
                return "warm-up: " + failure;
            }
        }

        if (_readiness.HasChecks)
        {
            string? notReady = await _readiness.WaitAsync(budget - _time.GetElapsedTime(start), cancellationToken);
            _timeline?.Reached("ChecksHealthy");
            return notReady;
        }

        return null;
    }

    /// <summary>A first start's preparation: the same, but nothing stops it (nobody else serves); what failed is logged.</summary>
    public async Task BeforeFirstAcceptAsync(CancellationToken cancellationToken)
    {
        if (await BeforeReadyAsync(_options.HandoffTimeout, cancellationToken) is { } reason)
        {
            _logger.FirstStartNotReady(reason);
        }
    }
}
