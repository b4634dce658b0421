
namespace ZeroDowntime.Hosting;

/// <summary>
/// Options of <see cref="ZeroDowntimeWebHostBuilderExtensions.UseZeroDowntime(Microsoft.AspNetCore.Hosting.IWebHostBuilder)"/>,
/// bound from the configuration section <c>ZeroDowntime</c> and validated when the host starts.
/// </summary>
public sealed class ZeroDowntimeOptions
{
    /// <summary>The configuration section these options are bound from.</summary>
    public const string SectionName = "ZeroDowntime";

    /// <summary>
    /// Whether handoffs are enabled. When false the app runs on plain Kestrel, and none of the library's other
    /// behaviour runs either: no drain on SIGTERM (<see cref="DrainOnShutdown"/>), no <see cref="ShutdownDelay"/>, no
    /// 503 from the readiness check, no upgrade signal and no <c>NOTIFY_SOCKET</c> message (a systemd unit of
    /// <c>Type=notify</c> then never sees <c>READY=1</c>).
    /// </summary>
    /// <remarks>
    /// Defaults to <see langword="true"/>. Read once, when <c>UseZeroDowntime()</c> runs (it decides what is
    /// registered): a value from a configuration source added after that call does not count (a warning at start says
    /// so); set it in <c>appsettings.json</c>, an environment variable or the command line, or in the configure callback.
    /// </remarks>
    public bool Enabled { get; set; } = true;

    /// <summary>
    /// The path of the Unix domain socket on which the running process hands its listeners over. Every version of
    /// one application must use the same path; two applications must never share one.
    /// </summary>
    /// <remarks>
    /// Defaults to <c>$XDG_RUNTIME_DIR/zerodowntime/{ApplicationId}.sock</c>, or, when <c>XDG_RUNTIME_DIR</c> is not set
    /// (or not absolute), <c>zerodowntime-{uid}/{ApplicationId}.sock</c> under <see cref="Path.GetTempPath"/>
    /// (<c>$TMPDIR</c>, else <c>/tmp/</c>); in the file name every character outside <c>[A-Za-z0-9._-]</c> is replaced by
    /// <c>_</c>, and a name too long for <c>sun_path</c> is shortened to a prefix and a hash. Both variables are read from
    /// this process's environment, so every version of the app (and <c>zerodowntime --app</c>) must see the same ones.
    /// Must be absolute and at most 107 bytes long (the size of <c>sun_path</c>, see unix(7)).
    /// </remarks>
    public string? SocketPath { get; set; }

    /// <summary>
    /// The name that a successor and its predecessor must share for a handoff to happen. It protects against two
    /// different applications that were configured with the same <see cref="SocketPath"/> by mistake.
    /// </summary>
    /// <remarks>Defaults to the host's <c>IHostEnvironment.ApplicationName</c>.</remarks>
    public string? ApplicationId { get; set; }

