using System.Collections.Concurrent;

namespace ZeroDowntime.Hosting.Tests.Infrastructure;

/// <summary>A participant that does its work at once and records every call, in order ("acquire RolledBack", "release").</summary>
internal sealed class RecordingParticipant : IHandoffParticipant
{
    private readonly ConcurrentQueue<string> _calls = new();
    private readonly Lock _lock = new();
    private readonly List<(string Call, TaskCompletionSource Seen)> _waiters = [];

    /// <summary>The calls so far, in order.</summary>
    public IReadOnlyList<string> Calls => _calls.ToArray();

    public Task AcquireAsync(HandoffAcquireReason reason, CancellationToken cancellationToken) => Record($"acquire {reason}");

    public Task ReleaseAsync(CancellationToken cancellationToken) => Record("release");

    public Task AbandonAsync(string reason, CancellationToken cancellationToken) => Record("abandon");

    /// <summary>Waits (bounded, in real time) until <paramref name="call"/> has been made, before or after this call.</summary>
    public Task WaitForAsync(string call, TimeSpan timeout)
    {
        var seen = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_lock)
        {
            if (_calls.Contains(call))
            {
                return Task.CompletedTask;
            }

            _waiters.Add((call, seen));
        }

        return seen.Task.WaitAsync(timeout);
    }

    private Task Record(string call)
    {
        lock (_lock)
        {
            _calls.Enqueue(call);
            _waiters.RemoveAll(w => w.Call == call && w.Seen.TrySetResult());
        }

        return Task.CompletedTask;
    }
}
