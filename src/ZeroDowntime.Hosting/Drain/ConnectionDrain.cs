using Microsoft.Extensions.Logging;
using ZeroDowntime.Hosting.Diagnostics;
using ZeroDowntime.Hosting.Logging;

namespace ZeroDowntime.Hosting.Drain;

/// <summary>
/// The drain of the connections this process accepted: wait for them to end after the goodbye, ask the idle ones to
/// close after <see cref="ZeroDowntimeOptions.IdleConnectionGracePeriod"/>, abort what is left at
/// <see cref="ZeroDowntimeOptions.DrainTimeout"/>. The same drain ends a handoff, an abandoned successor and a plain
/// shutdown.
/// </summary>
internal sealed class ConnectionDrain(ConnectionTracker tracker, ILogger logger, ZeroDowntimeMetrics metrics, TimeProvider time)
{
    /// <summary>The drain's log (its category), for the parts of a drain that run elsewhere.</summary>
    public ILogger Logger => logger;

    /// <summary>The connections still open.</summary>
    public int Count => tracker.Count;

    /// <summary>
    /// Returns true when the drain ended (all connections closed, the deadline passed, or <paramref name="endNow"/> cut
    /// it short: then what is still open is aborted at once), false when <paramref name="abandon"/> cancelled it (a successor lost after the commit: this process serves again and its connections stay open; a plain shutdown passes none).
    /// </summary>
    public async Task<bool> RunAsync(ZeroDowntimeOptions options, CancellationToken abandon, CancellationToken endNow = default)
    {
        if (abandon.IsCancellationRequested)
        {
            tracker.LongLived.Resume();
            return false;
        }

        long start = time.GetTimestamp();
        var grace = options.IdleConnectionGracePeriod;
        var deadline = options.DrainTimeout;
        logger.DrainStarted(tracker.Count, grace, deadline);
        if (options.CloseLongLivedConnections)
        {
            tracker.LongLived.CloseWebSocketsAndEventStreams();
        }

        using var either = CancellationTokenSource.CreateLinkedTokenSource(abandon, endNow);
        var waits = either.Token;
        bool endedByLimit = false;
        try
        {
            if (!await tracker.WaitUntilEmptyAsync(grace, time, waits))
            {
                logger.IdleConnectionsClosing(tracker.RequestCloseAll());
                if (options.CloseLongLivedConnections)
                {
                    // Only now: a SignalR client reconnects at once, and must not negotiate over a pooled keep-alive
                    // connection to this process (the successor would not know that connection id).
                    tracker.LongLived.CloseSignalR();
                }

                while (true)
                {
                    var remaining = deadline - time.GetElapsedTime(start);
                    if (remaining <= TimeSpan.Zero
                        || await tracker.WaitUntilEmptyAsync(remaining < TimeSpan.FromSeconds(1) ? remaining : TimeSpan.FromSeconds(1), time, waits))
                    {
                        break;
                    }

                    // Connections accepted just before the gate closed may not have been known to Kestrel yet.
                    tracker.RequestCloseAll();
                }
            }
        }
        catch (OperationCanceledException) when (abandon.IsCancellationRequested)
        {
            tracker.LongLived.Resume();
            return false;
        }
        catch (OperationCanceledException) when (endNow.IsCancellationRequested)
        {
            // Too many generations drain (MaxDrainingGenerations): this one, the oldest, ends now; below, as at the deadline.
            endedByLimit = true;
        }

        int aborted = tracker.Count == 0 ? 0 : endedByLimit
            ? tracker.AbortAll("Too many generations drain (ZeroDowntime:MaxDrainingGenerations): the oldest ends its drain.")
            : tracker.AbortAll();
        var took = time.GetElapsedTime(start);
        if (endedByLimit)
        {
            logger.DrainEndedByLimit(took.TotalMilliseconds, aborted);
        }
        else
        {
            logger.DrainCompleted(took.TotalMilliseconds, aborted);
        }

        metrics.Drained(took, aborted);
        return true;
    }
}
