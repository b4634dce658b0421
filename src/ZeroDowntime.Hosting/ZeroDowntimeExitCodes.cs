
namespace ZeroDowntime.Hosting;

/// <summary>
/// The process exit codes by which a process that could not start or take over says why. A process that handed
/// over and drained exits with 0.
/// </summary>
/// <remarks>
/// The code holds whatever <c>Main</c> does: when the library's start-up failure is caught by <c>Main</c> (which
/// then returns normally or returns an <c>int</c>), or the host stops with one of these codes and <c>Main</c> returns
/// another, the library sets the code again as the process exits (an <see cref="AppDomain.ProcessExit"/> handler, which
/// runs after <c>Main</c> has returned and also within <see cref="Environment.Exit(int)"/>). Only a process that ends
/// without exiting normally (<see cref="Environment.FailFast(string)"/>, a signal, an unhandled exception of the app's
/// own) exits otherwise.
/// </remarks>
public static class ZeroDowntimeExitCodes
{
    /// <summary>The running process refused this one (another handoff is in progress, a different application
    /// uses the socket, or it is not ready yet). Nothing changed; try again later.</summary>
    public const int RefusedByPredecessor = 75;

    /// <summary>The running process speaks another version of the handoff protocol. Nothing changed.</summary>
    public const int ProtocolVersionMismatch = 76;

    /// <summary>The running process gave the handoff up (this process was not ready within
    /// <see cref="ZeroDowntimeOptions.HandoffTimeout"/>, or was lost after the commit) and serves alone.</summary>
    public const int HandoffAbandoned = 77;

    /// <summary>The <c>ZeroDowntime</c> configuration is invalid, or the socket path is unsafe.</summary>
    public const int InvalidConfiguration = 78;

    /// <summary>An endpoint this process must bind is in use by another process that did not hand it over: a copy
    /// started without handoffs (or with another <see cref="ZeroDowntimeOptions.SocketPath"/>), or another program.
    /// Nothing changed; stop that process, or give both the same socket path.</summary>
    public const int AddressInUse = 79;

    /// <summary>This process would have served none of the endpoints that the running process handed it: it read
    /// another configuration (another content root, so no <c>appsettings.json</c>; another environment; no
    /// <c>Urls</c>), and taking over would have closed every port the running process serves. It did not take over;
    /// the running process serves on. Start the new version so that it reads its own configuration (in its folder, or
    /// with <c>--contentRoot</c>), or allow it with <see cref="ZeroDowntimeOptions.AllowReplacingAllEndpoints"/>.</summary>
    public const int NoEndpointKept = 80;

    /// <summary>This release was rolled back during its probation (<c>ZeroDowntime:Probation</c>): by
    /// <c>zerodowntime rollback</c>, the rollback signal, or its own 5xx ratio or health checks. Its predecessor serves
    /// again; this process drained what it had accepted and exited.</summary>
    public const int RolledBack = 81;
}
