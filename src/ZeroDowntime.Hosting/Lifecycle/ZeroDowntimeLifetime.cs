using Microsoft.Extensions.Logging;
using ZeroDowntime.Hosting.Logging;

namespace ZeroDowntime.Hosting.Lifecycle;

/// <summary>The state of this process in the handoff, as the application sees it.</summary>
internal sealed class ZeroDowntimeLifetime : IZeroDowntimeLifetime, IDisposable
{
    private readonly ILogger? _logger;
    private volatile CancellationTokenSource _draining = new();
    private volatile bool _isHandingOver;

    public ZeroDowntimeLifetime(ILogger<ZeroDowntimeLifetime>? logger = null) => _logger = logger;

    public bool IsHandingOver => _isHandingOver;

    public bool IsSuccessor { get; set; }

    public CancellationToken Draining => _draining.Token;

    public void Dispose() => _draining.Dispose();

    public void BeginDrain()
    {
        _isHandingOver = true;
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
        _isHandingOver = false;
        _draining = new CancellationTokenSource();
    }
}
