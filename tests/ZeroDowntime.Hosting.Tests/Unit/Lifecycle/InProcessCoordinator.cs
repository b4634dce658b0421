using System.Diagnostics.Metrics;
using System.Net.Sockets;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;
using ZeroDowntime.Hosting.Diagnostics;
using ZeroDowntime.Hosting.Lifecycle;
using ZeroDowntime.Hosting.Listeners;
using ZeroDowntime.Hosting.Protocol;
using ZeroDowntime.Hosting.Tests.Infrastructure;

namespace ZeroDowntime.Hosting.Tests.Unit.Lifecycle;

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

/// <summary>The host's lifetime, driven by the test: ApplicationStarted when the test says, StopApplication recorded.</summary>
internal sealed class FakeApplicationLifetime : IHostApplicationLifetime, IDisposable
{
    private readonly CancellationTokenSource _started = new();
    private readonly CancellationTokenSource _stopping = new();
    private readonly CancellationTokenSource _stopped = new();

    public TaskCompletionSource StopRequested { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public CancellationToken ApplicationStarted => _started.Token;

    public CancellationToken ApplicationStopping => _stopping.Token;

    public CancellationToken ApplicationStopped => _stopped.Token;

    public void Start() => _started.Cancel();

    public void StopApplication() => StopRequested.TrySetResult();

    public void BeginStopping() => _stopping.Cancel();

    public void Dispose()
    {
        _started.Dispose();
        _stopping.Dispose();
        _stopped.Dispose();
    }
}

/// <summary>
/// The real <see cref="HandoffCoordinator"/> in this process, with a fake lifetime and a fake clock, serving a real
/// handoff socket in a temporary directory (no listeners: Kestrel is not part of these tests). The test plays the
/// other process over real Unix sockets.
/// </summary>
internal sealed class InProcessCoordinator : IAsyncDisposable
{
    private readonly ServiceProvider _services;
    private readonly string _directory = Directory.CreateTempSubdirectory("zd-component-").FullName;
    private readonly int _exitCodeBefore = Environment.ExitCode;

    public InProcessCoordinator(TimeSpan? handoffTimeout = null, IEnumerable<IHandoffParticipant>? participants = null, string? notifySocketPath = null)
    {
        Options = new ZeroDowntimeOptions
        {
            SocketPath = System.IO.Path.Combine(_directory, "handoff.sock"),
            ApplicationId = "component-test",
            HandoffTimeout = handoffTimeout ?? TimeSpan.FromSeconds(30),
            DrainTimeout = TimeSpan.FromSeconds(5),
            IdleConnectionGracePeriod = TimeSpan.FromSeconds(1),
        };
        Options.Upgrade.Signal = ZeroDowntimeUpgradeSignal.None;
        _services = new ServiceCollection().AddMetrics().BuildServiceProvider();
        var options = Microsoft.Extensions.Options.Options.Create(Options);
        var registry = Registry = new ListenerRegistry(new RecordingLogger<ListenerRegistry>(), options);
        Gate = new AcceptGate();
        Coordinator = new HandoffCoordinator(options, registry, Gate, new ConnectionTracker(new RecordingLogger<ConnectionTracker>()),
            Lifetime, Application, participants ?? [], Logger, new ZeroDowntimeMetrics(_services.GetRequiredService<IMeterFactory>(), registry, Gate), Time,
            new NotifySocketClient(notifySocketPath));
    }

    public ZeroDowntimeOptions Options { get; }

    /// <summary>The meter factory of this process's metrics (the scope a <see cref="MeasurementRecorder"/> filters on).</summary>
    public IMeterFactory MeterFactory => _services.GetRequiredService<IMeterFactory>();

    public string SocketPath => Options.SocketPath!;

    public SignallingTimeProvider Time { get; } = new();

    public RecordingLogger<HandoffCoordinator> Logger { get; } = new();

    public FakeApplicationLifetime Application { get; } = new();

    public ZeroDowntimeLifetime Lifetime { get; } = new();

    public AcceptGate Gate { get; }

    /// <summary>The listeners (inherited ones land here; a test plays Kestrel by acquiring them).</summary>
    public ListenerRegistry Registry { get; }

    public HandoffCoordinator Coordinator { get; }

    /// <summary>Starts as the first process (nobody serves the path) and waits until it serves the handoff socket.</summary>
    public async Task StartAloneAsync()
    {
        await Coordinator.StartingAsync(CancellationToken.None);
        Application.Start();
        await Logger.WaitForAsync(e => e.EventId.Name == "ServingHandoffSocket", TimeSpan.FromSeconds(10));
    }

    /// <summary>Connects as a process of this uid and returns the channel (the clock is the test's real one).</summary>
    public async Task<HandoffChannel> ConnectAsync() =>
        await HandoffChannel.ConnectAsync(SocketPath, TimeSpan.FromSeconds(5), TimeProvider.System, CancellationToken.None);

    /// <summary>
    /// Does what a committed successor does last: binds a socket at a temporary name and renames it over the handoff
    /// socket's path. Dispose the returned socket when done.
    /// </summary>
    public Socket ServePathAsSuccessor()
    {
        string temporary = SocketPath + ".successor";
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        socket.Bind(new UnixDomainSocketEndPoint(temporary));
        socket.Listen(1);
        File.Move(temporary, SocketPath, overwrite: true);
        return socket;
    }

    /// <summary>Greets as a successor and reads the welcome.</summary>
    public async Task<HandoffChannel> GreetAsync()
    {
        var channel = await ConnectAsync();
        channel.Send(new HelloMessage(HandoffProtocol.Version, Environment.ProcessId, Options.ApplicationId!));
        Assert.IsType<WelcomeMessage>(await channel.ReadAsync(TimeSpan.FromSeconds(10), CancellationToken.None));
        return channel;
    }

    public async ValueTask DisposeAsync()
    {
        await Coordinator.StopAsync(CancellationToken.None);
        await Coordinator.StoppedAsync(CancellationToken.None);
        Coordinator.Dispose();
        Lifetime.Dispose();
        Application.Dispose();
        Gate.Dispose();
        await _services.DisposeAsync();
        Directory.Delete(_directory, recursive: true);
        ProcessExitHooks.PendingHandoff = null;
        Environment.ExitCode = _exitCodeBefore; // a successor that gives up sets 77: never for the test host
    }
}

/// <summary>A predecessor played by the test: a listening handoff socket whose every answer the test writes.</summary>
internal sealed class ScriptedPredecessor : IDisposable
{
    private readonly Socket _listener = new(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);

    public ScriptedPredecessor(string path)
    {
        _listener.Bind(new UnixDomainSocketEndPoint(path));
        _listener.Listen(4);
    }

    public async Task<HandoffChannel> AcceptAsync()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        return new HandoffChannel(await _listener.AcceptAsync(cts.Token));
    }

    /// <summary>Accepts the successor, reads its Hello and welcomes it with no listeners.</summary>
    public async Task<HandoffChannel> WelcomeAsync()
    {
        var channel = await AcceptAsync();
        var hello = Assert.IsType<HelloMessage>(await channel.ReadAsync(TimeSpan.FromSeconds(10), CancellationToken.None));
        channel.Send(new WelcomeMessage(hello.Version, Environment.ProcessId, [], 1, 0));
        return channel;
    }

    public void Dispose() => _listener.Dispose();
}
