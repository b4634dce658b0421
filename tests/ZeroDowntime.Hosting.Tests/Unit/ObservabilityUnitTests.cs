using System.Diagnostics.Metrics;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using ZeroDowntime.Hosting.Diagnostics;
using ZeroDowntime.Hosting.Handoff;
using ZeroDowntime.Hosting.Listeners;
using ZeroDowntime.Hosting.Tests.Infrastructure;

namespace ZeroDowntime.Hosting.Tests.Unit;

/// <summary>The instruments and the readiness check, read in-process (a MeterListener sees only this process).</summary>
public sealed class ObservabilityUnitTests
{
    [Fact]
    public void Instruments_HaveDocumentedNamesUnitsAndTags()
    {
        using var services = new ServiceCollection().AddMetrics().BuildServiceProvider();
        var registry = new ListenerRegistry(NullLogger<ListenerRegistry>.Instance, Options.Create(new ZeroDowntimeOptions { SocketPath = "/tmp/x.sock" }));
        using var gate = new AcceptGate();
        gate.Open();
        var factory = services.GetRequiredService<IMeterFactory>();
        using var metrics = new ZeroDowntimeMetrics(factory, registry, gate);
        var measured = new List<(string Name, string? Unit, double Value, Dictionary<string, object?> Tags)>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            // This test's meter only: other test classes run hosts with their own ZeroDowntimeMetrics meanwhile (same name).
            if (instrument.Meter.Name == ZeroDowntimeMetrics.MeterName && ReferenceEquals(instrument.Meter.Scope, factory))
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((i, v, tags, _) => measured.Add((i.Name, i.Unit, v, Tags(tags))));
        listener.SetMeasurementEventCallback<int>((i, v, tags, _) => measured.Add((i.Name, i.Unit, v, Tags(tags))));
        listener.SetMeasurementEventCallback<double>((i, v, tags, _) => measured.Add((i.Name, i.Unit, v, Tags(tags))));
        listener.Start();

        metrics.Generation = 12;
        metrics.Handoff(HandoffTags.Predecessor, HandoffTags.Committed);
        metrics.Handoff(HandoffTags.Successor, HandoffTags.Revoked);
        metrics.HandoffDuration(HandoffTags.Predecessor, TimeSpan.FromMilliseconds(250));
        metrics.Drained(TimeSpan.FromSeconds(2), aborted: 3);
        listener.RecordObservableInstruments();

        var handoffs = measured.Where(m => m.Name == "zerodowntime.handoffs").ToArray();
        Assert.Equal(2, handoffs.Length);
        Assert.All(handoffs, m => Assert.Equal("{handoff}", m.Unit));
        Assert.Contains(handoffs, m => (string?)m.Tags["zerodowntime.role"] == "predecessor" && (string?)m.Tags["zerodowntime.outcome"] == "committed");
        Assert.Contains(handoffs, m => (string?)m.Tags["zerodowntime.role"] == "successor" && (string?)m.Tags["zerodowntime.outcome"] == "revoked");
        var duration = Assert.Single(measured, m => m.Name == "zerodowntime.handoff.duration");
        Assert.Equal(("s", 0.25), (duration.Unit, duration.Value));
        Assert.Equal(2.0, Assert.Single(measured, m => m.Name == "zerodowntime.drain.duration").Value);
        Assert.Equal(3.0, Assert.Single(measured, m => m.Name == "zerodowntime.drain.aborted_connections").Value);
        Assert.Equal(12.0, Assert.Single(measured, m => m.Name == "zerodowntime.generation").Value);
        var listeners = measured.Where(m => m.Name == "zerodowntime.listeners").ToArray();
        Assert.Equal(["bound", "inherited"], listeners.Select(m => (string)m.Tags["zerodowntime.listener.origin"]!).Order());
    }

    // Issue 18 item 9: a draining predecessor (its gate closed at the commit) serves no listener, though Kestrel still
    // holds them; the gauge counted them as served.
    [Fact]
    public void ListenersGauge_CountsOnlyWhileTheGateIsOpen()
    {
        using var services = new ServiceCollection().AddMetrics().BuildServiceProvider();
        var registry = ListenerTestKit.Registry();
        using var gate = new AcceptGate();
        var factory = services.GetRequiredService<IMeterFactory>();
        using var recorder = new MeasurementRecorder(factory);
        using var metrics = new ZeroDowntimeMetrics(factory, registry, gate);
        var endPoint = new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0);
        registry.Acquire(endPoint, ListenerTestKit.Key(endPoint), ListenerTestKit.Transport());
        try
        {
            double Bound() => recorder.Of("zerodowntime.listeners").Last(m => (string?)m.Tags["zerodowntime.listener.origin"] == "bound").Value;

            Assert.Equal(0, Bound()); // not started: nothing accepted yet
            gate.Open();
            Assert.Equal(1, Bound());
            gate.Close(); // handed over: draining, the successor serves
            Assert.Equal(0, Bound());
        }
        finally
        {
            registry.CloseAll(removeUnixFiles: false);
        }
    }

    [Fact]
    public async Task HealthCheck_FollowsGateShutdownAndDrain()
    {
        using var lifetime = new ZeroDowntimeLifetime();
        using var gate = new AcceptGate();
        var check = new ZeroDowntimeHealthCheck(lifetime, gate);
        var context = new HealthCheckContext();

        Assert.Equal(HealthStatus.Unhealthy, (await check.CheckHealthAsync(context)).Status); // not accepting yet
        gate.Open();
        Assert.Equal(HealthStatus.Healthy, (await check.CheckHealthAsync(context)).Status);
        gate.Close(); // the commit closed the gate, the drain has not begun yet
        Assert.Equal(HealthStatus.Healthy, (await check.CheckHealthAsync(context)).Status);
        gate.Open();
        lifetime.BeginShutdown();
        Assert.Equal(HealthStatus.Unhealthy, (await check.CheckHealthAsync(context)).Status); // the shutdown delay
        using var handedOver = new ZeroDowntimeLifetime();
        handedOver.BeginDrain(); // after a handoff: the node serves through the successor
        gate.Close();
        Assert.Equal(HealthStatus.Healthy, (await new ZeroDowntimeHealthCheck(handedOver, gate).CheckHealthAsync(context)).Status);
        Assert.Equal(HealthStatus.Healthy, (await new ZeroDowntimeHealthCheck(new ZeroDowntimeLifetime()).CheckHealthAsync(context)).Status); // no gate: disabled
    }

    [Fact]
    public void ShutdownOptions_DefaultsAndValidation()
    {
        var options = new ZeroDowntimeOptions { SocketPath = "/tmp/x/h.sock", ApplicationId = "app" };
        Assert.True(options.DrainOnShutdown);
        Assert.Equal(TimeSpan.Zero, options.ShutdownDelay);
        var validator = new ZeroDowntimeOptionsValidator();
        Assert.True(validator.Validate(null, options).Succeeded);

        options.ShutdownDelay = TimeSpan.FromMinutes(6);
        var tooLong = validator.Validate(null, options);
        Assert.True(tooLong.Failed);
        Assert.Contains("ZeroDowntime:ShutdownDelay", tooLong.FailureMessage, StringComparison.Ordinal);
        options.ShutdownDelay = TimeSpan.FromSeconds(-1);
        Assert.True(validator.Validate(null, options).Failed);
    }

    private static Dictionary<string, object?> Tags(ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        var result = new Dictionary<string, object?>();
        foreach (var tag in tags)
        {
            result[tag.Key] = tag.Value;
        }

        return result;
    }
}
