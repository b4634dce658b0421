namespace ZeroDowntime.Hosting;

/// <summary>
/// The process exit codes by which a process that could not start or take over says why. A process that handed
/// over and drained exits with 0.
/// </summary>
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
}
