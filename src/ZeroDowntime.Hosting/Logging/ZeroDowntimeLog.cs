using Microsoft.Extensions.Logging;
using ZeroDowntime.Hosting.Warmup;

namespace ZeroDowntime.Hosting.Logging;

/// <summary>
/// Every log line of the library. Event ids are stable: never reuse or renumber one. 1-19 start-up and listeners,
/// 20-39 the successor's side of a handoff, 40-59 the predecessor's side, 60-69 log file handoff, 70-79 the process
/// (signals, background work, bind errors), 80-89 more of the predecessor's side, 90-99 test seams, 100-119 more of
/// the handoff (ownership, release, dropped endpoints), 120-129 upgrades, 130-139 socket files and newcomers, 140-149
/// the configuration read at start and the successor's endpoint check (150-159: the NLog package), 180-199 sockets
/// kept by the service manager (socket activation, fd store), 200-219 long-lived connections in the drain
/// (WebSockets, event streams, SignalR) and the bound on draining generations.
/// </summary>
internal static partial class ZeroDowntimeLog
{
    [LoggerMessage(1, LogLevel.Warning, "ZeroDowntime handoffs work on Linux only; on {Platform} this app runs on plain Kestrel and no handoff will happen.", EventName = "NotSupportedOnPlatform")]
    public static partial void NotSupportedOnPlatform(this ILogger logger, string platform);

    [LoggerMessage(3, LogLevel.Information, "Handoff socket is {SocketPath} (application {ApplicationId}, protocol v{ProtocolVersion})", EventName = "HandoffSocket")]
    public static partial void HandoffSocket(this ILogger logger, string socketPath, string applicationId, int protocolVersion);

    [LoggerMessage(4, LogLevel.Information, "No predecessor at {SocketPath}: first start, binding listeners", EventName = "NoPredecessor")]
    public static partial void NoPredecessor(this ILogger logger, string socketPath);

    [LoggerMessage(5, LogLevel.Information, "Stale handoff socket {SocketPath} (nobody listens on it): first start, it will be replaced", EventName = "StaleSocket")]
    public static partial void StaleSocket(this ILogger logger, string socketPath);

    [LoggerMessage(6, LogLevel.Information, "Connected to predecessor pid {ProcessId} on {SocketPath}, receiving listeners", EventName = "PredecessorFound")]
    public static partial void PredecessorFound(this ILogger logger, int processId, string socketPath);

    [LoggerMessage(7, LogLevel.Information, "Received {Count} listening socket(s) from pid {ProcessId} in {ElapsedMs:0.0} ms", EventName = "ListenersReceived")]
    public static partial void ListenersReceived(this ILogger logger, int count, int processId, double elapsedMs);

    [LoggerMessage(8, LogLevel.Information, "Inherited listener {Key} on {EndPoint} (fd {Fd})", EventName = "ListenerInherited")]
    public static partial void ListenerInherited(this ILogger logger, string key, string endPoint, int fd);

    [LoggerMessage(9, LogLevel.Information, "Bound new listener {Key} on {EndPoint}", EventName = "ListenerBound")]
    public static partial void ListenerBound(this ILogger logger, string key, string endPoint);

    [LoggerMessage(10, LogLevel.Warning, "Closed inherited listener {Key} on {EndPoint}: the current configuration does not use it", EventName = "InheritedListenerUnused")]
    public static partial void InheritedListenerUnused(this ILogger logger, string key, string endPoint);

    [LoggerMessage(11, LogLevel.Warning, "HTTP/3 endpoint {EndPoint} cannot be handed over (QUIC listeners are UDP and owned by msquic): each version binds it afresh and HTTP/3 clients fall back to HTTP/1.1 or HTTP/2 during a handoff", EventName = "Http3NotHandedOver")]
    public static partial void Http3NotHandedOver(this ILogger logger, string endPoint);

