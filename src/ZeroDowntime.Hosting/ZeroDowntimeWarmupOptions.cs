
namespace ZeroDowntime.Hosting;

/// <summary>
/// The requests that a process sends through its own Kestrel before it takes over (before it tells its predecessor
/// Ready, and before a first start accepts), so that its first real clients do not pay for the JIT compiling Kestrel's
/// parser, the middleware, routing and the endpoints (section <c>ZeroDowntime:Warmup</c>). They go over connections
/// that Kestrel accepts on each of its endpoints (HTTP/1.1 and HTTP/2, TLS where the endpoint has it) but that come
/// from inside the process, so no other process sees them, and each carries <see cref="IZeroDowntimeWarmupFeature"/>.
/// Nothing is sent unless <see cref="Requests"/> lists something: configure only safe, idempotent requests.
/// </summary>
public sealed class ZeroDowntimeWarmupOptions
{
    /// <summary>Whether the warm-up runs: false turns it off without removing <see cref="Requests"/> (to measure it).</summary>
    /// <remarks>Defaults to <see langword="true"/>.</remarks>
    public bool Enabled { get; set; } = true;

    /// <summary>
    /// The requests of one round, each written <c>METHOD /path</c>, optionally followed by header lines
    /// (<c>"GET /api/items\nAccept: application/json"</c>). No body is sent.
    /// </summary>
    /// <remarks>Defaults to empty: no warm-up.</remarks>
    public IList<string> Requests { get; set; } = [];

    /// <summary>
    /// How many rounds of <see cref="Requests"/> are sent on each endpoint and protocol. The runtime recompiles a method
    /// optimized (tier 1) after 30 calls, so the default reaches it.
    /// </summary>
    /// <remarks>Defaults to 32. From 1 to 100,000.</remarks>
    public int Iterations { get; set; } = 32;

    /// <summary>
    /// How many times the <see cref="Iterations"/> rounds are sent. The runtime counts a method's calls towards its
    /// optimized recompilation only after 100 ms without new compilations, so the calls of the first pass, which
    /// compiles the request path, count for nothing, and the recompilations happen after Ready. Each further pass
    /// starts after a 150 ms pause and brings the request path to the optimized tier; after the last one the warm-up
    /// waits until the runtime compiled nothing for 100 ms (at most 1 s). Nothing more under Native AOT.
    /// </summary>
    /// <remarks>Defaults to 1. From 1 to 5. Each further pass adds its rounds and about 250 ms to the time to Ready.</remarks>
    public int Passes { get; set; } = 1;

    /// <summary>
    /// The least time the warm-up lasts: after <see cref="Iterations"/> rounds, more rounds follow until it has passed.
    /// </summary>
    /// <remarks>Defaults to zero (only the rounds). Must be less than <see cref="ZeroDowntimeOptions.HandoffTimeout"/>.</remarks>
    public TimeSpan Duration { get; set; } = TimeSpan.Zero;

    /// <summary>How many warm-up connections send requests at once, on each endpoint and protocol.</summary>
    /// <remarks>Defaults to 2. From 1 to 64.</remarks>
    public int Concurrency { get; set; } = 2;

    /// <summary>
    /// Whether a failed warm-up request (an answer outside 2xx and 3xx, or an exception) stops the handoff: the process
    /// tells its predecessor why and stops with exit code <see cref="ZeroDowntimeExitCodes.HandoffAbandoned"/>, and the
    /// predecessor serves on. When false a failure is logged and the handoff goes on. A first start is never stopped by
    /// the warm-up: it logs the failure and serves.
    /// </summary>
    /// <remarks>Defaults to <see langword="false"/>.</remarks>
    public bool Required { get; set; }

    /// <summary>
    /// Whether each process records the methods it JIT-compiles into <c>&lt;SocketPath&gt;.jitprofile</c> (written by
    /// the runtime when the process exits) and compiles those of the last profile ahead, on a background thread, while
    /// it starts (the runtime's multi-core JIT, <see cref="System.Runtime.ProfileOptimization"/>). A successor thus
    /// starts with what earlier generations compiled over their whole life, including what no warm-up request runs
    /// (the handoff's own commit and the drain). Independent of <see cref="Enabled"/> and <see cref="Requests"/>.
    /// Nothing happens under Native AOT, nor on one CPU (the runtime does not use it there).
    /// </summary>
    /// <remarks>Defaults to <see langword="true"/>.</remarks>
    public bool JitProfile { get; set; } = true;

    /// <summary>The host name of the warm-up requests: their <c>Host</c> header and, on a TLS endpoint, their SNI.</summary>
    /// <remarks>Defaults to <c>localhost</c>.</remarks>
    public string Host { get; set; } = "localhost";
}
