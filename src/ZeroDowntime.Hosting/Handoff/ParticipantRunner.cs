using Microsoft.Extensions.Logging;
using ZeroDowntime.Hosting.Logging;
using ZeroDowntime.Hosting.Testing;
using ZeroDowntime.Hosting.Warmup;

namespace ZeroDowntime.Hosting.Handoff;

/// <summary>
/// Calls the <see cref="IHandoffParticipant"/>s at the fixed points of a handoff: each off the caller's thread with a
/// deadline on the <see cref="TimeProvider"/>, so that neither a synchronous nor a hung participant can stall the
/// handoff.
/// </summary>
internal sealed class ParticipantRunner(IEnumerable<IHandoffParticipant> participants, ILogger logger, TimeProvider time)
{
    /// <summary>The longest one participant (a log file handoff) may hold up a step of the handoff.</summary>
    internal static readonly TimeSpan Timeout = TimeSpan.FromSeconds(5);

    // The fault seam's participant (present only when a test build holds the in-release step, HandoffFaultPoints) goes
    // last, as if the app had registered it after every other participant: its hanging release must find the others
    // (the log files) already released, which is the case its tests are about.
    public IReadOnlyList<IHandoffParticipant> All { get; } = [.. participants.OrderBy(p => p is FaultPointParticipant)];

    /// <summary>
    /// Runs <paramref name="action"/> on each of <paramref name="participants"/> in order. One that fails or overruns
    /// is logged and the handoff goes on (an overrunning one is still observed: what it throws later is logged too).
    /// </summary>
    public async Task NotifyAsync(string stage, IReadOnlyList<IHandoffParticipant> participants, Func<IHandoffParticipant, Task> action)
    {
        foreach (var participant in participants)
        {
            var work = Task.Run(() => action(participant));
            try
            {
                await work.WaitAsync(Timeout, time);
            }
            catch (TimeoutException ex) when (!ReferenceEquals(ex, work.Exception?.GetBaseException()))
            {
                logger.ParticipantFailed(stage, ex);
                _ = work.ContinueWith(static (t, state) => ((ILogger)state!).ParticipantFailed("late", t.Exception!.GetBaseException()), logger,
                    CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);
            }
            catch (Exception ex)
            {
                logger.ParticipantFailed(stage, ex);
            }
        }
    }

    public Task AcquireAsync(HandoffAcquireReason reason, IReadOnlyList<IHandoffParticipant> participants, CancellationToken cancellationToken) =>
        NotifyAsync("acquire", participants, p => p.AcquireAsync(reason, cancellationToken));

    /// <summary>
    /// Releases the participants in order. Returns null when every release ended in time (one that throws is logged:
    /// its resource is simply not handed over), or the release that overran, which is still running; those after it
    /// were not asked. <paramref name="released"/> gets every participant asked.
    /// </summary>
    public async Task<Task?> ReleaseAllAsync(List<IHandoffParticipant> released, CancellationToken cancellationToken)
    {
        foreach (var participant in All)
        {
            released.Add(participant);
            // Not cancelled by the token (only handed to the participant): an overrun is judged by the deadline alone.
            var release = Task.Run(() => participant.ReleaseAsync(cancellationToken), CancellationToken.None);
            try
            {
                await release.WaitAsync(Timeout, time, CancellationToken.None);
            }
            catch (TimeoutException ex) when (!ReferenceEquals(ex, release.Exception?.GetBaseException()))
            {
                // The one place that decides a release that ends at its deadline: WaitAsync throws only when the timer
                // fired before the release completed, so the deadline won and this is an overrun, even if the release
                // has completed by the time this line runs (re-checking IsCompleted here made the outcome depend on
                // thread-pool timing). The caller then does not commit and acquires again what was released.
                logger.ParticipantOverran(participant.GetType().Name, Timeout);
                return release;
            }
            catch (Exception ex)
            {
                logger.ParticipantFailed("release", ex);
            }
        }

        return null;
    }
}