    [LoggerMessage(12, LogLevel.Information, "Host started: accepting connections on {Count} listener(s)", EventName = "Accepting")]
    public static partial void Accepting(this ILogger logger, int count);

    [LoggerMessage(13, LogLevel.Information, "Listening on {SocketPath} for the next version", EventName = "ServingHandoffSocket")]
    public static partial void ServingHandoffSocket(this ILogger logger, string socketPath);

    [LoggerMessage(14, LogLevel.Information, "Removed handoff socket {SocketPath} on shutdown", EventName = "HandoffSocketRemoved")]
    public static partial void HandoffSocketRemoved(this ILogger logger, string socketPath);

    [LoggerMessage(15, LogLevel.Information, "Replaced stale Unix socket file {Path} of a dead process", EventName = "StaleUnixEndpointReplaced")]
    public static partial void StaleUnixEndpointReplaced(this ILogger logger, string path);

    [LoggerMessage(19, LogLevel.Critical, "Cannot listen on {Endpoint}: SocketTransportOptions.CreateBoundListenSocket set SO_REUSEPORT (ReuseAddress on Linux) on it. With UseZeroDowntime the next version takes this very socket over, and SO_REUSEPORT would instead let a copy that missed the handoff socket bind beside this one. Remove the option, or set ZeroDowntime:Enabled=false to run without handoffs", EventName = "ReusePortRefused")]
    public static partial void ReusePortRefused(this ILogger logger, string endpoint);

    [LoggerMessage(17, LogLevel.Information, "Start-up phase {Phase} {ElapsedMs:0.0} ms after process start ({SincePreviousMs:0.0} ms after {PreviousPhase})", EventName = "StartupPhase")]
    public static partial void StartupPhase(this ILogger logger, string phase, double elapsedMs, double sincePreviousMs, string previousPhase);

    [LoggerMessage(18, LogLevel.Information, "Start-up timeline, ms after process start: {Phases}", EventName = "StartupTimeline")]
    public static partial void StartupTimelineSummary(this ILogger logger, string phases);

    [LoggerMessage(2, LogLevel.Debug, "{Machine}: {From} --{Trigger}--> {To}", EventName = "StateChanged")]
    public static partial void StateChanged(this ILogger logger, string machine, string from, string trigger, string to);

    [LoggerMessage(20, LogLevel.Information, "Ready {ElapsedMs:0} ms after process start: told predecessor pid {ProcessId}", EventName = "SentReady")]
    public static partial void SentReady(this ILogger logger, double elapsedMs, int processId);

    [LoggerMessage(21, LogLevel.Information, "Predecessor pid {ProcessId} stopped accepting: this process now serves alone ({ElapsedMs:0} ms after process start)", EventName = "Committed")]
    public static partial void Committed(this ILogger logger, int processId, double elapsedMs);

    [LoggerMessage(22, LogLevel.Critical, "Predecessor pid {ProcessId} refused the handoff ({Reason}): {Detail}. Nothing changed; this process stops.", EventName = "RefusedByPredecessor")]
    public static partial void RefusedByPredecessor(this ILogger logger, int processId, string reason, string detail);

    [LoggerMessage(23, LogLevel.Critical, "Protocol version mismatch with predecessor pid {ProcessId}: it speaks v{TheirVersion}, this process speaks v{OurVersion}. Nothing changed; this process stops.", EventName = "ProtocolVersionMismatch")]
    public static partial void ProtocolVersionMismatch(this ILogger logger, int processId, int theirVersion, int ourVersion);

    [LoggerMessage(24, LogLevel.Critical, "Predecessor pid {ProcessId} abandoned the handoff: {Reason}. It keeps serving; this process stops.", EventName = "HandoffAbandoned")]
    public static partial void HandoffAbandoned(this ILogger logger, int processId, string reason);

    [LoggerMessage(25, LogLevel.Warning, "Predecessor pid {ProcessId} disappeared during the handoff ({Reason}): carrying on alone", EventName = "PredecessorVanished")]
    public static partial void PredecessorVanished(this ILogger logger, int processId, string reason);

