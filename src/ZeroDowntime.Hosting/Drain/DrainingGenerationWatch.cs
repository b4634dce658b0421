using Microsoft.Extensions.Logging;
using ZeroDowntime.Hosting.Handoff;
using ZeroDowntime.Hosting.Logging;

namespace ZeroDowntime.Hosting.Drain;

/// <summary>
/// While this process drains after a handoff: its state file beside the handoff socket (<see cref="DrainingGenerationFiles"/>,
/// rewritten when its count of open connections changes), and a look at the other draining generations whenever that
/// directory changes (inotify) and at least once a <see cref="Interval"/> (a watcher can miss events). When
/// <see cref="ZeroDowntimeOptions.MaxDrainingGenerations"/> or more newer generations drain, this one is beyond the bound:
/// <see cref="EndNow"/> is cancelled, and the drain aborts what it still holds.
/// </summary>
internal sealed class DrainingGenerationWatch : IAsyncDisposable
{
    /// <summary>The fallback look, and the longest a count in the state file lags behind.</summary>
    internal static readonly TimeSpan Interval = TimeSpan.FromSeconds(1);

    private readonly string _socketPath;
    private readonly DrainingGeneration _self;
    private readonly int _max;
    private readonly Func<int> _openConnections;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly Func<DrainingGeneration, bool>? _isLive;
    private readonly CancellationTokenSource _endNow = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly SemaphoreSlim _changed = new(0);
    private FileSystemWatcher? _watcher;
    private Task _loop = Task.CompletedTask;
    private int _written = -1;
    private bool _failureLogged;

    internal DrainingGenerationWatch(string socketPath, DrainingGeneration self, int max, Func<int> openConnections, ILogger logger,
        TimeProvider time, Func<DrainingGeneration, bool>? isLive = null)
    {
        _socketPath = socketPath;
        _self = self;
        _max = max;
        _openConnections = openConnections;
        _logger = logger;
        _time = time;
        _isLive = isLive;
    }

    /// <summary>Cancelled when this generation must end its drain at once.</summary>
    public CancellationToken EndNow => _endNow.Token;

    /// <summary>
    /// The rule: with <paramref name="max"/> &gt; 0, a draining generation ends its drain when at least
    /// <paramref name="max"/> newer generations drain too (so at most <paramref name="max"/> drain beside the server).
    /// Returns those newer generations then, else null.
    /// </summary>
    public static IReadOnlyList<DrainingGeneration>? NewerBeyondBound(DrainingGeneration self, IEnumerable<DrainingGeneration> draining, int max)
    {
        if (max <= 0)
        {
            return null;
        }

        var newer = draining.Where(g => g.ProcessId != self.ProcessId && g.Generation > self.Generation).ToList();
        return newer.Count >= max ? newer : null;
    }

    /// <summary>Writes this generation's file and starts watching; the first look happens at once.</summary>
    public void Start()
    {
        Refresh();
        try
        {
            string directory = Path.GetDirectoryName(_socketPath)!;
            _watcher = new FileSystemWatcher(directory, Path.GetFileName(_socketPath) + "*");
            _watcher.Created += (_, _) => Signal();
            _watcher.Renamed += (_, _) => Signal();
            _watcher.Changed += (_, _) => Signal();
            _watcher.Deleted += (_, _) => Signal();
            _watcher.EnableRaisingEvents = true;
        }
        catch (Exception ex) when (ex is IOException or ArgumentException or UnauthorizedAccessException or PlatformNotSupportedException)
        {
            _watcher?.Dispose();
            _watcher = null; // the fallback look each second remains
        }

        _loop = BackgroundWork.Start("watch of the draining generations", LoopAsync, _logger);
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await _loop;
        _watcher?.Dispose();
        DrainingGenerationFiles.Remove(_socketPath, _self.ProcessId);
        _stop.Dispose();
        _endNow.Dispose();
        _changed.Dispose();
    }

    private void Signal()
    {
        try
        {
            if (_changed.CurrentCount == 0)
            {
                _changed.Release();
            }
        }
        catch (ObjectDisposedException)
        {
            // An event after the drain ended.
        }
    }

    private async Task LoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Refresh();
            var draining = DrainingGenerationFiles.ReadAll(_socketPath, _isLive, removeStale: true);
            if (NewerBeyondBound(_self, draining, _max) is { } newer)
            {
                _logger.DrainingGenerationsExceeded(newer.Count, string.Join(", ", newer.Select(g => $"{g.Generation} (pid {g.ProcessId})")),
                    _max, _self.Generation);
                await _endNow.CancelAsync();
                return;
            }

            using var tick = new CancellationTokenSource(Interval, _time);
            using var either = CancellationTokenSource.CreateLinkedTokenSource(tick.Token, _stop.Token);
            try
            {
                await _changed.WaitAsync(either.Token);
            }
            catch (OperationCanceledException) when (!_stop.IsCancellationRequested)
            {
                // The fallback look.
            }
        }
    }

    /// <summary>(Re)writes this generation's file when its count changed, or when someone removed it.</summary>
    private void Refresh()
    {
        int open = _openConnections();
        string path = DrainingGenerationFiles.PathFor(_socketPath, _self.ProcessId);
        if (open == _written && File.Exists(path))
        {
            return;
        }

        try
        {
            DrainingGenerationFiles.Write(_socketPath, _self with { OpenConnections = open });
            _written = open;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            if (!_failureLogged)
            {
                _failureLogged = true;
                _logger.DrainingStateFileFailed(path, ex.Message);
            }
        }
    }
}
