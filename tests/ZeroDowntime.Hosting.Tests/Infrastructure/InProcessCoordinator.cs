using System.Diagnostics.Metrics;
using System.Net.Sockets;
using Microsoft.Extensions.DependencyInjection;
using ZeroDowntime.Hosting.Diagnostics;
using ZeroDowntime.Hosting.Drain;
using ZeroDowntime.Hosting.Handoff;
using ZeroDowntime.Hosting.Listeners;
using ZeroDowntime.Hosting.Protocol;
using ZeroDowntime.Hosting.Systemd;

namespace ZeroDowntime.Hosting.Tests.Infrastructure;

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

    public InProcessCoordinator(TimeSpan? handoffTimeout = null, IEnumerable<IHandoffParticipant>? participants = null, string? notifySocketPath = null,
        Func<InProcessCoordinator, ZeroDowntime.Hosting.Warmup.TakeoverPreparation>? preparation = null, bool watchProbation = false)
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
        ProbationWatch = watchProbation ? new ZeroDowntime.Hosting.Probation.ProbationWatch(_services) : null;
        Coordinator = new HandoffCoordinator(options, registry, Gate, new ConnectionTracker(new RecordingLogger<ConnectionTracker>()),
            Lifetime, Application, participants ?? [], new RecordingLoggerFactory(Logger), new ZeroDowntimeMetrics(_services.GetRequiredService<IMeterFactory>(), registry, Gate), Time,
            new NotifySocketClient(notifySocketPath), preparation?.Invoke(this), probationWatch: ProbationWatch);
    }

    /// <summary>
    /// What the request pipeline records into during probation (the 5xx ratio); null unless asked for, so that the
    /// monitors run with nothing recorded, as in a process without the library's middleware.
    /// </summary>
    public ZeroDowntime.Hosting.Probation.ProbationWatch? ProbationWatch { get; }

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
        Environment.ExitCode = _exitCodeBefore; // a successor that gives up sets 77: never for the test host
    }
}
