using Microsoft.Extensions.Logging;

namespace ZeroDowntime.Hosting.NLog.Internal;

/// <summary>
/// Connects <see cref="LogFileHandoff"/> to the handoff's fixed points (<see cref="IHandoffParticipant"/>) and logs
/// what happened to each file. Disposed with the host: a process that never owned its files then writes its held lines
/// to archives of its own (a successor whose start-up failed).
/// </summary>
internal sealed class LogFileHandoffParticipant : IHandoffParticipant, IDisposable
{
    private readonly LogFileHandoff _handoff;
    private readonly ILogger _logger;

    public LogFileHandoffParticipant(LogFileHandoff handoff, ILoggerFactory loggerFactory)
    {
        _handoff = handoff;
        _logger = loggerFactory.CreateLogger(LogFileHandoffLog.Category);

        // A configuration activated before UseZeroDowntimeNLog ran (an early LogManager.Setup() in Program.cs).
        _handoff.InstallActive();
        int count = _handoff.FileCount;
        if (count == 0)
        {
            _logger.NoLogFiles();
        }
        else
        {
            _logger.LogFilesFound(count);
        }
    }

    public Task AcquireAsync(HandoffAcquireReason reason, CancellationToken cancellationToken)
    {
        if (_handoff.State == LogFileOwnership.Released)
        {
            _logger.LogFilesStayArchived();
            return Task.CompletedTask;
        }

        foreach (var outcome in _handoff.Acquire())
        {
            if (outcome.OrphanArchivedTo is not null)
            {
                _logger.OrphanLogFileArchived(outcome.Path, outcome.OrphanOwner ?? OwnerRecord.Unknown, outcome.OrphanArchivedTo);
            }

            if (reason == HandoffAcquireReason.PredecessorVanished)
            {
                _logger.LogFileTakenOver(outcome.Path);
            }

            _logger.LogFileAcquired(outcome.Path, reason.ToString(), outcome.HeldLines, outcome.SpilledLines, outcome.HeldFor.TotalMilliseconds);
            LogError(outcome);
        }

        return Task.CompletedTask;
    }

    public Task ReleaseAsync(CancellationToken cancellationToken)
    {
        foreach (var outcome in _handoff.Release())
        {
            _logger.LogFileReleased(outcome.Path, outcome.WrittenTo!);
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

    private void Abandon(string reason)
    {
        foreach (var outcome in _handoff.Abandon())
        {
            _logger.LogFileAbandoned(outcome.Path, reason, outcome.HeldLines, outcome.WrittenTo!);
            LogError(outcome);
        }
    }

    private void LogError(LogFileOutcome outcome)
    {
        if (outcome.Error is not null)
        {
            _logger.LogFileHandoffFailed(outcome.Path, outcome.Error);
        }
    }
}
