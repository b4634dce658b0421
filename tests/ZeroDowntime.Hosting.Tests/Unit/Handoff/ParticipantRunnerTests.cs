using Microsoft.Extensions.Time.Testing;
using ZeroDowntime.Hosting.Handoff;
using ZeroDowntime.Hosting.Tests.Infrastructure;
using ZeroDowntime.Hosting.Warmup;

namespace ZeroDowntime.Hosting.Tests.Unit;

/// <summary>How the participants' deadlines are judged: by the clock alone, never by thread-pool timing.</summary>
public sealed class ParticipantRunnerTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(10);

    // Issue 18 item 13: the deadline fires, and the release completes before the runner's continuation runs. The
    // runner used to re-check IsCompleted there and let the commit go ahead as if nothing had overrun; the outcome then
    // depended on which thread ran first. The deadline decides: it is an overrun.
    [Fact]
    public async Task ReleaseAllAsync_ReleaseEndsAfterTheDeadlineFiredBeforeTheRunnerWakes_IsAnOverrun()
    {
        var time = new FakeTimeProvider();
        // Completes the release synchronously on the test's thread (no RunContinuationsAsynchronously), so that the
        // runner's task of it has completed before the runner is pumped.
        var finishRelease = new TaskCompletionSource();
        var participant = new HeldRelease(finishRelease.Task);
        var logger = new RecordingLogger<ParticipantRunnerTests>();
        var runner = new ParticipantRunner([participant], logger, time);
        var released = new List<IHandoffParticipant>();

        using var context = new ManualSynchronizationContext();
        var outcome = context.Run(() => runner.ReleaseAllAsync(released, CancellationToken.None));
        await participant.Started.Task.WaitAsync(Bound);

        time.Advance(ParticipantRunner.Timeout); // the deadline fires: the runner's continuation is posted, not run
        await context.WaitForPostedAsync(Bound);
        finishRelease.SetResult(); // the release ends before the runner wakes
        context.PumpUntil(outcome, Bound);

        var overrun = await outcome;
        Assert.NotNull(overrun);
        Assert.True(overrun!.IsCompletedSuccessfully);
        Assert.Single(logger.Named("ParticipantOverran"));
        Assert.Empty(logger.Named("ParticipantFailed"));
    }

    [Fact]
    public async Task ReleaseAllAsync_ReleaseEndsBeforeTheDeadline_IsNoOverrun()
    {
        var time = new FakeTimeProvider();
        var finishRelease = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var participant = new HeldRelease(finishRelease.Task);
        var runner = new ParticipantRunner([participant], new RecordingLogger<ParticipantRunnerTests>(), time);

        var outcome = runner.ReleaseAllAsync([], CancellationToken.None);
        await participant.Started.Task.WaitAsync(Bound);
        time.Advance(ParticipantRunner.Timeout - TimeSpan.FromTicks(1));
        finishRelease.SetResult();

        Assert.Null(await outcome.WaitAsync(Bound));
    }

    // A release that itself throws TimeoutException in time is a failed release (logged, the handoff goes on), not
    // an overrun: only the runner's own deadline makes an overrun.
    [Fact]
    public async Task ReleaseAllAsync_ReleaseThrowsTimeoutExceptionInTime_IsAFailureNotAnOverrun()
    {
        var participant = new HeldRelease(Task.FromException(new TimeoutException("the participant's own timeout")));
        var logger = new RecordingLogger<ParticipantRunnerTests>();
        var runner = new ParticipantRunner([participant], logger, new FakeTimeProvider());

        Assert.Null(await runner.ReleaseAllAsync([], CancellationToken.None).WaitAsync(Bound));
        Assert.Single(logger.Named("ParticipantFailed"));
        Assert.Empty(logger.Named("ParticipantOverran"));
    }

    private sealed class HeldRelease(Task release) : IHandoffParticipant
    {
        public TaskCompletionSource Started { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Task AcquireAsync(HandoffAcquireReason reason, CancellationToken cancellationToken) => Task.CompletedTask;

        public Task ReleaseAsync(CancellationToken cancellationToken)
        {
            Started.TrySetResult();
            return release;
        }

        public Task AbandonAsync(string reason, CancellationToken cancellationToken) => Task.CompletedTask;
    }
}
