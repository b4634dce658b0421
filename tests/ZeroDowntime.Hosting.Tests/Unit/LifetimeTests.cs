using ZeroDowntime.Hosting.Handoff;
using ZeroDowntime.Hosting.Listeners;

namespace ZeroDowntime.Hosting.Tests.Unit;

public sealed class LifetimeTests
{
    [Fact]
    public void BeginDrain_CancelsDraining_AndSaysHandingOver_ResumeStartsAfresh()
    {
        using var lifetime = new ZeroDowntimeLifetime();
        var first = lifetime.Draining;
        Assert.False(lifetime.HasHandedOver);
        Assert.False(first.IsCancellationRequested);

        lifetime.BeginDrain();
        Assert.True(lifetime.HasHandedOver);
        Assert.True(first.IsCancellationRequested);

        lifetime.Resume();
        Assert.False(lifetime.HasHandedOver);
        Assert.False(lifetime.Draining.IsCancellationRequested);
    }

    [Fact]
    public async Task AcceptGate_ClosedThenOpened_ReleasesWaitersAndCancelsOnClose()
    {
        using var gate = new AcceptGate();
        var (opened, _) = gate.Current;
        Assert.False(opened.IsCompleted);

        gate.Open();
        await opened.WaitAsync(TimeSpan.FromSeconds(5));
        var (_, closed) = gate.Current;
        Assert.False(closed.IsCancellationRequested);

        gate.Close();
        Assert.True(closed.IsCancellationRequested);
        Assert.False(gate.Current.Opened.IsCompleted);
    }

    // Item 7: app code on Draining must never stop the drain.
    [Fact]
    public void BeginDrain_DrainingCallbackThrows_DoesNotThrowAndStillDrains()
    {
        using var lifetime = new ZeroDowntimeLifetime();
        bool laterCallbackRan = false;
        lifetime.Draining.Register(() => throw new InvalidOperationException("app callback failed"));
        lifetime.Draining.Register(() => laterCallbackRan = true);

        lifetime.BeginDrain();

        Assert.True(lifetime.HasHandedOver);
        Assert.True(lifetime.Draining.IsCancellationRequested);
        Assert.True(laterCallbackRan);
    }
}
