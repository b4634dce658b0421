using System.Diagnostics;
using System.Diagnostics.Metrics;
using ZeroDowntime.Hosting.Listeners;

namespace ZeroDowntime.Hosting.Diagnostics;

/// <summary>
/// The library's instruments (meter <c>ZeroDowntime.Hosting</c>, OpenTelemetry-style names, UCUM units) and its
/// <see cref="ActivitySource"/>, one activity per handoff on each side. Created through <see cref="IMeterFactory"/>, so
/// every host gets its own meter and a <see cref="MeterListener"/> sees exactly this process's figures.
/// </summary>
internal sealed class ZeroDowntimeMetrics : IDisposable
{
    public const string MeterName = "ZeroDowntime.Hosting";
    public const string RoleTag = "zerodowntime.role";
    public const string OutcomeTag = "zerodowntime.outcome";
    public const string RollbackOriginTag = "zerodowntime.rollback.origin";
    public const string OriginTag = "zerodowntime.listener.origin";

    /// <summary>Activities of both sides of a handoff (<c>zerodowntime.handoff</c>), phases as events.</summary>
    public static readonly ActivitySource ActivitySource = new(MeterName);

    private readonly Meter _meter;
    private readonly Counter<long> _handoffs;
    private readonly Histogram<double> _handoffDuration;
    private readonly Histogram<double> _drainDuration;
    private readonly Counter<long> _abortedConnections;
    private readonly Counter<long> _upgrades;
    private long _generation;

    public ZeroDowntimeMetrics(IMeterFactory meterFactory, ListenerRegistry registry, AcceptGate gate)
    {
        _meter = meterFactory.Create(MeterName);
        _handoffs = _meter.CreateCounter<long>("zerodowntime.handoffs", "{handoff}",
            "Handoffs this process took part in, by its role (predecessor, successor) and their outcome.");
        _handoffDuration = _meter.CreateHistogram<double>("zerodowntime.handoff.duration", "s",
            "From the successor's greeting to the commit.", advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60] });
        _drainDuration = _meter.CreateHistogram<double>("zerodowntime.drain.duration", "s",
            "From the start of a drain (after a handoff, or on a plain shutdown) to its end.", advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.01, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300] });
        _abortedConnections = _meter.CreateCounter<long>("zerodowntime.drain.aborted_connections", "{connection}",
            "Connections still open at DrainTimeout, aborted.");
        _upgrades = _meter.CreateCounter<long>("zerodowntime.upgrades", "{upgrade}",
            "Upgrades this process was asked for (upgrade signal or zerodowntime upgrade), by their outcome.");
        // Served means accepted on: a process whose gate is closed (draining after a handoff, not started yet) serves
        // none, even though Kestrel still holds its listeners.
        _meter.CreateObservableGauge("zerodowntime.listeners", () => registry.CountByOrigin()
            .Select(c => new Measurement<int>(gate.IsOpen ? c.Count : 0, new KeyValuePair<string, object?>(OriginTag, c.Inherited ? "inherited" : "bound"))),
            "{listener}", "Listening sockets this process accepts on (0 while its gate is closed), inherited from the predecessor or bound here.");
        _meter.CreateObservableGauge("zerodowntime.generation", () => Interlocked.Read(ref _generation), "{generation}",
            "1 at a first start, the predecessor's generation plus 1 after each handoff.");
    }

    /// <summary>This process's generation (0 until it is known).</summary>
    public long Generation
    {
        get => Interlocked.Read(ref _generation);
        set => Interlocked.Exchange(ref _generation, value);
    }

    public void Handoff(string role, string outcome) =>
        _handoffs.Add(1, new KeyValuePair<string, object?>(RoleTag, role), new KeyValuePair<string, object?>(OutcomeTag, outcome));

    /// <summary>A rollback during probation: outcome <c>rolled-back</c>, with who asked for it (<c>manual</c>, <c>signal</c>, <c>error-ratio</c>, <c>health-check</c>).</summary>
    public void RolledBack(string role, string origin) =>
        _handoffs.Add(1, new KeyValuePair<string, object?>(RoleTag, role), new KeyValuePair<string, object?>(OutcomeTag, HandoffTags.RolledBack),
            new KeyValuePair<string, object?>(RollbackOriginTag, origin));

    public void HandoffDuration(string role, TimeSpan duration) =>
        _handoffDuration.Record(duration.TotalSeconds, new KeyValuePair<string, object?>(RoleTag, role));

    public void Drained(TimeSpan duration, int aborted)
    {
        _drainDuration.Record(duration.TotalSeconds);
        if (aborted > 0)
        {
            _abortedConnections.Add(aborted);
        }
    }

    /// <summary>An upgrade this process was asked for ended (<see cref="HandoffTags"/>: committed, failed, abandoned, refused).</summary>
    public void Upgrade(string outcome) => _upgrades.Add(1, new KeyValuePair<string, object?>(OutcomeTag, outcome));

    public void Dispose() => _meter.Dispose();
}

/// <summary>The values of <see cref="ZeroDowntimeMetrics.RoleTag"/> and <see cref="ZeroDowntimeMetrics.OutcomeTag"/>.</summary>
internal static class HandoffTags
{
    public const string Predecessor = "predecessor";
    public const string Successor = "successor";
    public const string Committed = "committed";
    public const string Failed = "failed";
    public const string Abandoned = "abandoned";
    public const string Refused = "refused";
    public const string Revoked = "revoked";
    public const string RolledBack = "rolled-back";
}
