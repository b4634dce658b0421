using Microsoft.Extensions.Logging;

namespace ZeroDowntime.Hosting.NLog.Internal;

/// <summary>
/// Every log line of the NLog integration. Event ids are stable: never reuse or renumber one. They lie in the ranges
/// 60-69 (60 is the core's ParticipantFailed) and 150-159 that ZeroDowntime.Hosting reserves for log file handoff.
/// </summary>
internal static partial class LogFileHandoffLog
{
    /// <summary>The category of these lines.</summary>
    public const string Category = "ZeroDowntime.Hosting.NLog.LogFiles";

    [LoggerMessage(61, LogLevel.Information, "Found {Count} NLog file target(s): their lines are held until this process owns its log files", EventName = "LogFilesFound")]
    public static partial void LogFilesFound(this ILogger logger, int count);

    [LoggerMessage(62, LogLevel.Information, "Log file {Path} acquired ({Reason}): wrote {HeldLines} held line(s) ({SpilledLines} via the side file), held for {HeldMs:0} ms", EventName = "LogFileAcquired")]
    public static partial void LogFileAcquired(this ILogger logger, string path, string reason, int heldLines, int spilledLines, double heldMs);

    [LoggerMessage(63, LogLevel.Information, "Log file {Path} released: renamed to {ArchivePath}, where this process writes its remaining lines", EventName = "LogFileReleased")]
    public static partial void LogFileReleased(this ILogger logger, string path, string archivePath);

    [LoggerMessage(64, LogLevel.Warning, "This process never owned log file {Path} ({Reason}): wrote its {HeldLines} held line(s) and writes the rest to {ArchivePath}", EventName = "LogFileAbandoned")]
    public static partial void LogFileAbandoned(this ILogger logger, string path, string reason, int heldLines, string archivePath);

    [LoggerMessage(65, LogLevel.Warning, "Log file {Path} was left by pid {Owner}, which never released it: moved it to {ArchivePath}", EventName = "OrphanLogFileArchived")]
    public static partial void OrphanLogFileArchived(this ILogger logger, string path, string owner, string archivePath);

    [LoggerMessage(66, LogLevel.Warning, "The predecessor vanished during the handoff: took log file {Path} without its release", EventName = "LogFileTakenOver")]
    public static partial void LogFileTakenOver(this ILogger logger, string path);

    [LoggerMessage(67, LogLevel.Error, "Log file {Path}: {Error}", EventName = "LogFileHandoffFailed")]
    public static partial void LogFileHandoffFailed(this ILogger logger, string path, string error);

    [LoggerMessage(68, LogLevel.Information, "No NLog file target found: no log file changes hands", EventName = "NoLogFiles")]
    public static partial void NoLogFiles(this ILogger logger);

    [LoggerMessage(69, LogLevel.Warning, "Serving again after the successor was lost: this process keeps writing to its archive file(s) and does not reclaim the original name(s)", EventName = "LogFilesStayArchived")]
    public static partial void LogFilesStayArchived(this ILogger logger);

    [LoggerMessage(150, LogLevel.Information, "{Occasion}: log file {Path} taken back from {ArchivePath}, where this process wrote since the release; it writes {Path} again", EventName = "LogFileTakenBack")]
    public static partial void LogFileTakenBack(this ILogger logger, string occasion, string path, string archivePath);

    [LoggerMessage(151, LogLevel.Warning, "{Occasion}, but log file {Path} is not taken back ({Reason}): this process keeps writing to {ArchivePath}", EventName = "LogFileKeptOnArchive")]
    public static partial void LogFileKeptOnArchive(this ILogger logger, string occasion, string path, string reason, string archivePath);
}
