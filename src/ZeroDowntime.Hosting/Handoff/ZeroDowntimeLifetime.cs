using Microsoft.Extensions.Logging;
using ZeroDowntime.Hosting.Logging;

namespace ZeroDowntime.Hosting.Handoff;

/// <summary>The state of this process in the handoff, as the application sees it.</summary>
internal sealed class ZeroDowntimeLifetime : IZeroDowntimeLifetime, IDisposable
{
    private readonly ILogger? _logger;
    private volatile CancellationTokenSource _draining = new();
    private volatile bool _hasHandedOver;
    private volatile bool _isDraining;
    private volatile bool _isShuttingDown;

    public ZeroDowntimeLifetime(ILoggerFactory? loggerFactory = null) => _logger = loggerFactory?.CreateLogger(LogCategories.Handoff);

    public bool HasHandedOver => _hasHandedOver;

    /// <summary>True while this process drains (after a handoff, or on a plain shutdown): responses say goodbye.</summary>
    public bool IsDraining => _isDraining;

    /// <summary>True from the start of a plain shutdown (its delay included): the readiness check says Unhealthy.</summary>
    public bool IsShuttingDown => _isShuttingDown;

    public bool IsSuccessor { get; set; }

    public CancellationToken Draining => _draining.Token;

    public void Dispose() => _draining.Dispose();

    /// <summary>A plain shutdown begins (its delay first, then the drain).</summary>
    public void BeginShutdown() => _isShuttingDown = true;

    public void BeginDrain(bool handingOver = true)
    {
        _hasHandedOver = handingOver;
        _isDraining = true;
        try
        {
            // Every callback runs even if one throws; app code must never stop the drain.
            _draining.Cancel();
        }
        catch (AggregateException ex)
        {
            _logger?.DrainingCallbackFailed(ex);
        }
    }

    /// <summary>The successor was lost after the commit: this process serves again and may drain another day.</summary>
    public void Resume()
    {
        _hasHandedOver = false;
        _isDraining = false;
        _draining = new CancellationTokenSource();
    }
}
