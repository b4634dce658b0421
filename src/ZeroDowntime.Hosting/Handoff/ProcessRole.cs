
namespace ZeroDowntime.Hosting.Handoff;

/// <summary>The part this process plays for its listeners: the first of the three machines of docs/architecture.md.</summary>
internal enum ProcessRole
{
    /// <summary>Before the predecessor question is settled.</summary>
    Starting,

    /// <summary>Has the predecessor's listeners, not committed yet: shares them with a live process.</summary>
    Successor,

    /// <summary>The one server of the listeners (first start, committed, predecessor vanished, or serving again).</summary>
    Owner,

    /// <summary>
    /// The owner, with a successor's session in its one handoff slot: listeners sent and waiting for Ready, or serving
    /// again after a handoff that did not complete until that session has finished.
    /// </summary>
    HandingOver,

    /// <summary>Committed to a successor: no longer accepts, drains.</summary>
    HandedOver,

    /// <summary>The sole server on a plain shutdown: its delay, then its drain. Hands over to nobody.</summary>
    ShuttingDown,

    /// <summary>An abandoned or revoked successor on its way out: it touches nothing shared.</summary>
    Leaving,

    /// <summary>
    /// The owner on probation has asked the predecessor that stands by to serve again: no greeting takes the slot, and a
    /// plain shutdown gives the rollback up.
    /// </summary>
    HandingBack,
}

/// <summary>What moves <see cref="ProcessRole"/>.</summary>
internal enum RoleTrigger
{
    /// <summary>A predecessor welcomed this process with its listeners.</summary>
    PredecessorFound,

    /// <summary>First start: no predecessor, and the host has started (Kestrel bound every endpoint).</summary>
    StartedAlone,

    /// <summary>The predecessor committed, or vanished during the handoff.</summary>
    TookOver,

    /// <summary>The handoff was abandoned, or this process stops before the commit.</summary>
    Withdrew,

    /// <summary>A successor's valid greeting took the handoff slot.</summary>
    SuccessorGreeted,

    /// <summary>
    /// The session ended without a handover (the successor failed, vanished or timed out before Ready, or the process
    /// serves again after it): the slot is free.
    /// </summary>
    HandoffEnded,

    /// <summary>The successor is ready: the gate closes, the resources are released, Committed follows.</summary>
    CommitStarted,

    /// <summary>
    /// The handoff did not complete after all (a participant overran at the commit, or the successor was lost after
    /// it): this process serves again, and its session keeps the slot until it has finished.
    /// </summary>
    Resumed,

    /// <summary>SIGTERM or StopApplication while this process serves alone (with DrainOnShutdown).</summary>
    ShutdownBegan,

    /// <summary>The predecessor revoked this process after its commit (it had been taken for lost).</summary>
    Revoked,

    /// <summary>On probation, a rollback was asked for (the tool, the signal, or the process's own monitors): RollbackRequest sent.</summary>
    RollbackBegan,

    /// <summary>The predecessor could not take the service back (its window ended, it exited, it did not answer): serve on.</summary>
    RollbackRefused,

    /// <summary>The predecessor reopened its gate: this process closed its own, released its participants and sent HandedBack.</summary>
    HandedBack,

    /// <summary>The successor released this process while it rolled back: it closes its gate and copies again and drains.</summary>
    RollbackWithdrawn,
}

/// <summary>The arrows of <see cref="ProcessRole"/>.</summary>
internal static class ProcessRoles
{
    public static readonly TransitionTable<ProcessRole, RoleTrigger> Table = new(ProcessRole.Starting,
        (ProcessRole.Starting, RoleTrigger.PredecessorFound, ProcessRole.Successor),
        (ProcessRole.Starting, RoleTrigger.StartedAlone, ProcessRole.Owner),
        (ProcessRole.Successor, RoleTrigger.TookOver, ProcessRole.Owner),
        (ProcessRole.Successor, RoleTrigger.Withdrew, ProcessRole.Leaving),
        (ProcessRole.Owner, RoleTrigger.SuccessorGreeted, ProcessRole.HandingOver),
        (ProcessRole.HandingOver, RoleTrigger.HandoffEnded, ProcessRole.Owner),
        (ProcessRole.HandingOver, RoleTrigger.CommitStarted, ProcessRole.HandedOver),
        (ProcessRole.HandedOver, RoleTrigger.Resumed, ProcessRole.HandingOver),
        (ProcessRole.Owner, RoleTrigger.ShutdownBegan, ProcessRole.ShuttingDown),
        (ProcessRole.HandingOver, RoleTrigger.ShutdownBegan, ProcessRole.ShuttingDown),
        (ProcessRole.Owner, RoleTrigger.Revoked, ProcessRole.Leaving),
        (ProcessRole.HandingOver, RoleTrigger.Revoked, ProcessRole.Leaving),
        (ProcessRole.ShuttingDown, RoleTrigger.Revoked, ProcessRole.Leaving),
        (ProcessRole.HandedOver, RoleTrigger.Revoked, ProcessRole.Leaving),
        (ProcessRole.Owner, RoleTrigger.RollbackBegan, ProcessRole.HandingBack),
        (ProcessRole.HandingBack, RoleTrigger.RollbackRefused, ProcessRole.Owner),
        (ProcessRole.HandingBack, RoleTrigger.HandedBack, ProcessRole.Leaving),
        (ProcessRole.HandingBack, RoleTrigger.ShutdownBegan, ProcessRole.ShuttingDown),
        (ProcessRole.HandingBack, RoleTrigger.Revoked, ProcessRole.Leaving),
        (ProcessRole.HandingOver, RoleTrigger.RollbackWithdrawn, ProcessRole.HandedOver));
}
