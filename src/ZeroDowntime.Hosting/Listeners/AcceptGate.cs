
namespace ZeroDowntime.Hosting.Listeners;

/// <summary>
/// Decides, for every listener of the process at once, whether connections are accepted. Kestrel has no
/// "pause accepting" API and starts accepting before the host has started, so the listeners wait on this gate:
/// closed until <c>ApplicationStarted</c>, closed again when a successor takes over, reopened if it is lost.
/// A closed gate leaves connections in the kernel's accept queue for whichever process accepts.
/// </summary>
internal sealed class AcceptGate : IDisposable
{
    private readonly Lock _lock = new();
    private TaskCompletionSource _opened = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private CancellationTokenSource _closed = new();
    private bool _isOpen;

    /// <summary>
    /// Returns a task that completes when the gate is open, and a token that is cancelled when it closes again
    /// (pending accepts are cancelled with it).
    /// </summary>
    public (Task Opened, CancellationToken Closed) Current
    {
        get
        {
            lock (_lock)
            {
                return (_opened.Task, _closed.Token);
            }
        }
    }

    /// <summary>True once the gate has been opened at least once (this process has accepted, or accepts).</summary>
    public bool HasOpened { get; private set; }

    public bool IsOpen
    {
        get
        {
            lock (_lock)
            {
                return _isOpen;
            }
        }
    }

    public void Dispose()
    {
        lock (_lock)
        {
            _closed.Dispose();
        }
    }

    public void Open()
    {
        lock (_lock)
        {
            if (_isOpen)
            {
                return;
            }

            _isOpen = true;
            HasOpened = true;
            _closed = new CancellationTokenSource();
            _opened.TrySetResult();
        }
    }

    public void Close()
    {
        CancellationTokenSource closed;
        lock (_lock)
        {
            if (!_isOpen)
            {
                return;
            }

            _isOpen = false;
            _opened = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            closed = _closed;
        }

        closed.Cancel();
    }
}
