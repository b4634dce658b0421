
namespace ZeroDowntime.Hosting.Handoff;

/// <summary>The running process's side of one handoff, one per greeting successor: the third machine of docs/architecture.md.</summary>
internal enum SuccessorSessionState
{
    /// <summary>A valid Hello arrived; the checks (version, application, role, slot) decide.</summary>
    Greeting,

    /// <summary>Refused with a reason; nothing was sent.</summary>
    /// <summary>The greeting is refused: version, application, a busy slot, or this process no longer serves alone.</summary>
    Refused,


    /// <summary>The listeners were sent; waiting for Ready within HandoffTimeout.</summary>
    Negotiating,

    /// <summary>The successor failed, vanished, broke the protocol or was not ready in time: this process serves on.</summary>
    Failed,

    /// <summary>Ready: the gate is closed and the participants release, before the successor hears Committed.</summary>
    Committing,

    /// <summary>A plain shutdown began first: the successor is told Abandoned; this process hands over to nobody.</summary>
    Cancelled,

    /// <summary>A participant overran its release: nothing is committed, this process serves again.</summary>
    Abandoned,

    /// <summary>Committed: draining, watching the successor's heartbeats.</summary>
    Draining,

    /// <summary>The successor sent Release: finish the drain and never resume.</summary>
    Released,

    /// <summary>The successor was lost after the commit: Revoked sent, this process serves again.</summary>
    Resumed,

    /// <summary>The drain is over and the successor confirmed that it serves: this process exits 0.</summary>
    Completed,

    /// <summary>Committed with probation: draining, and standing by until the window ends.</summary>
    DrainingOnProbation,

    /// <summary>Drained, the window still open: listener copies kept, gate closed, heartbeats watched.</summary>
    OnProbation,

    /// <summary>The successor asked for a rollback: the gate is open again, RollbackAccepted sent, waiting for HandedBack.</summary>
    RollingBack,

    /// <summary>The successor handed back: this process owns everything again and serves the handoff socket.</summary>
    RolledBack,
}

/// <summary>What moves <see cref="SuccessorSessionState"/>.</summary>
internal enum SuccessorSessionTrigger
{
    /// <summary>The greeting is refused: version, application, a busy slot, or this process no longer serves alone.</summary>
    Refused,

    /// <summary>The Welcome went out with the listeners' descriptors.</summary>
    ListenersSent,

    /// <summary>The successor sent Failed, closed the connection, broke the protocol, or could not be sent the Welcome.</summary>
    SuccessorFailed,

    /// <summary>No Ready within HandoffTimeout: the successor is told Abandoned.</summary>
    ReadyTimedOut,

    /// <summary>Ready, and the role allowed the commit: the gate closes and the participants release.</summary>
    Ready,

    /// <summary>Ready came after a plain shutdown began: the successor is told Abandoned.</summary>
    ShutdownWon,

    /// <summary>A participant overran its release: no commit, this process serves again.</summary>
    ParticipantOverran,

    /// <summary>Committed went out: the drain begins.</summary>
    CommittedSent,

    /// <summary>The successor sent Release: finish the drain, never resume.</summary>
    SuccessorReleased,

    /// <summary>No heartbeat for 5 s, end of stream without Release, or Failed after the commit: serve again.</summary>
    SuccessorLost,

    /// <summary>The drain ended and the successor confirmed that it serves: exit (or stand by, on probation).</summary>
    Drained,

    /// <summary>Committed went out and both sides announced probation: drain, then stand by until the window ends.</summary>
    CommittedOnProbation,

    /// <summary>The window ended (or this process stops) before a rollback was accepted: ProbationEnded sent.</summary>
    ProbationEnded,

    /// <summary>RollbackRequest within the window: cancel the drain, revive dead listeners, open the gate, send RollbackAccepted.</summary>
    RollbackRequested,

    /// <summary>HandedBack: acquire, MAINPID, fd store, serve the handoff socket.</summary>
    HandedBack,
}
