using System.Globalization;
using System.Text;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using ZeroDowntime.Hosting.Lifecycle;
using ZeroDowntime.Hosting.Logging;

namespace ZeroDowntime.Hosting.Listeners;

/// <summary>
/// Logs the phases of this process's start-up, each with its time after the OS started the process (event 17), and
/// the whole timeline once the process owns its resources (event 18), so that the cost of each phase can be read:
/// runtime and host start-up (<c>HostStarting</c>), receiving the listeners (<c>FdsReceived</c>, successors only),
/// Kestrel binding its endpoints (<c>KestrelBound</c>), the app's start-up hooks (<c>Started</c>), and
/// <c>Acquired</c>: the process owns the handed-over resources (after the commit, or at a first start). A
/// successor's <c>Ready</c> and <c>Committed</c> are the coordinator's events 20 and 21, with the same clock.
/// </summary>
/// <remarks>
/// A hosted service registered after Kestrel's (so its <c>StartAsync</c> runs once Kestrel has bound) and before the
/// coordinator (so its <c>StartingAsync</c> runs first), and a handoff participant (so it hears of the commit).
/// </remarks>
internal sealed class StartupTimeline(ILogger<StartupTimeline> logger, IHostApplicationLifetime lifetime)
    : IHostedLifecycleService, IHandoffParticipant
{
    private readonly Lock _lock = new();
    private readonly List<(string Phase, double ElapsedMs)> _phases = [];
    private bool _summarized;

    /// <summary>Records that a phase was reached now and logs it.</summary>
    public void Reached(string phase)
    {
        double now = ProcessClock.Age.TotalMilliseconds;
        double previous;
        string previousPhase;
        lock (_lock)
        {
            (previousPhase, previous) = _phases.Count > 0 ? _phases[^1] : ("ProcessStart", 0);
            _phases.Add((phase, now));
        }

        logger.StartupPhase(phase, now, now - previous, previousPhase);
    }

    /// <summary>The phases reached so far, in order, with their time after process start.</summary>
    public IReadOnlyList<(string Phase, double ElapsedMs)> Phases
    {
        get
        {
            lock (_lock)
            {
                return [.. _phases];
            }
        }
    }

    public Task StartingAsync(CancellationToken cancellationToken)
    {
        Reached("HostStarting");
        lifetime.ApplicationStarted.Register(() => Reached("Started"));
        return Task.CompletedTask;
    }

    public Task StartAsync(CancellationToken cancellationToken)
    {
        Reached("KestrelBound");
        return Task.CompletedTask;
    }

    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StoppingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    Task IHandoffParticipant.AcquireAsync(HandoffAcquireReason reason, CancellationToken cancellationToken)
    {
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
            logger.StartupTimelineSummary(summary);
        }

        return Task.CompletedTask;
    }

    Task IHandoffParticipant.ReleaseAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    Task IHandoffParticipant.AbandonAsync(string reason, CancellationToken cancellationToken) => Task.CompletedTask;
}