    [LoggerMessage(26, LogLevel.Information, "Predecessor pid {ProcessId} has finished draining and closed the handoff connection", EventName = "PredecessorExited")]
    public static partial void PredecessorExited(this ILogger logger, int processId);

    [LoggerMessage(27, LogLevel.Critical, "Predecessor pid {ProcessId} revoked the handoff: {Reason}. It serves alone again; this process stops.", EventName = "HandoffRevoked")]
    public static partial void HandoffRevoked(this ILogger logger, int processId, string reason);

    [LoggerMessage(28, LogLevel.Critical, "Refusing to take sockets from {SocketPath}: {Reason}", EventName = "PredecessorUntrusted")]
    public static partial void PredecessorUntrusted(this ILogger logger, string socketPath, string reason);

    [LoggerMessage(29, LogLevel.Critical, "Handoff from predecessor failed: {Reason}", EventName = "TakeoverFailed")]
    public static partial void TakeoverFailed(this ILogger logger, string reason, Exception? exception);

    [LoggerMessage(40, LogLevel.Information, "Successor pid {ProcessId} connected: handing over {Count} listener(s)", EventName = "HandoffRequested")]
    public static partial void HandoffRequested(this ILogger logger, int processId, int count);

    [LoggerMessage(41, LogLevel.Warning, "Refused handoff connection from pid {ProcessId} (uid {UserId}): {Reason}", EventName = "HandoffRefused")]
    public static partial void HandoffRefused(this ILogger logger, int processId, uint userId, string reason);

    [LoggerMessage(42, LogLevel.Information, "Successor pid {ProcessId} is ready {ElapsedMs:0} ms after its greeting: stopped accepting, draining", EventName = "SuccessorReady")]
    public static partial void SuccessorReady(this ILogger logger, int processId, double elapsedMs);

    [LoggerMessage(43, LogLevel.Warning, "Successor pid {ProcessId} failed before it was ready ({Reason}): handoff abandoned, still serving", EventName = "SuccessorFailed")]
    public static partial void SuccessorFailed(this ILogger logger, int processId, string reason);

    [LoggerMessage(44, LogLevel.Warning, "Successor pid {ProcessId} was not ready within {Timeout}: handoff abandoned, still serving", EventName = "SuccessorTimedOut")]
    public static partial void SuccessorTimedOut(this ILogger logger, int processId, TimeSpan timeout);

    [LoggerMessage(45, LogLevel.Information, "Draining {Count} connection(s) (grace for idle keep-alive {Grace}, deadline {DrainTimeout})", EventName = "DrainStarted")]
    public static partial void DrainStarted(this ILogger logger, int count, TimeSpan grace, TimeSpan drainTimeout);

    [LoggerMessage(46, LogLevel.Information, "Drain finished in {ElapsedMs:0} ms ({Aborted} connection(s) aborted at the deadline)", EventName = "DrainCompleted")]
    public static partial void DrainCompleted(this ILogger logger, double elapsedMs, int aborted);

    [LoggerMessage(47, LogLevel.Error, "Lost successor pid {ProcessId} after the commit ({Reason}): accepting connections again", EventName = "SuccessorLost")]
    public static partial void SuccessorLost(this ILogger logger, int processId, string reason);

    [LoggerMessage(48, LogLevel.Information, "Grace period over: asking {Count} remaining connection(s) to close", EventName = "IdleConnectionsClosing")]
    public static partial void IdleConnectionsClosing(this ILogger logger, int count);

    [LoggerMessage(49, LogLevel.Warning, "Handoff connection from pid {ProcessId} dropped: {Reason}", EventName = "HandoffProtocolError")]
    public static partial void HandoffProtocolError(this ILogger logger, int processId, string reason);

