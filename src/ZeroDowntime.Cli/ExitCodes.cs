namespace ZeroDowntime.Cli;

/// <summary>The exit codes of <c>zerodowntime status</c>, <c>upgrade</c>, <c>rollback</c> and <c>run</c> (README, <c>--help</c>).</summary>
internal static class ExitCodes
{
    /// <summary>
    /// status: a process serves. upgrade: the successor committed and serves (with <c>--wait-probation</c>: and its
    /// probation ended without a rollback). rollback: rolled back, the old generation serves again.
    /// </summary>
    public const int Ok = 0;

    /// <summary>upgrade: the successor failed (its exit code and last lines are printed) or the handoff was abandoned.</summary>
    public const int UpgradeFailed = 1;

    /// <summary>
    /// rollback: the rollback did not complete (the old process vanished or did not answer within 5 s and was
    /// released); the release serves on with no way back. The same value as <see cref="UpgradeFailed"/>.
    /// </summary>
    public const int RollbackIncomplete = 1;

    /// <summary>Bad usage: unknown verb or option, missing value.</summary>
    public const int Usage = 2;

    /// <summary>Nobody serves the socket: no file, a stale file, or the process is shutting down.</summary>
    public const int NoServer = 3;

    /// <summary>
    /// upgrade: refused, another upgrade or handoff runs (or the process is draining or shutting down). rollback:
    /// refused, no generation on probation, a rollback or handoff in progress, or the process is shutting down.
    /// </summary>
    public const int Refused = 4;

    /// <summary>No answer within the deadline (upgrade: <c>--timeout</c>); the upgrade may still be running.</summary>
    public const int TimedOut = 5;

    /// <summary>The process serving the socket runs as another user: nothing was asked.</summary>
    public const int Untrusted = 6;

    /// <summary>
    /// The process speaks no control requests (an older build, protocol v1), or sent garbage. rollback: its build has
    /// no probation (its status came without the probation frame); nothing was asked.
    /// </summary>
    public const int Protocol = 7;

    /// <summary>
    /// run: the app crashed more often than <c>--max-restarts</c> within <c>--restart-window</c>; the supervisor closed
    /// the listening sockets it kept, so clients are refused at once.
    /// </summary>
    public const int RestartLimit = 8;

    /// <summary>upgrade --wait-probation: the release was rolled back during its probation; the old process serves.</summary>
    public const int RolledBackDuringProbation = 9;

    /// <summary>
    /// upgrade --wait-probation: committed, but no probation ran to its end (none asked for, a build without probation
    /// on either side, or the old process ended during the window); the new release serves with no way back.
    /// </summary>
    public const int NoProbationCompleted = 10;

    /// <summary>run: the command could not be started (as a shell says for a command not found).</summary>
    public const int CannotStart = 127;
}
