
namespace ZeroDowntime.Hosting;

/// <summary>
/// A resource other than the listening sockets that changes hands with them, such as a log file. Register
/// implementations as singletons of this interface; the library calls them at the fixed points of a handoff.
/// Calls are awaited but bounded (5 s each): a participant that throws is logged and the handoff goes on without it.
/// A <see cref="ReleaseAsync"/> that overruns its 5 s does not let the commit go ahead while it still runs: the old
/// process waits until it returns, acquires again what it released, keeps serving and abandons the handoff (the
/// successor exits with <see cref="ZeroDowntimeExitCodes.HandoffAbandoned"/>), so that a successor's
/// <see cref="AcquireAsync"/> never overlaps a predecessor's release.
/// </summary>
public interface IHandoffParticipant
{
    /// <summary>
    /// Called on a process when it knows it owns the resource: at first start (no predecessor), once its
    /// predecessor has released (after <see cref="ReleaseAsync"/> ran there), or when the predecessor vanished
    /// during the handoff.
    /// </summary>
    Task AcquireAsync(HandoffAcquireReason reason, CancellationToken cancellationToken);

    /// <summary>
    /// Called on the old process at the commit point (the successor is ready; this process has stopped accepting),
    /// before the successor is told. The successor's <see cref="AcquireAsync"/> runs only after this returns.
    /// </summary>
    Task ReleaseAsync(CancellationToken cancellationToken);

    /// <summary>
    /// Called on a successor that received the listeners but will never own them: its predecessor abandoned the
    /// handoff (this process was too slow) or never answered its readiness. A successor whose start-up throws is not
    /// called here (the host never started): release what you hold when the service provider disposes you.
    /// </summary>
    Task AbandonAsync(string reason, CancellationToken cancellationToken);
}

/// <summary>Why a process acquires the handed-over resources.</summary>
public enum HandoffAcquireReason
{
    /// <summary>No predecessor was running.</summary>
    FirstStart,

    /// <summary>The predecessor released the resources at the commit point.</summary>
    PredecessorReleased,

    /// <summary>The predecessor disappeared during the handoff, or never answered within the handoff timeout.</summary>
    PredecessorVanished,

    /// <summary>
    /// This process had released the resources at the commit point and the successor was lost after it heard
    /// Committed: the successor may have acquired and used them, so this process owns them again but must not assume
    /// they are as it left them (a log file handoff keeps writing to its archive name).
    /// </summary>
    Reclaimed,

    /// <summary>
    /// This process had released the resources at the commit point, but the commit never reached the successor (a
    /// participant overran its release, or the connection broke before Committed was sent): no successor ever acquired
    /// them, so this process takes them back exactly as it released them (a log file handoff moves back to the
    /// original name).
    /// </summary>
    NotCommitted,

    /// <summary>
    /// This process had handed over and stood by on probation; the successor was rolled back and released the
    /// resources again before this process acquires them (a log file handoff moves back to the original name).
    /// </summary>
    RolledBack,
}