    [LoggerMessage(50, LogLevel.Error, "Handoff socket server failed", EventName = "HandoffServerFailed")]
    public static partial void HandoffServerFailed(this ILogger logger, Exception exception);

    [LoggerMessage(51, LogLevel.Information, "Handed over to pid {ProcessId}; exiting", EventName = "Exiting")]
    public static partial void Exiting(this ILogger logger, int processId);

    [LoggerMessage(60, LogLevel.Warning, "A handoff participant failed at {Stage}", EventName = "ParticipantFailed")]
    public static partial void ParticipantFailed(this ILogger logger, string stage, Exception exception);

    [LoggerMessage(90, LogLevel.Warning, "Fault injection: paused at step {Step} until the test lets it go (the fault seam of a test build; never in production)", EventName = "FaultInjectionPause")]
    public static partial void FaultInjectionPause(this ILogger logger, string step);

    [LoggerMessage(16, LogLevel.Information, "First connection accepted {ElapsedMs:0} ms after process start", EventName = "FirstConnectionAccepted")]
    public static partial void FirstConnectionAccepted(this ILogger logger, double elapsedMs);

    [LoggerMessage(30, LogLevel.Information, "Released predecessor pid {ProcessId} (a successor greets this process, or it stops in order): it finishes its drain and never serves again; {Answer}", EventName = "ToldPredecessorStopping")]
    public static partial void ToldPredecessorStopping(this ILogger logger, int processId, string answer);

    [LoggerMessage(31, LogLevel.Warning, "Stopping before the commit: told predecessor pid {ProcessId} at once, so that it serves on", EventName = "StoppingBeforeCommit")]
    public static partial void StoppingBeforeCommit(this ILogger logger, int processId);

    [LoggerMessage(32, LogLevel.Warning, "Handoff abandoned after this process had started accepting: draining {Count} connection(s) before exiting", EventName = "AbandonedSuccessorDraining")]
    public static partial void AbandonedSuccessorDraining(this ILogger logger, int count);

    [LoggerMessage(70, LogLevel.Critical, "Background work '{Name}' of ZeroDowntime.Hosting failed", EventName = "BackgroundTaskFailed")]
    public static partial void BackgroundTaskFailed(this ILogger logger, string name, Exception exception);

    [LoggerMessage(71, LogLevel.Warning, "Received SIGHUP: ignored, this process keeps serving (start the next version to upgrade)", EventName = "HangupIgnored")]
    public static partial void HangupIgnored(this ILogger logger);

    [LoggerMessage(72, LogLevel.Critical, "Cannot listen on {Endpoint}: the address is in use by another process that did not hand it over (the predecessor: pid {PredecessorPid}, 0 when none answered at {SocketPath}). A copy of this app may run without handoffs (no UseZeroDowntime, ZeroDowntime:Enabled=false, or another ZeroDowntime:SocketPath), or another program holds the port: free it, or remove the endpoint from the configuration", EventName = "AddressInUse")]
    public static partial void AddressInUse(this ILogger logger, string endpoint, int predecessorPid, string socketPath);

    [LoggerMessage(73, LogLevel.Error, "An application callback on IZeroDowntimeLifetime.Draining threw; the drain goes on", EventName = "DrainingCallbackFailed")]
    public static partial void DrainingCallbackFailed(this ILogger logger, Exception exception);

    [LoggerMessage(76, LogLevel.Warning, "Upgrades by {Signal} are configured, but this process was started with {Signal} ignored (inherited, e.g. from nohup): the signal will not reach it. Start it without that, or upgrade with `zerodowntime upgrade`", EventName = "UpgradeSignalIgnoredFromStart")]
    public static partial void UpgradeSignalIgnoredFromStart(this ILogger logger, string signal);

    [LoggerMessage(100, LogLevel.Warning, "Revoked by the predecessor while becoming the owner: this process claims nothing ({Status} not announced, the handoff socket not served) and exits", EventName = "OwnershipWithdrawn")]
    public static partial void OwnershipWithdrawn(this ILogger logger, string status);

