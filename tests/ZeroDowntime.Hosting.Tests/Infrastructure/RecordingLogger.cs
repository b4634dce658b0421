using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace ZeroDowntime.Hosting.Tests.Infrastructure;

/// <summary>An in-process logger that keeps every entry, so component tests assert on event names, not text.</summary>
internal sealed class RecordingLogger<T> : ILogger<T>
{
    private readonly ConcurrentQueue<LogEntry> _entries = new();
    private readonly Lock _lock = new();
    private readonly List<(Func<LogEntry, bool> Match, TaskCompletionSource<LogEntry> Found)> _waiters = [];

    public IReadOnlyCollection<LogEntry> Entries => _entries.ToArray();

    public IDisposable? BeginScope<TState>(TState state)
        where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => true;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        var fields = state is IEnumerable<KeyValuePair<string, object?>> pairs
            ? pairs.Where(p => p.Key != "{OriginalFormat}").ToDictionary(p => p.Key, p => p.Value, StringComparer.Ordinal)
            : new Dictionary<string, object?>(StringComparer.Ordinal);
        var entry = new LogEntry(logLevel, eventId, formatter(state, exception), exception, fields);
        lock (_lock)
        {
            _entries.Enqueue(entry);
            _waiters.RemoveAll(w => w.Match(entry) && w.Found.TrySetResult(entry));
        }
    }

    /// <summary>Waits (bounded) for the first entry that matches, logged before or after the call.</summary>
    public Task<LogEntry> WaitForAsync(Func<LogEntry, bool> match, TimeSpan timeout)
    {
        var found = new TaskCompletionSource<LogEntry>(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_lock)
        {
            if (_entries.FirstOrDefault(match) is { } existing)
            {
                return Task.FromResult(existing);
            }

            _waiters.Add((match, found));
        }

        return found.Task.WaitAsync(timeout);
    }

    public IEnumerable<LogEntry> Named(string eventName) => Entries.Where(e => e.EventId.Name == eventName);
}
