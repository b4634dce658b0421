using Microsoft.Extensions.Logging;

namespace ZeroDowntime.Hosting.NLog.Internal;

/// <summary>
/// Connects <see cref="LogFileHandoff"/> to the handoff's fixed points (<see cref="IHandoffParticipant"/>) and logs
/// what happened to each file. The core calls <see cref="AcquireAsync"/> in every case, with or without handoffs.
/// Disposed with the host: a process that never owned its files then writes its held lines to archives of its own (a
/// successor whose start-up failed, which <see cref="IHandoffParticipant.AbandonAsync"/> is not told about).
/// </summary>
internal sealed class LogFileHandoffParticipant(LogFileHandoff handoff, ILogger logger) : IHandoffParticipant, IDisposable
{
    /// <summary>
    /// The participant, once the file targets are known: it is resolved when the host builds its hosted services,
    /// before any of them starts, so the line that says which files are held is the first of this process.
    /// </summary>
    public static LogFileHandoffParticipant Create(LogFileHandoff handoff, ILoggerFactory loggerFactory)
    {
        var logger = loggerFactory.CreateLogger(LogFileHandoffLog.Category);

        // A configuration activated before UseZeroDowntimeNLog ran (an early LogManager.Setup() in Program.cs).
        handoff.InstallActive();
        int count = handoff.FileCount;
        if (count == 0)
        {
            logger.NoLogFiles();
        }
        else
        {
            logger.LogFilesFound(count);
        }

        return new LogFileHandoffParticipant(handoff, logger);
    }

    public Task AcquireAsync(HandoffAcquireReason reason, CancellationToken cancellationToken)
    {
        if (handoff.State == LogFileOwnership.Released)
        {
            if (reason is HandoffAcquireReason.NotCommitted or HandoffAcquireReason.RolledBack)
            {
                TakeBack(reason == HandoffAcquireReason.RolledBack ? "Rolled back (the successor released it during its probation)" : "The handoff did not commit");
            }
            else
            {
                // Reclaimed: the successor heard Committed, so it may have created the original name and written its
                // lines there before it was lost. Renaming the archive over it would lose them, and appending would mix
                // two processes in one file: stay on the archive; the next handoff's successor moves that file away as
                // a dead owner's (event 65).
                logger.LogFilesStayArchived();
            }

            return Task.CompletedTask;
        }

        foreach (var outcome in handoff.Acquire())
        {
            if (outcome.OrphanArchivedTo is not null)
            {
                logger.OrphanLogFileArchived(outcome.Path, outcome.OrphanOwner ?? OwnerRecord.Unknown, outcome.OrphanArchivedTo);
            }

            if (reason == HandoffAcquireReason.PredecessorVanished)
            {
                logger.LogFileTakenOver(outcome.Path);
            }

            logger.LogFileAcquired(outcome.Path, reason.ToString(), outcome.HeldLines, outcome.SpilledLines, outcome.HeldFor.TotalMilliseconds);
            LogError(outcome);
        }

        return Task.CompletedTask;
    }

    public Task ReleaseAsync(CancellationToken cancellationToken)
    {
        foreach (var outcome in handoff.Release())
        {
            logger.LogFileReleased(outcome.Path, outcome.WrittenTo!);
            LogError(outcome);
        }

        return Task.CompletedTask;
    }

    public Task AbandonAsync(string reason, CancellationToken cancellationToken)
    {
        Abandon(reason);
        return Task.CompletedTask;
    }

    public void Dispose() => Abandon("the host stopped before this process owned its log files");

    private void TakeBack(string occasion)
    {
        foreach (var outcome in handoff.TakeBack())
        {
            if (outcome.TakenBackFrom is { } archive)
            {
                logger.LogFileTakenBack(occasion, outcome.Path, archive);
            }
            else
            {
                logger.LogFileKeptOnArchive(occasion, outcome.Path, outcome.KeptOnArchiveBecause ?? "unknown", outcome.WrittenTo!);
            }

            LogError(outcome);
        }
    }

    private void Abandon(string reason)
    {
        foreach (var outcome in handoff.Abandon())
        {
            logger.LogFileAbandoned(outcome.Path, reason, outcome.HeldLines, outcome.WrittenTo!);
            LogError(outcome);
        }
    }

    private void LogError(LogFileOutcome outcome)
    {
        if (outcome.Error is not null)
        {
            logger.LogFileHandoffFailed(outcome.Path, outcome.Error);
        }
    }
}
