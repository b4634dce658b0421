namespace ZeroDowntime.Hosting.Tests.Infrastructure;

/// <summary>A participant whose release and acquire the test holds and lets go.</summary>
internal sealed class GatedParticipant : IHandoffParticipant
{
    public TaskCompletionSource Acquired { get; private set; } = New();

    public TaskCompletionSource Acquiring { get; private set; } = New();

    public TaskCompletionSource FinishAcquire { get; private set; } = New();

    public TaskCompletionSource Releasing { get; } = New();

    public TaskCompletionSource FinishRelease { get; } = New();

    public HandoffAcquireReason? LastReason { get; private set; }

    private bool _holdAcquire;

    public void Reset()
    {
        Acquired = New();
        Acquiring = New();
        FinishAcquire = New();
        _holdAcquire = true;
    }

    public async Task AcquireAsync(HandoffAcquireReason reason, CancellationToken cancellationToken)
    {
        LastReason = reason;
        Acquiring.TrySetResult();
        if (_holdAcquire)
        {
            await FinishAcquire.Task.WaitAsync(TimeSpan.FromSeconds(30), CancellationToken.None);
        }

        Acquired.TrySetResult();
    }

    public async Task ReleaseAsync(CancellationToken cancellationToken)
    {
        Releasing.TrySetResult();
        await FinishRelease.Task.WaitAsync(TimeSpan.FromSeconds(30), CancellationToken.None);
    }

    public Task AbandonAsync(string reason, CancellationToken cancellationToken) => Task.CompletedTask;

    private static TaskCompletionSource New() => new(TaskCreationOptions.RunContinuationsAsynchronously);
}
