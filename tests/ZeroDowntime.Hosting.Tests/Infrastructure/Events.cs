using Microsoft.Extensions.Logging;

namespace ZeroDowntime.Hosting.Tests.Infrastructure;

/// <summary>
/// The log events the tests wait for and assert on, keyed by id and name as the library declares them
/// (src/ZeroDowntime.Hosting/Logging/ZeroDowntimeLog.cs, src/ZeroDowntime.Hosting.NLog/Internal/LogFileHandoffLog.cs):
/// a line matches only when both agree, so a renamed or renumbered event fails the test that relies on it.
/// </summary>
internal static class Events
{
    private static readonly Lazy<Dictionary<int, string>> s_names = new(() => typeof(Events)
        .GetFields(System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.Static)
        .Where(f => f.FieldType == typeof(EventId))
        .Select(f => (EventId)f.GetValue(null)!)
        .Where(e => e.Id < 1000)
        .GroupBy(e => e.Id)
        .ToDictionary(g => g.Key, g => g.First().Name!));

    /// <summary>The name of the library's event <paramref name="id"/> (for output that carries the id only), or null.</summary>
    public static string? NameOf(int id) => s_names.Value.GetValueOrDefault(id);

    public static readonly EventId NoPredecessor = new(4, nameof(NoPredecessor));

    public static readonly EventId StaleSocket = new(5, nameof(StaleSocket));

    public static readonly EventId ListenersReceived = new(7, nameof(ListenersReceived));

    public static readonly EventId ListenerInherited = new(8, nameof(ListenerInherited));

    public static readonly EventId ListenerBound = new(9, nameof(ListenerBound));

    public static readonly EventId InheritedListenerUnused = new(10, nameof(InheritedListenerUnused));

    public static readonly EventId Accepting = new(12, nameof(Accepting));

    public static readonly EventId ServingHandoffSocket = new(13, nameof(ServingHandoffSocket));

    public static readonly EventId HandoffSocketRemoved = new(14, nameof(HandoffSocketRemoved));

    public static readonly EventId StaleUnixEndpointReplaced = new(15, nameof(StaleUnixEndpointReplaced));

    public static readonly EventId FirstConnectionAccepted = new(16, nameof(FirstConnectionAccepted));

    public static readonly EventId StartupPhase = new(17, nameof(StartupPhase));

    public static readonly EventId StartupTimeline = new(18, nameof(StartupTimeline));

    public static readonly EventId SentReady = new(20, nameof(SentReady));

    public static readonly EventId Committed = new(21, nameof(Committed));

    public static readonly EventId RefusedByPredecessor = new(22, nameof(RefusedByPredecessor));

    public static readonly EventId ProtocolVersionMismatch = new(23, nameof(ProtocolVersionMismatch));

    public static readonly EventId HandoffAbandoned = new(24, nameof(HandoffAbandoned));

    public static readonly EventId PredecessorVanished = new(25, nameof(PredecessorVanished));

    public static readonly EventId PredecessorExited = new(26, nameof(PredecessorExited));

    public static readonly EventId HandoffRevoked = new(27, nameof(HandoffRevoked));

    public static readonly EventId PredecessorUntrusted = new(28, nameof(PredecessorUntrusted));

    public static readonly EventId AbandonedSuccessorDraining = new(32, nameof(AbandonedSuccessorDraining));

    public static readonly EventId SpeakingOlderVersion = new(33, nameof(SpeakingOlderVersion));

    public static readonly EventId HandoffRequested = new(40, nameof(HandoffRequested));

    public static readonly EventId HandoffRefused = new(41, nameof(HandoffRefused));

    public static readonly EventId SuccessorReady = new(42, nameof(SuccessorReady));

    public static readonly EventId SuccessorFailed = new(43, nameof(SuccessorFailed));

    public static readonly EventId SuccessorTimedOut = new(44, nameof(SuccessorTimedOut));

    public static readonly EventId DrainStarted = new(45, nameof(DrainStarted));

    public static readonly EventId DrainCompleted = new(46, nameof(DrainCompleted));

    public static readonly EventId SuccessorLost = new(47, nameof(SuccessorLost));

    public static readonly EventId ToldPredecessorStopping = new(30, nameof(ToldPredecessorStopping));

    public static readonly EventId OwnershipWithdrawn = new(100, nameof(OwnershipWithdrawn));

    public static readonly EventId ReleasedBySuccessor = new(101, nameof(ReleasedBySuccessor));

    public static readonly EventId DroppedListenerShutDown = new(103, nameof(DroppedListenerShutDown));

    public static readonly EventId ListenerRevived = new(104, nameof(ListenerRevived));

    public static readonly EventId IdleConnectionsClosing = new(48, nameof(IdleConnectionsClosing));

    public static readonly EventId HandoffProtocolError = new(49, nameof(HandoffProtocolError));

    public static readonly EventId HangupIgnored = new(71, nameof(HangupIgnored));

    public static readonly EventId UpgradeSignalIgnoredFromStart = new(76, nameof(UpgradeSignalIgnoredFromStart));

    public static readonly EventId AddressInUse = new(72, nameof(AddressInUse));

    public static readonly EventId ShutdownDelayStarted = new(74, nameof(ShutdownDelayStarted));

    public static readonly EventId ShutdownDelaySkipped = new(75, nameof(ShutdownDelaySkipped));

    public static readonly EventId ParticipantOverran = new(80, nameof(ParticipantOverran));

    public static readonly EventId HandoffAbandonedAtCommit = new(81, nameof(HandoffAbandonedAtCommit));

    public static readonly EventId UpgradeStarted = new(82, nameof(UpgradeStarted));

