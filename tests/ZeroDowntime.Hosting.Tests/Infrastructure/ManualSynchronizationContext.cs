using System.Collections.Concurrent;

namespace ZeroDowntime.Hosting.Tests.Infrastructure;

/// <summary>
/// A synchronization context whose posted continuations run only when the test pumps them: code awaited under it
/// is "frozen" between its awaits, so a test can order events (a timer firing, bytes arriving) before it wakes.
/// </summary>
internal sealed class ManualSynchronizationContext : SynchronizationContext, IDisposable
{
    private readonly BlockingCollection<(SendOrPostCallback Callback, object? State)> _posted = [];
    private readonly SemaphoreSlim _postedSignal = new(0);

    public override void Post(SendOrPostCallback d, object? state)
    {
        _posted.Add((d, state));
        _postedSignal.Release();
    }

    public override void Send(SendOrPostCallback d, object? state) => throw new NotSupportedException();

    /// <summary>Starts <paramref name="start"/> on this thread under this context; it runs until its first await.</summary>
    public T Run<T>(Func<T> start)
    {
        var previous = Current;
        SetSynchronizationContext(this);
        try
        {
            return start();
        }
        finally
        {
            SetSynchronizationContext(previous);
        }
    }

    /// <summary>Waits (bounded) until a continuation has been posted, without running it.</summary>
    public async Task WaitForPostedAsync(TimeSpan timeout)
    {
        if (!await _postedSignal.WaitAsync(timeout))
        {
            throw new TimeoutException($"Nothing was posted within {timeout.TotalSeconds:0} s.");
        }

        _postedSignal.Release(); // leave the count for the pump
    }

    /// <summary>Runs posted continuations on this thread until <paramref name="task"/> completes (bounded).</summary>
    public void PumpUntil(Task task, TimeSpan timeout)
    {
        var previous = Current;
        SetSynchronizationContext(this);
        try
        {
            var deadline = DateTime.UtcNow + timeout;
            while (!task.IsCompleted)
            {
                var remaining = deadline - DateTime.UtcNow;
                if (remaining <= TimeSpan.Zero || !_posted.TryTake(out var item, remaining))
                {
                    throw new TimeoutException($"The task did not complete within {timeout.TotalSeconds:0} s of pumping.");
                }

                _postedSignal.Wait(0);
                item.Callback(item.State);
            }
        }
        finally
        {
            SetSynchronizationContext(previous);
        }
    }

    public void Dispose()
    {
        _posted.Dispose();
        _postedSignal.Dispose();
    }
}
