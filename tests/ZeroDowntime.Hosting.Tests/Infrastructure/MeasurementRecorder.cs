using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using ZeroDowntime.Hosting.Diagnostics;

namespace ZeroDowntime.Hosting.Tests.Infrastructure;

/// <summary>
/// Records the library's measurements of one meter factory (one host): tests run in parallel in one process, and
/// each host's meter has its factory as its scope, so nothing another test measures is seen here.
/// </summary>
internal sealed class MeasurementRecorder : IDisposable
{
    private readonly MeterListener _listener = new();
    private readonly ConcurrentQueue<(string Name, double Value, Dictionary<string, object?> Tags)> _measured = new();

    public MeasurementRecorder(IMeterFactory scope)
    {
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == ZeroDowntimeMetrics.MeterName && ReferenceEquals(instrument.Meter.Scope, scope))
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        _listener.SetMeasurementEventCallback<long>((i, v, tags, _) => Add(i.Name, v, tags));
        _listener.SetMeasurementEventCallback<int>((i, v, tags, _) => Add(i.Name, v, tags));
        _listener.SetMeasurementEventCallback<double>((i, v, tags, _) => Add(i.Name, v, tags));
        _listener.Start();
    }

    /// <summary>The measurements of <paramref name="name"/> so far (observable instruments are read first).</summary>
    public IReadOnlyList<(double Value, Dictionary<string, object?> Tags)> Of(string name)
    {
        _listener.RecordObservableInstruments();
        return _measured.Where(m => m.Name == name).Select(m => (m.Value, m.Tags)).ToArray();
    }

    public void Clear() => _measured.Clear();

    public void Dispose() => _listener.Dispose();

    private void Add(string name, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        var copy = new Dictionary<string, object?>();
        foreach (var tag in tags)
        {
            copy[tag.Key] = tag.Value;
        }

        _measured.Enqueue((name, value, copy));
    }
}