    /// <summary>
    /// The longest a whole handoff may take, from the successor's greeting to its readiness. Past it the running
    /// process gives the handoff up, keeps serving and tells the successor to stop.
    /// </summary>
    /// <remarks>Defaults to one minute.</remarks>
    public TimeSpan HandoffTimeout { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>
    /// How long the old process may take, once it has handed over, to finish its in-flight requests. Connections
    /// still open then are aborted. It is honoured even when it exceeds the host's <c>ShutdownTimeout</c>, because
    /// the drain runs before the host stops.
    /// </summary>
    /// <remarks>Defaults to 30 seconds.</remarks>
    public TimeSpan DrainTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// How long the old process leaves an idle keep-alive connection open after it has handed over, so that a
    /// client's next request is still answered (with <c>Connection: close</c>) instead of racing a close.
    /// </summary>
    /// <remarks>Defaults to 2 seconds. Must not exceed <see cref="DrainTimeout"/>.</remarks>
    public TimeSpan IdleConnectionGracePeriod { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>
    /// Whether a plain shutdown (SIGTERM or <c>StopApplication</c> with no successor) drains as after a handoff:
    /// the listeners close (the kernel refuses new connections), every HTTP/1.x response says <c>Connection: close</c>,
    /// HTTP/2 connections get GOAWAY, idle connections are closed after <see cref="IdleConnectionGracePeriod"/>, and
    /// connections still open at <see cref="DrainTimeout"/> are aborted. When false, Kestrel's own stop runs, which
    /// closes idle keep-alive connections at once (a client's next request races the close).
    /// </summary>
    /// <remarks>Defaults to <see langword="true"/>. A successor still waiting for its commit never runs this drain.</remarks>
    public bool DrainOnShutdown { get; set; } = true;

    /// <summary>
    /// How long a plain shutdown keeps accepting and serving before its drain, while the <c>zerodowntime</c> health
    /// check reports Unhealthy, so that a load balancer or Kubernetes takes this instance out of rotation first (what a
    /// hand-written <c>preStop: sleep</c> does). A second SIGTERM skips what is left of it.
    /// </summary>
    /// <remarks>
    /// Defaults to zero. At most 5 minutes. A plain shutdown then takes up to <c>ShutdownDelay</c> +
    /// <see cref="DrainTimeout"/> (the drain runs before the host stops, so <c>HostOptions.ShutdownTimeout</c> does not
    /// cut it short): give a process manager at least that long, for example Kubernetes'
    /// <c>terminationGracePeriodSeconds</c>, whose default of 30 s is less than the default <see cref="DrainTimeout"/>.
    /// </remarks>
    public TimeSpan ShutdownDelay { get; set; } = TimeSpan.Zero;

    /// <summary>
    /// Whether a successor may take over while it serves none of the endpoints its predecessor hands it (it then closes
    /// them all and serves only its own). Off, such a successor does not take over: it stops before it says Ready, with
    /// exit code <see cref="ZeroDowntimeExitCodes.NoEndpointKept"/> and one log line naming both sets of endpoints and
    /// the content root and environment it read its configuration from, and the running process serves on. Keeping
    /// some endpoints while dropping or adding others is always allowed (each dropped one is logged).
    /// </summary>
    /// <remarks>
    /// Defaults to <see langword="false"/>: dropping every port is almost always a successor that read another
    /// configuration (started from another directory, so another content root and no <c>appsettings.json</c>; another
    /// environment; a missing <c>Urls</c>), and taking over would refuse every connection to the old ports. Set it in
    /// the new version's configuration when it really moves every endpoint.
    /// </remarks>
    public bool AllowReplacingAllEndpoints { get; set; }

    /// <summary>
    /// Whether the drain ends long-lived exchanges itself, so that their clients move to the successor at once instead
    /// of holding this process until <see cref="DrainTimeout"/> and then seeing an abort: WebSockets accepted through
    /// ASP.NET Core get a close frame with 1001 Going Away (aborted if the peer does not answer within 5 seconds), a
    /// server-sent event response (a GET with <c>Accept: text/event-stream</c>) sees its <c>RequestAborted</c> cancelled
    /// so that it ends cleanly, and SignalR connections are closed as SignalR closes them itself, with a reconnect allowed
    /// (after <see cref="IdleConnectionGracePeriod"/>, once idle keep-alive connections are closed).
    /// </summary>
    /// <remarks>
    /// Defaults to <see langword="true"/>. Turn it off to end them yourself from <see cref="IZeroDowntimeLifetime.Draining"/>.
    /// </remarks>
    public bool CloseLongLivedConnections { get; set; } = true;

    /// <summary>
    /// How many generations may drain at once beside the one that serves. When a handoff makes one more begin to drain,
    /// the oldest draining generation ends its drain at once: it aborts the connections it still holds (counted in
    /// <c>zerodowntime.drain.aborted_connections</c>) and exits. With 2, a third handoff while two older generations
    /// still drain ends the oldest one's drain. Only drains after a handoff count (a plain shutdown has no successor).
    /// </summary>
    /// <remarks>
    /// Defaults to 0: no bound, every generation drains until its connections end or <see cref="DrainTimeout"/>, as
    /// before this option existed; a bound aborts connections, so it is the operator's choice. Allowed: 0 to 1000.
    /// Each draining process keeps a small state file beside the handoff socket (removed when it exits), from which
    /// the others count the draining generations and <c>zerodowntime status</c> lists them.
    /// </remarks>
    public int MaxDrainingGenerations { get; set; }

    /// <summary>How this process starts its successor on a signal or on <c>zerodowntime upgrade</c>.</summary>
    public ZeroDowntimeUpgradeOptions Upgrade { get; set; } = new();

    /// <summary>
    /// The requests this process sends through its own Kestrel before it takes over or first accepts (section
    /// <c>ZeroDowntime:Warmup</c>), so that its first real clients do not wait for the JIT.
    /// </summary>
    public ZeroDowntimeWarmupOptions Warmup { get; set; } = new();

    /// <summary>The section <c>ZeroDowntime:Probation</c>: how long a committed release stays revocable (read from configuration only).</summary>
    internal Probation.ProbationSettings Probation { get; set; } = Hosting.Probation.ProbationSettings.Default;

    /// <summary>
    /// Values of the section that could not be parsed, one message each naming its key; the validator reports them with
    /// every other problem. Filled by the binder, never by an app.
    /// </summary>
    internal List<string> BindingErrors { get; } = [];

    /// <summary>Where this process read its configuration from (null where options are made by hand, as in tests).</summary>
    internal ConfigurationOrigin? Origin { get; set; }
}
