using Microsoft.Extensions.Logging;

namespace ZeroDowntime.Hosting.Logging;

/// <summary>Events 220-239: probation after the commit, and the rollback (docs/probation-design.md, section 10).</summary>
internal static partial class ZeroDowntimeLog
{
    [LoggerMessage(220, LogLevel.Information, "On probation until {EndsAt:O}: pid {PredecessorPid} stands by (a 5xx ratio above {MaxErrorRatio} over {ErrorWindow} with at least {MinRequests} responses, or a check tagged zerodowntime-probation Unhealthy for {UnhealthyFor}, rolls back)", EventName = "ProbationStarted")]
    public static partial void ProbationStarted(this ILogger logger, DateTimeOffset endsAt, int predecessorPid, double maxErrorRatio, TimeSpan errorWindow, int minRequests, TimeSpan unhealthyFor);

    [LoggerMessage(221, LogLevel.Information, "Standing by for pid {SuccessorPid} until {EndsAt:O}: listener copies kept, gate closed", EventName = "StandingBy")]
    public static partial void StandingBy(this ILogger logger, int successorPid, DateTimeOffset endsAt);

    [LoggerMessage(222, LogLevel.Information, "Probation of pid {SuccessorPid} ended without a rollback ({Reason})", EventName = "ProbationPassed")]
    public static partial void ProbationPassed(this ILogger logger, int successorPid, string reason);

    [LoggerMessage(223, LogLevel.Information, "Pid {PredecessorPid} ended its probation ({Reason}): no way back from now on", EventName = "ProbationEndedForSuccessor")]
    public static partial void ProbationEndedForSuccessor(this ILogger logger, int predecessorPid, string reason);

    [LoggerMessage(224, LogLevel.Warning, "Rolling back to pid {PredecessorPid} ({Origin}): {Reason}", EventName = "RollbackRequested")]
    public static partial void RollbackRequested(this ILogger logger, int predecessorPid, string origin, string reason);

    [LoggerMessage(225, LogLevel.Warning, "5xx ratio {Ratio:0.000} ({Errors} of {Requests} responses in the last {ErrorWindow}) is above MaxErrorRatio {MaxErrorRatio}", EventName = "RollbackErrorRatio")]
    public static partial void RollbackErrorRatio(this ILogger logger, double ratio, long errors, long requests, TimeSpan errorWindow, double maxErrorRatio);

    [LoggerMessage(226, LogLevel.Warning, "Health check {CheckName} has been Unhealthy for {Lasted} (UnhealthyFor {UnhealthyFor}): {Description}", EventName = "RollbackUnhealthyCheck")]
    public static partial void RollbackUnhealthyCheck(this ILogger logger, string checkName, TimeSpan lasted, TimeSpan unhealthyFor, string description);

    [LoggerMessage(227, LogLevel.Warning, "Pid {SuccessorPid} asks for a rollback ({Origin}): {Reason}; accepting again", EventName = "RollbackAccepted")]
    public static partial void RollbackAccepted(this ILogger logger, int successorPid, string origin, string reason);

    [LoggerMessage(228, LogLevel.Information, "Handed back to pid {PredecessorPid} {Milliseconds:0.0} ms after asking: draining, then exiting 81", EventName = "HandedBack")]
    public static partial void HandedBack(this ILogger logger, int predecessorPid, double milliseconds);

    [LoggerMessage(229, LogLevel.Warning, "Serving again: rolled back from pid {SuccessorPid} ({Origin}: {Reason}), {Milliseconds:0.0} ms after the request", EventName = "RolledBack")]
    public static partial void RolledBack(this ILogger logger, int successorPid, string origin, string reason, double milliseconds);

    [LoggerMessage(230, LogLevel.Information, "Rollback refused: {Reason}", EventName = "RollbackRefused")]
    public static partial void RollbackRefused(this ILogger logger, string reason);

    [LoggerMessage(231, LogLevel.Warning, "Rollback to pid {PredecessorPid} given up ({Reason}): serving on with no way back", EventName = "RollbackGivenUp")]
    public static partial void RollbackGivenUp(this ILogger logger, int predecessorPid, string reason);

    [LoggerMessage(232, LogLevel.Information, "{Signal} ignored: {Reason}", EventName = "RollbackSignalIgnored")]
    public static partial void RollbackSignalIgnored(this ILogger logger, string signal, string reason);

    [LoggerMessage(233, LogLevel.Debug, "Health check {CheckName} (tagged zerodowntime-probation) is Unhealthy: {Description}", EventName = "ProbationCheckUnhealthy")]
    public static partial void ProbationCheckUnhealthy(this ILogger logger, string checkName, string description);

    [LoggerMessage(234, LogLevel.Information, "No probation for this handoff: {Reason}", EventName = "ProbationNotAgreed")]
    public static partial void ProbationNotAgreed(this ILogger logger, string reason);

    [LoggerMessage(235, LogLevel.Warning, "Pid {SuccessorPid} released this process while it rolled back: closing the gate and the listener copies again, draining what it accepted", EventName = "RollbackWithdrawn")]
    public static partial void RollbackWithdrawn(this ILogger logger, int successorPid);
}
