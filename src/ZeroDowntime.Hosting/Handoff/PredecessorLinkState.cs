
namespace ZeroDowntime.Hosting.Handoff;

/// <summary>The new process's side of one handoff: the second machine of docs/architecture.md.</summary>
internal enum PredecessorLinkState
{
    /// <summary>Looking for a predecessor on the handoff socket (StartingAsync).</summary>
    Probing,

    /// <summary>Refused by the process on the socket, or refusing it (another uid): start-up fails.</summary>
    Refused,

    /// <summary>No predecessor, or it has exited: this process serves alone and watches nobody.</summary>
    Alone,

    /// <summary>Has the listeners (adopted by key); the host starts on them with its gate closed.</summary>
    TakingOver,

    /// <summary>Started, gate open, Ready sent: accepts beside the predecessor until it commits.</summary>
    AwaitingCommit,

    /// <summary>Committed: the server, heart-beating to the predecessor while that one drains.</summary>
    Owner,

    /// <summary>This process has told its draining predecessor to finish and never resume (Release).</summary>
    Released,

    /// <summary>Abandoned before the commit, or revoked after it: drains what it accepted and exits 77.</summary>
    Abandoned,

    /// <summary>Stopped or failed before the commit; the predecessor was told (Failed) and serves on.</summary>
    Stopped,

    /// <summary>Committed with probation: the owner, watching itself; the predecessor stands by until its window ends.</summary>
    OnProbation,

    /// <summary>RollbackRequest sent: waiting for the predecessor to reopen its gate (RollbackAccepted).</summary>
    RollingBack,

    /// <summary>Gate closed, participants released, HandedBack sent: drains and exits 81.</summary>
    HandedBack,
}

/// <summary>What moves <see cref="PredecessorLinkState"/>.</summary>
internal enum PredecessorLinkTrigger
{
    /// <summary>No socket file, or a stale one (ECONNREFUSED): a first start.</summary>
    NoPredecessor,

    /// <summary>The running process just handed over to another (retry briefly), or speaks an older version (greet in it).</summary>
    AskAgain,

    /// <summary>Refused (busy, application, version), or the peer runs as another uid (exits 75, 76 or 78).</summary>
    Refused,

    /// <summary>A Welcome with as many descriptors as listeners.</summary>
    Welcomed,

    /// <summary>Start-up threw, or the process exits before the commit: Failed is sent as last words.</summary>
    Failed,

    /// <summary>The host began to stop (SIGTERM) before the commit: Failed is sent at once, the gate closes.</summary>
    HostStopping,

    /// <summary>An Abandoned was waiting when the host had started: exit 77 without accepting anything.</summary>
    AbandonedWhileStarting,

    /// <summary>The host has started: the gate opens and Ready is sent.</summary>
    ReadySent,

    /// <summary>The predecessor committed: acquire, heartbeat, serve the handoff socket.</summary>
    Committed,

    /// <summary>The predecessor's connection ended before its answer: it died; carry on alone.</summary>
    PredecessorVanished,

    /// <summary>The predecessor abandoned the handoff (this process was too slow, or a release overran).</summary>
    Abandoned,

    /// <summary>No answer to Ready within HandoffTimeout + 5 s: the predecessor is frozen, so this process gives up.</summary>
    CommitTimedOut,

    /// <summary>The predecessor took this process for lost and serves again (exit 77).</summary>
    Revoked,

    /// <summary>The predecessor ended its drain and exited (end of stream).</summary>
    PredecessorExited,

    /// <summary>This process stops in order, or commits to a successor of its own: it sends Release.</summary>
    ReleasedPredecessor,

    /// <summary>Committed, and both sides announced probation.</summary>
    CommittedOnProbation,

    /// <summary>The predecessor's window ended (or it stops): no way back from here.</summary>
    ProbationEnded,

    /// <summary>A rollback was asked for (the tool, the signal, the 5xx ratio, a tagged check): RollbackRequest sent.</summary>
    RollbackRequested,

    /// <summary>The predecessor reopened its gate: close this one, drain, release, send HandedBack.</summary>
    RollbackAccepted,
}
