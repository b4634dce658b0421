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
    /// Successor to predecessor after the commit: it stops in order (it handed over in turn, or was shut down), so
    /// the end of its heartbeats means no crash and the predecessor must not resume.
    /// </summary>
    Stopping = 10,
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

internal sealed record StoppingMessage() : HandoffMessage(MessageType.Stopping);
