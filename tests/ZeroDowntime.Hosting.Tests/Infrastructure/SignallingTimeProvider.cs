using Microsoft.Extensions.Time.Testing;

namespace ZeroDowntime.Hosting.Tests.Infrastructure;

/// <summary>
/// A fake clock that says which timers are pending, so that a test advances it only once the code waits on the
/// timer it means (a 5 s read deadline, not an earlier 5 s one that has ended).
/// </summary>
internal sealed class SignallingTimeProvider : FakeTimeProvider
{
    private readonly Lock _lock = new();
    private readonly List<TrackedTimer> _timers = [];
    private TaskCompletionSource _created = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
    {
        var timer = new TrackedTimer(base.CreateTimer(callback, state, dueTime, period), dueTime, GetUtcNow() + dueTime);
        lock (_lock)
        {
            _timers.Add(timer);
            _created.TrySetResult();
            _created = new(TaskCreationOptions.RunContinuationsAsynchronously);
        }

        return timer;
    }

    /// <summary>
    /// Waits (bounded, in real time) until a timer created for <paramref name="dueTime"/> is pending: not disposed and
    /// not yet due on this clock.
    /// </summary>
    public async Task WaitForTimerAsync(TimeSpan dueTime, TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        while (true)
        {
            Task created;
            lock (_lock)
            {
                var now = GetUtcNow();
                if (_timers.Any(t => t.DueTime == dueTime && !t.IsDisposed && t.DueAt > now))
                {
                    return;
                }

                created = _created.Task;
            }

            await created.WaitAsync(cts.Token);
        }
    }

    private sealed class TrackedTimer(ITimer inner, TimeSpan dueTime, DateTimeOffset dueAt) : ITimer
    {
        private volatile bool _disposed;

        public TimeSpan DueTime { get; } = dueTime;

        public DateTimeOffset DueAt { get; } = dueAt;

        public bool IsDisposed => _disposed;

        public bool Change(TimeSpan dueTime, TimeSpan period) => inner.Change(dueTime, period);

        public void Dispose()
        {
            _disposed = true;
            inner.Dispose();
        }

        public ValueTask DisposeAsync()
        {
            _disposed = true;
            return inner.DisposeAsync();
        }
    }
}