    public static readonly EventId UpgradeRefused = new(83, nameof(UpgradeRefused));

    public static readonly EventId UpgradeCommitted = new(84, nameof(UpgradeCommitted));

    public static readonly EventId UpgradeFailed = new(85, nameof(UpgradeFailed));

    public static readonly EventId UpgradeSuccessorNotGreeting = new(120, nameof(UpgradeSuccessorNotGreeting));

    public static readonly EventId UpgradeSuccessorKilled = new(121, nameof(UpgradeSuccessorKilled));

    public static readonly EventId FaultInjectionPause = new(90, nameof(FaultInjectionPause));

    public static readonly EventId UnixSocketFileKept = new(130, nameof(UnixSocketFileKept));

    public static readonly EventId UnixSocketFileNotRemoved = new(131, nameof(UnixSocketFileNotRemoved));

    public static readonly EventId PredecessorShuttingDown = new(132, nameof(PredecessorShuttingDown));

    public static readonly EventId StartupConfiguration = new(140, nameof(StartupConfiguration));

    public static readonly EventId NoEndpointKept = new(141, nameof(NoEndpointKept));

    public static readonly EventId ReplacingAllEndpoints = new(142, nameof(ReplacingAllEndpoints));


    // ZeroDowntime.Hosting.NLog (LogFileHandoffLog).
    public static readonly EventId LogFilesFound = new(61, nameof(LogFilesFound));

    public static readonly EventId LogFileAcquired = new(62, nameof(LogFileAcquired));

    public static readonly EventId LogFileReleased = new(63, nameof(LogFileReleased));

    public static readonly EventId LogFileAbandoned = new(64, nameof(LogFileAbandoned));

    public static readonly EventId OrphanLogFileArchived = new(65, nameof(OrphanLogFileArchived));

    public static readonly EventId LogFileTakenOver = new(66, nameof(LogFileTakenOver));

    public static readonly EventId LogFileHandoffFailed = new(67, nameof(LogFileHandoffFailed));

    public static readonly EventId NoLogFiles = new(68, nameof(NoLogFiles));

    public static readonly EventId LogFilesStayArchived = new(69, nameof(LogFilesStayArchived));

    public static readonly EventId LogFileTakenBack = new(150, nameof(LogFileTakenBack));

    public static readonly EventId LogFileKeptOnArchive = new(151, nameof(LogFileKeptOnArchive));

    public static readonly EventId ListenerActivated = new(180, nameof(ListenerActivated));

    public static readonly EventId ListenerStored = new(182, nameof(ListenerStored));

    public static readonly EventId ListenerUnstored = new(183, nameof(ListenerUnstored));

    // Long-lived connections in the drain (200-219).
    public static readonly EventId LongLivedClosing = new(200, nameof(LongLivedClosing));
    public static readonly EventId SignalRClosing = new(201, nameof(SignalRClosing));
    public static readonly EventId WebSocketCloseTimedOut = new(202, nameof(WebSocketCloseTimedOut));
    public static readonly EventId DrainingGenerationsExceeded = new(210, nameof(DrainingGenerationsExceeded));
    public static readonly EventId DrainEndedByLimit = new(211, nameof(DrainEndedByLimit));

    public static readonly EventId WarmupStarted = new(160, nameof(WarmupStarted));

    public static readonly EventId WarmupRequestSummary = new(162, nameof(WarmupRequestSummary));

    public static readonly EventId WarmupRequestFailed = new(163, nameof(WarmupRequestFailed));

    public static readonly EventId WarmupFinished = new(165, nameof(WarmupFinished));

    public static readonly EventId NotReadyForHandoff = new(166, nameof(NotReadyForHandoff));

    public static readonly EventId JitProfilePlayed = new(172, nameof(JitProfilePlayed));

    public static readonly EventId JitProfileRecording = new(173, nameof(JitProfileRecording));

    // The sample's own (samples/WebApi/SampleStartup.cs; [LoggerMessage] names an event after its method by default).
    public static readonly EventId SampleWarmingUp = new(1000, "LogWarmingUp");

    // Probation and rollback (220-239).
    public static readonly EventId ProbationStarted = new(220, nameof(ProbationStarted));
    public static readonly EventId StandingBy = new(221, nameof(StandingBy));
    public static readonly EventId ProbationPassed = new(222, nameof(ProbationPassed));
    public static readonly EventId ProbationEndedForSuccessor = new(223, nameof(ProbationEndedForSuccessor));
    public static readonly EventId RollbackRequested = new(224, nameof(RollbackRequested));
    public static readonly EventId RollbackErrorRatio = new(225, nameof(RollbackErrorRatio));
    public static readonly EventId RollbackUnhealthyCheck = new(226, nameof(RollbackUnhealthyCheck));
    public static readonly EventId RollbackAccepted = new(227, nameof(RollbackAccepted));
    public static readonly EventId HandedBack = new(228, nameof(HandedBack));
    public static readonly EventId RolledBack = new(229, nameof(RolledBack));
    public static readonly EventId RollbackRefused = new(230, nameof(RollbackRefused));
    public static readonly EventId RollbackGivenUp = new(231, nameof(RollbackGivenUp));
    public static readonly EventId RollbackSignalIgnored = new(232, nameof(RollbackSignalIgnored));
    public static readonly EventId ProbationCheckUnhealthy = new(233, nameof(ProbationCheckUnhealthy));
    public static readonly EventId ProbationNotAgreed = new(234, nameof(ProbationNotAgreed));
    public static readonly EventId RollbackWithdrawn = new(235, nameof(RollbackWithdrawn));
}
