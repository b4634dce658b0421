
namespace ZeroDowntime.Hosting.Protocol;

/// <summary>The frame types of the handoff protocol. Values are on the wire: never renumber.</summary>
internal enum MessageType : byte
{
    /// <summary>Successor to predecessor: protocol version, pid, application id.</summary>
    Hello = 1,

    /// <summary>Predecessor to successor: version, pid and the listeners whose descriptors travel with the frame.</summary>
    Welcome = 2,

    /// <summary>Predecessor to successor: the handoff is refused, with a reason.</summary>
    Refused = 3,

    /// <summary>Successor to predecessor: the host has started and accepts connections.</summary>
    Ready = 4,

    /// <summary>Predecessor to successor: it has stopped accepting; the successor owns the handoff socket now.</summary>
    Committed = 5,

    /// <summary>Predecessor to successor: the handoff was given up (timeout); the successor must stop.</summary>
    Abandoned = 6,

    /// <summary>Successor to predecessor: start-up failed, with a reason.</summary>
    Failed = 7,

    /// <summary>Successor to predecessor after the commit: still alive.</summary>
    Heartbeat = 8,

    /// <summary>Predecessor to successor after the commit: it lost the successor and serves alone again.</summary>
    Revoked = 9,

    /// <summary>
    /// Successor to predecessor after the commit: the predecessor is released from standing by. The successor stops in
    /// order (it handed over in turn, or was shut down), so the end of its heartbeats means no crash and the
    /// predecessor must finish its drain and never resume. (Called "Stopping" on the wire docs of v1; same value.)
    /// </summary>
    Release = 10,

    /// <summary>Control client (the <c>zerodowntime</c> tool) to the running process, first frame, v2: who serves?</summary>
    StatusRequest = 11,

    /// <summary>Running process to control client: its state, generation and listeners. The connection then closes.</summary>
    Status = 12,

    /// <summary>Control client to the running process, first frame, v2: start your successor and tell me how it ends.</summary>
    UpgradeRequest = 13,

    /// <summary>Running process to control client: the successor was started, with its pid.</summary>
    UpgradeStarted = 14,

    /// <summary>Running process to control client: how the upgrade ended. The connection then closes (or, when the upgrade committed on probation, <see cref="ProbationUpdate"/> frames follow).</summary>
    UpgradeResult = 15,

    /// <summary>New process to the old one on probation (both announced <see cref="HandoffFeatures.Probation"/>): serve again, with the origin and the reason.</summary>
    RollbackRequest = 16,

    /// <summary>Old process to the new one: it has reopened its gate (both accept for a moment); the new one may close its own.</summary>
    RollbackAccepted = 17,

    /// <summary>New process to the old one: its gate is closed and its participants released; the old one owns everything from here.</summary>
    HandedBack = 18,

    /// <summary>Old process to the new one: its probation window ended (or it stops) before a rollback was accepted; no way back from here.</summary>
    ProbationEnded = 19,

    /// <summary>Running process to control client, right after <see cref="Status"/> (builds with probation only): the probation in course.</summary>
    ProbationStatus = 20,

    /// <summary>Control client to the running process, first frame (v2): roll back to the generation on probation.</summary>
    RollbackCommand = 21,

    /// <summary>Running process to control client: how the rollback ended. The connection then closes.</summary>
    RollbackResult = 22,

    /// <summary>Old process to control client, after a committed <see cref="UpgradeResult"/>: the probation started, then how it ended.</summary>
    ProbationUpdate = 23,
}

/// <summary>What a peer announces it can do, appended to a v2 Hello and Welcome. Values are on the wire.</summary>
[Flags]
internal enum HandoffFeatures : uint
{
    None = 0,

    /// <summary>This build stands by after the commit and rolls back (issue 20).</summary>
    Probation = 1,
}

/// <summary>Who asked for a rollback. Values are on the wire.</summary>
internal enum RollbackOrigin : byte
{
    None = 0,
    Tool = 1,
    Signal = 2,
    ErrorRatio = 3,
    HealthCheck = 4,
}

/// <summary>The probation a running process reports in <see cref="ProbationStatusMessage"/>. Values are on the wire.</summary>
internal enum ProbationState : byte
{
    None = 0,
    OnProbation = 1,
    RollingBack = 2,
    RolledBack = 3,
}

/// <summary>How a rollback command ended. Values are on the wire.</summary>
internal enum RollbackOutcome : byte
{
    RolledBack = 1,
    Refused = 2,
    Failed = 3,
}

/// <summary>What an upgrade's probation did, in <see cref="ProbationUpdateMessage"/>. Values are on the wire.</summary>
internal enum ProbationProgress : byte
{
    Started = 1,
    Passed = 2,
    RolledBack = 3,
    EndedEarly = 4,
    None = 5,
}

/// <summary>What a running process is doing, as <c>zerodowntime status</c> reports it. Values are on the wire.</summary>
internal enum ServingState : byte
{
    Serving = 1,
    HandingOver = 2,
    Draining = 3,
    ShuttingDown = 4,
}

/// <summary>How an upgrade ended. Values are on the wire.</summary>
internal enum UpgradeOutcome : byte
{
    /// <summary>The successor committed: it serves, the old process drains.</summary>
    Committed = 1,

    /// <summary>The successor failed to start, exited, or was lost after the commit (the old process serves).</summary>
    Failed = 2,

    /// <summary>The old process gave the handoff up (HandoffTimeout, a participant overran) and serves.</summary>
    Abandoned = 3,