    [LoggerMessage(101, LogLevel.Information, "Released by successor pid {ProcessId}: finishing the drain, never serving again; this process's copies of the listening sockets are closed", EventName = "ReleasedBySuccessor")]
    public static partial void PredecessorReleasedBySuccessor(this ILogger logger, int processId);

    [LoggerMessage(102, LogLevel.Debug, "Stopped watching successor pid {ProcessId}: {Reason}", EventName = "SuccessorWatchEnded")]
    public static partial void SuccessorWatchEnded(this ILogger logger, int processId, string reason);

    [LoggerMessage(103, LogLevel.Information, "Dropped listener {Key} ({EndPoint}) shut down: the kernel refuses its connections now, although the draining predecessor still holds a copy", EventName = "DroppedListenerShutDown")]
    public static partial void DroppedListenerShutDown(this ILogger logger, string key, string endPoint);

    [LoggerMessage(104, LogLevel.Warning, "Listener {Key} ({EndPoint}) no longer listened (the lost successor had dropped it): bound anew", EventName = "ListenerRevived")]
    public static partial void ListenerRevived(this ILogger logger, string key, string endPoint);

    [LoggerMessage(105, LogLevel.Error, "Listener {Key} no longer listens (the lost successor had dropped it) and could not be bound anew: it stays closed", EventName = "ListenerReviveFailed")]
    public static partial void ListenerReviveFailed(this ILogger logger, string key, Exception exception);

    [LoggerMessage(106, LogLevel.Warning, "Successor pid {ProcessId} has not served the handoff socket within {Timeout} of the commit: exiting anyway", EventName = "SuccessorNotServingThePath")]
    public static partial void SuccessorNotServingThePath(this ILogger logger, int processId, TimeSpan timeout);

    [LoggerMessage(80, LogLevel.Error, "Handoff participant {Participant} did not finish releasing within {Timeout}: the commit waits for it, then the handoff is abandoned", EventName = "ParticipantOverran")]
    public static partial void ParticipantOverran(this ILogger logger, string participant, TimeSpan timeout);

    [LoggerMessage(81, LogLevel.Warning, "Handoff to pid {ProcessId} abandoned at the commit ({Reason}): serving again", EventName = "HandoffAbandonedAtCommit")]
    public static partial void HandoffAbandonedAtCommit(this ILogger logger, int processId, string reason);

    [LoggerMessage(33, LogLevel.Information, "Predecessor pid {ProcessId} speaks handoff protocol v{TheirVersion}, not v{OurVersion}: greeting it again in v{TheirVersion}", EventName = "SpeakingOlderVersion")]
    public static partial void SpeakingOlderVersion(this ILogger logger, int processId, int theirVersion, int ourVersion);

    [LoggerMessage(74, LogLevel.Information, "Shutting down: readiness says Unhealthy; still serving for {Delay} (ZeroDowntime:ShutdownDelay) so that load balancers move away, then draining", EventName = "ShutdownDelayStarted")]
    public static partial void ShutdownDelayStarted(this ILogger logger, TimeSpan delay);

    [LoggerMessage(75, LogLevel.Information, "Second SIGTERM: the rest of the shutdown delay is skipped", EventName = "ShutdownDelaySkipped")]
    public static partial void ShutdownDelaySkipped(this ILogger logger);

    [LoggerMessage(82, LogLevel.Information, "Upgrade ({Trigger}): started successor pid {ProcessId}: {CommandLine} (in {WorkingDirectory})", EventName = "UpgradeStarted")]
    public static partial void UpgradeStarted(this ILogger logger, string trigger, int processId, string commandLine, string workingDirectory);

    [LoggerMessage(83, LogLevel.Warning, "Upgrade ({Trigger}) refused: {Reason}", EventName = "UpgradeRefused")]
    public static partial void UpgradeRefused(this ILogger logger, string trigger, string reason);

