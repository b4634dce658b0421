using ZeroDowntime.Hosting.Listeners;
using ZeroDowntime.Hosting.Warmup;

namespace ZeroDowntime.Hosting.Tests.Unit;

/// <summary>The gate every listener of the process waits on (architecture.md, steps 3 and 5).</summary>
public sealed class AcceptGateTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(5);

    [Fact]
    public void Current_NeverOpened_IsClosedAndHasNotOpened()
    {
        using var gate = new AcceptGate();

        Assert.False(gate.Current.Opened.IsCompleted);
        Assert.False(gate.IsOpen);
        Assert.False(gate.HasOpened);
    }

    [Fact]
    public async Task Open_WithWaiter_ReleasesItAndLeavesTheClosedTokenUncancelled()
    {
        using var gate = new AcceptGate();
        var (opened, _) = gate.Current;

        gate.Open();

        await opened.WaitAsync(Timeout);
        Assert.True(gate.IsOpen);
        Assert.True(gate.HasOpened);
        Assert.False(gate.Current.Closed.IsCancellationRequested);
    }

    [Fact]
    public void Open_Twice_KeepsTheSameClosedToken()
    {
        using var gate = new AcceptGate();
        gate.Open();
        var first = gate.Current.Closed;

        gate.Open();

        Assert.Equal(first, gate.Current.Closed);
        Assert.False(first.IsCancellationRequested);
    }

    [Fact]
    public void Close_WhenOpen_CancelsPendingAcceptsAndMakesNewWaitersWait()
    {
        using var gate = new AcceptGate();
        gate.Open();
        var (opened, closed) = gate.Current;

        gate.Close();

        Assert.True(closed.IsCancellationRequested);
        Assert.True(opened.IsCompleted, "a task handed out while open stays completed");
        Assert.False(gate.Current.Opened.IsCompleted);
        Assert.False(gate.IsOpen);
        Assert.True(gate.HasOpened);
    }

    [Fact]
    public void Close_NeverOpened_ChangesNothing()
    {
        using var gate = new AcceptGate();
        var (opened, closed) = gate.Current;

        gate.Close();

        Assert.Same(opened, gate.Current.Opened);
        Assert.False(closed.IsCancellationRequested);
        Assert.False(gate.HasOpened);
    }

    // A successor lost after the commit: the predecessor reopens its gate (architecture.md, step 7).
    [Fact]
    public async Task Open_AfterClose_ReleasesNewWaitersWithAFreshClosedToken()
    {
        using var gate = new AcceptGate();
        gate.Open();
        var firstClosed = gate.Current.Closed;
        gate.Close();
        var (reopened, _) = gate.Current;

        gate.Open();

        await reopened.WaitAsync(Timeout);
        Assert.True(firstClosed.IsCancellationRequested);
        Assert.False(gate.Current.Closed.IsCancellationRequested);
        Assert.NotEqual(firstClosed, gate.Current.Closed);
    }

    [Fact]
    public async Task OpenAndClose_FromManyThreads_EndInTheLastState()
    {
        using var gate = new AcceptGate();
        await Task.WhenAll(Enumerable.Range(0, 8).Select(i => Task.Run(() =>
        {
            for (int n = 0; n < 1000; n++)
            {
                if ((n + i) % 2 == 0)
                {
                    gate.Open();
                }
                else
                {
                    gate.Close();
                }
            }
        }))).WaitAsync(Timeout);

        gate.Open();
        await gate.Current.Opened.WaitAsync(Timeout);
        Assert.False(gate.Current.Closed.IsCancellationRequested);
        gate.Close();
        Assert.False(gate.Current.Opened.IsCompleted);
    }
}