    /// <summary>Not started: another upgrade or handoff runs, or the process is draining or shutting down.</summary>
    Refused = 4,
}

/// <summary>Why a predecessor refused a handoff. Values are on the wire: never renumber.</summary>
internal enum RefusalReason : byte
{
    Busy = 1,
    VersionMismatch = 2,
    ApplicationMismatch = 3,
    AlreadyHandedOver = 5,
}

internal abstract record HandoffMessage(MessageType Type);

/// <summary>
/// A successor's greeting. A v2 Hello of a build with probation appends what it can do and how long it asks the
/// predecessor to stand by after the commit (0: no probation); builds without them ignore the extra bytes of a Hello.
/// <see cref="Features"/> is null when the Hello carried no extension.
/// </summary>
internal sealed record HelloMessage(ushort Version, int ProcessId, string ApplicationId, HandoffFeatures? Features = null, long ProbationMilliseconds = 0)
    : HandoffMessage(MessageType.Hello);

internal sealed record ListenerDescriptor(string Key, string BoundEndPoint);

/// <summary>
/// The predecessor's answer, in the version the successor greeted with. From v2 on it carries the predecessor's
/// generation (1 at a first start) and the time of the first start of the chain, in Unix milliseconds. It carries
/// <see cref="Features"/> only in answer to a Hello that carried them (a build that decodes them); null otherwise.
/// </summary>
internal sealed record WelcomeMessage(
    ushort Version, int ProcessId, IReadOnlyList<ListenerDescriptor> Listeners, long Generation = 0, long FirstStartUnixMilliseconds = 0, HandoffFeatures? Features = null)
    : HandoffMessage(MessageType.Welcome);

internal sealed record RefusedMessage(RefusalReason Reason, ushort Version, string Detail) : HandoffMessage(MessageType.Refused);

internal sealed record ReadyMessage() : HandoffMessage(MessageType.Ready);

internal sealed record CommittedMessage() : HandoffMessage(MessageType.Committed);

internal sealed record AbandonedMessage(string Reason) : HandoffMessage(MessageType.Abandoned);

internal sealed record FailedMessage(string Reason) : HandoffMessage(MessageType.Failed);

internal sealed record HeartbeatMessage() : HandoffMessage(MessageType.Heartbeat);

internal sealed record RevokedMessage(string Reason) : HandoffMessage(MessageType.Revoked);

internal sealed record ReleaseMessage() : HandoffMessage(MessageType.Release);

internal sealed record StatusRequestMessage(ushort Version) : HandoffMessage(MessageType.StatusRequest);

/// <summary>
/// The running process: its pid, application, generation, first start of the chain and its own serving start (Unix
/// ms), state, listeners, a predecessor that still drains (0 when none) and a successor being handed over to (0).
/// </summary>
internal sealed record StatusMessage(
    int ProcessId,
    string ApplicationId,
    long Generation,
    long FirstStartUnixMilliseconds,
    long ServingSinceUnixMilliseconds,
    ServingState State,
    IReadOnlyList<ListenerDescriptor> Listeners,
    int DrainingPredecessorPid,
    int SuccessorPid) : HandoffMessage(MessageType.Status);

internal sealed record UpgradeRequestMessage(ushort Version) : HandoffMessage(MessageType.UpgradeRequest);

internal sealed record UpgradeStartedMessage(int SuccessorPid) : HandoffMessage(MessageType.UpgradeStarted);

/// <summary>
/// How an upgrade ended: the successor's pid, its exit code when it has exited (-1 while it runs), the reason, and
/// the milliseconds from starting it to its Ready and to the commit (-1 when it never got there).
/// </summary>
internal sealed record UpgradeResultMessage(UpgradeOutcome Outcome, int SuccessorPid, int ExitCode, string Reason, long ReadyMilliseconds, long CommittedMilliseconds)
    : HandoffMessage(MessageType.UpgradeResult);

internal sealed record RollbackRequestMessage(RollbackOrigin Origin, string Reason) : HandoffMessage(MessageType.RollbackRequest);

internal sealed record RollbackAcceptedMessage() : HandoffMessage(MessageType.RollbackAccepted);

/// <summary>The new process has closed its gate; <see cref="AllReleased"/> is false when a participant overran its release.</summary>
internal sealed record HandedBackMessage(bool AllReleased) : HandoffMessage(MessageType.HandedBack);

internal sealed record ProbationEndedMessage(string Reason) : HandoffMessage(MessageType.ProbationEnded);

/// <summary>
/// The probation as the serving process sees it: the state, the peer (the predecessor standing by; for
/// <see cref="ProbationState.RolledBack"/> the successor that was rolled back), when the window ends (Unix ms, 0 when
/// none) and, after a rollback, why.
/// </summary>
internal sealed record ProbationStatusMessage(ProbationState State, int PeerPid, long EndsUnixMilliseconds, string Reason)
    : HandoffMessage(MessageType.ProbationStatus);

internal sealed record RollbackCommandMessage(ushort Version, string Note) : HandoffMessage(MessageType.RollbackCommand);

/// <summary>How a rollback ended: the pid that serves now, the reason, and the switch in ms (-1 when it did not get there).</summary>
internal sealed record RollbackResultMessage(RollbackOutcome Outcome, int ServingPid, string Reason, long SwitchMilliseconds)
    : HandoffMessage(MessageType.RollbackResult);

internal sealed record ProbationUpdateMessage(ProbationProgress Progress, long EndsUnixMilliseconds, RollbackOrigin Origin, string Reason)
    : HandoffMessage(MessageType.ProbationUpdate);
