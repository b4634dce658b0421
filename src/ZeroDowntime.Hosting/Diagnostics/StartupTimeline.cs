using System.Globalization;
using System.Text;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using ZeroDowntime.Hosting.Handoff;
using ZeroDowntime.Hosting.Logging;

namespace ZeroDowntime.Hosting.Diagnostics;

/// <summary>
/// Logs the phases of this process's start-up, each with its time after the OS started the process (event 17), and
/// the whole timeline once the process owns its resources (event 18), so that the cost of each phase can be read:
/// runtime, <c>Main</c> and building the host (<c>HostStarting</c>), receiving the listeners (<c>FdsReceived</c>,
/// or <c>NoPredecessor</c> at a first start), Kestrel binding its endpoints (<c>KestrelBound</c>), the app's start-up
/// hooks (<c>Started</c>), and <c>Acquired</c>: the process owns the handed-over resources (after the commit, or at a
/// first start). A successor's <c>Ready</c> and <c>Committed</c> are the coordinator's events 20 and 21, same clock.
/// </summary>
/// <remarks>
/// Registered after the coordinator, so no line of the handoff's code has to know about it: the host creates it with
/// the hosted services when it starts; its <c>StartingAsync</c> runs once the coordinator's has received the
/// listeners, its <c>StartedAsync</c> once every <c>StartAsync</c> has run, Kestrel's (binding) included; it hears of
/// the commit as a handoff participant.
/// </remarks>
internal sealed class StartupTimeline : IHostedLifecycleService, IHandoffParticipant
{
    private readonly Lock _lock = new();
    private readonly List<(string Phase, double ElapsedMs)> _phases = [];
    private readonly ILogger _logger;
    private readonly IHostApplicationLifetime _lifetime;
    private readonly ZeroDowntimeLifetime _handoffLifetime;
    private readonly IOptions<ZeroDowntimeOptions> _options;
    private readonly double _created = ProcessClock.Age.TotalMilliseconds;
    private bool _summarized;

    public StartupTimeline(ILoggerFactory loggerFactory, IHostApplicationLifetime lifetime, ZeroDowntimeLifetime handoffLifetime, IOptions<ZeroDowntimeOptions> options)
    {
        _logger = loggerFactory.CreateLogger(LogCategories.Startup);
        _lifetime = lifetime;
        _handoffLifetime = handoffLifetime;
        _options = options; // with Enabled=false there is no handoff's start-up to time
    }

    /// <summary>Adds the timeline: call after the coordinator's registration.</summary>
    public static void Register(IServiceCollection services)
    {
        services.TryAddSingleton<StartupTimeline>();
        services.AddHostedService(sp => sp.GetRequiredService<StartupTimeline>());
        services.AddSingleton<IHandoffParticipant>(sp => sp.GetRequiredService<StartupTimeline>());
    }

    /// <summary>Records that a phase was reached (now, unless given) and logs it.</summary>
    public void Reached(string phase, double? elapsedMs = null)
    {
        if (!_options.Value.Enabled)
        {
            return;
        }

        double now = elapsedMs ?? ProcessClock.Age.TotalMilliseconds;
        double previous;
        string previousPhase;
        lock (_lock)
        {
            (previousPhase, previous) = _phases.Count > 0 ? _phases[^1] : ("ProcessStart", 0);
            _phases.Add((phase, now));
        }

        _logger.StartupPhase(phase, now, now - previous, previousPhase);
    }

    public Task StartingAsync(CancellationToken cancellationToken)
    {
        // Created by the host with its hosted services, when it starts; the coordinator's StartingAsync has now run.
        Reached("HostStarting", _created);
        Reached(_handoffLifetime.IsSuccessor ? "FdsReceived" : "NoPredecessor");
        _lifetime.ApplicationStarted.Register(() => Reached("Started"));
        return Task.CompletedTask;
    }

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StartedAsync(CancellationToken cancellationToken)
    {
        // Every StartAsync has run, Kestrel's included (WebApplication starts it after the app's hosted services).
        Reached("KestrelBound");
        return Task.CompletedTask;
    }

    public Task StoppingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    Task IHandoffParticipant.AcquireAsync(HandoffAcquireReason reason, CancellationToken cancellationToken)
    {
        if (!_options.Value.Enabled)
        {
            return Task.CompletedTask;
        }

        Reached("Acquired");
        string? summary = null;
        lock (_lock)
        {
            if (!_summarized)
            {
                _summarized = true;
                var text = new StringBuilder();
                foreach (var (phase, elapsed) in _phases)
                {
                    text.Append(text.Length == 0 ? "" : ", ").Append(phase).Append(' ').Append(elapsed.ToString("0.0", CultureInfo.InvariantCulture));
                }

                summary = text.ToString();
            }
        }

        if (summary is not null)
        {
            _logger.StartupTimelineSummary(summary);
        }

        return Task.CompletedTask;
    }

    Task IHandoffParticipant.ReleaseAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    Task IHandoffParticipant.AbandonAsync(string reason, CancellationToken cancellationToken) => Task.CompletedTask;
}