    [LoggerMessage(84, LogLevel.Information, "Upgrade ({Trigger}) committed: successor pid {ProcessId} ready {ReadyMs} ms and committed {CommittedMs} ms after it was started", EventName = "UpgradeCommitted")]
    public static partial void UpgradeCommitted(this ILogger logger, int processId, string trigger, long readyMs, long committedMs);

    [LoggerMessage(85, LogLevel.Error, "Upgrade ({Trigger}) failed: successor pid {ProcessId} {Outcome} (exit code {ExitCode}): {Reason}. This process goes on serving", EventName = "UpgradeFailed")]
    public static partial void UpgradeFailed(this ILogger logger, int processId, string trigger, string outcome, int exitCode, string reason);

    [LoggerMessage(130, LogLevel.Information, "Left {Path} in place: it names another socket now than the one this process bound or received (a process that started since bound it)", EventName = "UnixSocketFileKept")]
    public static partial void UnixSocketFileKept(this ILogger logger, string path);

    [LoggerMessage(131, LogLevel.Warning, "Could not remove socket file {Path}: {Detail}", EventName = "UnixSocketFileNotRemoved")]
    public static partial void UnixSocketFileNotRemoved(this ILogger logger, string path, string detail);

    [LoggerMessage(132, LogLevel.Information, "The process serving {SocketPath} (pid {ProcessId}) is shutting down: waiting until it has closed its listeners and removed the socket, then starting fresh (at most {Limit})", EventName = "PredecessorShuttingDown")]
    public static partial void PredecessorShuttingDown(this ILogger logger, string socketPath, int processId, TimeSpan limit);

    [LoggerMessage(120, LogLevel.Warning, "Upgrade ({Trigger}): successor pid {ProcessId} did not greet within HandoffTimeout ({HandoffTimeout}) of its start: stopping it (SIGTERM, then SIGKILL after {Grace})", EventName = "UpgradeSuccessorNotGreeting")]
    public static partial void UpgradeSuccessorNotGreeting(this ILogger logger, string trigger, int processId, TimeSpan handoffTimeout, TimeSpan grace);

    [LoggerMessage(121, LogLevel.Warning, "Upgrade ({Trigger}): successor pid {ProcessId} still ran {Grace} after SIGTERM: killed it and its children (SIGKILL)", EventName = "UpgradeSuccessorKilled")]
    public static partial void UpgradeSuccessorKilled(this ILogger logger, string trigger, int processId, TimeSpan grace);

    [LoggerMessage(140, LogLevel.Information, "Content root {ContentRoot}, environment {EnvironmentName}; configuration files: {ConfigurationFiles}", EventName = "StartupConfiguration")]
    public static partial void StartupConfiguration(this ILogger logger, string contentRoot, string environmentName, string configurationFiles);

    [LoggerMessage(141, LogLevel.Critical, "Not taking over from pid {ProcessId}: this process would serve none of the endpoints it was handed ({InheritedEndpoints}), only {ConfiguredEndpoints}, so every port the running process serves would close. It read its configuration from content root {ContentRoot} (environment {EnvironmentName}; configuration files: {ConfigurationFiles}){EndpointHint}. The running process keeps serving; this process stops with exit code {ExitCode}. Start the new version so that it reads its own configuration (in its own folder: cd there, or pass --contentRoot), or set ZeroDowntime:AllowReplacingAllEndpoints=true if it really moves every endpoint.", EventName = "NoEndpointKept")]
    public static partial void NoEndpointKept(this ILogger logger, int processId, string inheritedEndpoints, string configuredEndpoints, string contentRoot, string environmentName, string configurationFiles, string endpointHint, int exitCode);

