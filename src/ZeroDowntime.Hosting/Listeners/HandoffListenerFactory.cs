using System.Net;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using ZeroDowntime.Hosting.Drain;

namespace ZeroDowntime.Hosting.Listeners;

/// <summary>
/// Kestrel's transport for TCP and Unix-socket endpoints when handoffs are enabled. It is registered after
/// Kestrel's <see cref="SocketTransportFactory"/>, so Kestrel asks it first; endpoints it cannot hand over
/// (abstract Unix sockets) fall through to Kestrel's own transport; a file handle is handed over under its bound address.
/// </summary>
internal sealed class HandoffListenerFactory : IConnectionListenerFactory, IConnectionListenerFactorySelector, IDisposable
{
    private readonly ListenerRegistry _registry;
    private readonly AcceptGate _gate;
    private readonly ConnectionTracker _tracker;
    private readonly SocketTransportOptions _transportOptions;
    private readonly SocketConnectionContextFactory _contextFactory;
    private readonly IOptions<ZeroDowntimeOptions>? _handoffOptions;
    private readonly Lock _lock = new();
    private readonly List<HandoffConnectionListener> _bound = [];
    private int _disposed;

    public HandoffListenerFactory(
        ListenerRegistry registry,
        AcceptGate gate,
        ConnectionTracker tracker,
        IOptions<SocketTransportOptions> transportOptions,
        ILoggerFactory loggerFactory,
        IOptions<ZeroDowntimeOptions>? handoffOptions = null)
    {
        _handoffOptions = handoffOptions; // read when Kestrel binds, after the options were validated at start
        _registry = registry;
        _gate = gate;
        _tracker = tracker;
        _transportOptions = transportOptions.Value;
        var options = new SocketConnectionFactoryOptions
        {
            IOQueueCount = _transportOptions.IOQueueCount,
            WaitForDataBeforeAllocatingBuffer = _transportOptions.WaitForDataBeforeAllocatingBuffer,
            MaxReadBufferSize = _transportOptions.MaxReadBufferSize,
            MaxWriteBufferSize = _transportOptions.MaxWriteBufferSize,
            UnsafePreferInlineScheduling = _transportOptions.UnsafePreferInlineScheduling,
        };
        _contextFactory = new SocketConnectionContextFactory(options, loggerFactory.CreateLogger("Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets"));
    }

    /// <summary>With <c>Enabled=false</c> nothing: Kestrel binds every endpoint with its own transport, as without the library.</summary>
    public bool CanBind(EndPoint endpoint) => (_handoffOptions?.Value.Enabled ?? true) && ListenerKey.For(endpoint) is not null;

    public ValueTask<IConnectionListener> BindAsync(EndPoint endpoint, CancellationToken cancellationToken = default)
    {
        var key = ListenerKey.For(endpoint) ?? throw new NotSupportedException($"{endpoint} cannot be handed over.");
        var entry = _registry.Acquire(endpoint, key, _transportOptions);
        var listener = new HandoffConnectionListener(entry, _registry, _gate, _tracker, _contextFactory, _transportOptions.NoDelay);
        lock (_lock)
        {
            _bound.Add(listener);
        }

        return ValueTask.FromResult<IConnectionListener>(listener);
    }

    /// <summary>Every listener Kestrel bound through this factory (the warm-up's targets; an unbound one refuses injections).</summary>
    public IReadOnlyList<HandoffConnectionListener> BoundListeners
    {
        get
        {
            lock (_lock)
            {
                return _bound.ToArray();
            }
        }
    }

    public void Dispose()
    {
        // Registered under two service types (the warm-up resolves it by its own type): the container disposes it twice.
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            _contextFactory.Dispose();
        }
    }
}
