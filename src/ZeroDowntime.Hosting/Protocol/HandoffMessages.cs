
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

    /// <summary>Running process to control client: how the upgrade ended. The connection then closes.</summary>
    UpgradeResult = 15,
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

internal sealed record HelloMessage(ushort Version, int ProcessId, string ApplicationId) : HandoffMessage(MessageType.Hello);

internal sealed record ListenerDescriptor(string Key, string BoundEndPoint);

/// <summary>
/// The predecessor's answer, in the version the successor greeted with. From v2 on it carries the predecessor's
/// generation (1 at a first start) and the time of the first start of the chain, in Unix milliseconds.
/// </summary>
internal sealed record WelcomeMessage(ushort Version, int ProcessId, IReadOnlyList<ListenerDescriptor> Listeners, long Generation = 0, long FirstStartUnixMilliseconds = 0)
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