    [LoggerMessage(142, LogLevel.Warning, "Replacing every endpoint of pid {ProcessId} ({InheritedEndpoints}) with {ConfiguredEndpoints}, as ZeroDowntime:AllowReplacingAllEndpoints allows: the inherited listeners close when this process takes over (content root {ContentRoot}, environment {EnvironmentName})", EventName = "ReplacingAllEndpoints")]
    public static partial void ReplacingAllEndpoints(this ILogger logger, int processId, string inheritedEndpoints, string configuredEndpoints, string contentRoot, string environmentName);

    [LoggerMessage(180, LogLevel.Information, "Adopted listener {Key} on {EndPoint} (fd {Fd}) passed at start (LISTEN_FDS, name '{Name}')", EventName = "ListenerActivated")]
    public static partial void ListenerActivated(this ILogger logger, string key, string endPoint, int fd, string name);

    [LoggerMessage(181, LogLevel.Information, "{Count} descriptor(s) passed at start (LISTEN_FDS) are not listening stream sockets: left as they are (fds {Fds})", EventName = "ActivatedDescriptorsIgnored")]
    public static partial void ActivatedDescriptorsIgnored(this ILogger logger, int count, string fds);

    [LoggerMessage(182, LogLevel.Information, "Stored listener {Key} with the service manager (FDSTORE=1, FDNAME={Name}, fd {Fd})", EventName = "ListenerStored")]
    public static partial void ListenerStored(this ILogger logger, string key, string name, int fd);

    [LoggerMessage(183, LogLevel.Information, "Removed listener {Key} from the service manager's store (FDSTOREREMOVE=1, FDNAME={Name})", EventName = "ListenerUnstored")]
    public static partial void ListenerUnstored(this ILogger logger, string key, string name);

    [LoggerMessage(184, LogLevel.Warning, "The service manager's fd store did not take '{Message}': {Error}", EventName = "FdStoreFailed")]
    public static partial void FdStoreFailed(this ILogger logger, string message, string error);

    [LoggerMessage(200, LogLevel.Information, "Drain: closing {WebSockets} WebSocket(s) with 1001 Going Away and ending {EventStreams} event stream(s)", EventName = "LongLivedClosing")]
    public static partial void LongLivedClosing(this ILogger logger, int webSockets, int eventStreams);

    [LoggerMessage(201, LogLevel.Information, "Drain: asking {Count} SignalR connection(s) to close with a reconnect allowed", EventName = "SignalRClosing")]
    public static partial void SignalRClosing(this ILogger logger, int count);

    [LoggerMessage(202, LogLevel.Warning, "Drain: a WebSocket's peer did not answer the close frame within {Timeout}; aborted", EventName = "WebSocketCloseTimedOut")]
    public static partial void WebSocketCloseTimedOut(this ILogger logger, TimeSpan timeout);

    [LoggerMessage(203, LogLevel.Error, "Drain: an application callback on an event stream's RequestAborted threw; the drain goes on", EventName = "EventStreamCallbackFailed")]
    public static partial void EventStreamCallbackFailed(this ILogger logger, Exception exception);

    [LoggerMessage(210, LogLevel.Warning, "Drain: {Newer} newer generation(s) drain beside the server (generations {Generations}), more than ZeroDowntime:MaxDrainingGenerations ({Max}) with this one (generation {Generation}): ending this drain at once", EventName = "DrainingGenerationsExceeded")]
    public static partial void DrainingGenerationsExceeded(this ILogger logger, int newer, string generations, int max, long generation);

    [LoggerMessage(211, LogLevel.Warning, "Drain ended after {ElapsedMs:0} ms by ZeroDowntime:MaxDrainingGenerations: {Aborted} connection(s) aborted; exiting", EventName = "DrainEndedByLimit")]
    public static partial void DrainEndedByLimit(this ILogger logger, double elapsedMs, int aborted);

    [LoggerMessage(212, LogLevel.Warning, "Drain: could not write or watch the draining-generation state file {Path} ({Detail}); this generation is neither counted nor listed by the others", EventName = "DrainingStateFileFailed")]
    public static partial void DrainingStateFileFailed(this ILogger logger, string path, string detail);
}
