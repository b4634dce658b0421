using System.Diagnostics;
using Microsoft.Extensions.DependencyInjection.Extensions;
using ZeroDowntime.Hosting;

namespace ZeroDowntime.Sample;

/// <summary>
/// When this process took over: its first <see cref="IHandoffParticipant.AcquireAsync"/> call, whatever the reason (the
/// commit for a successor, the start of serving for a first start, a predecessor that vanished), on the process's
/// <see cref="Stopwatch"/>. Only the public participant seam, no library internals. A release or an abandon changes
/// nothing: a process that took over once has a moment of taking over for good (what Sample:FailRequestsAfterMs counts from).
/// </summary>
internal sealed class TakeoverClock : IHandoffParticipant
{
    private long _takenOverAt; // Stopwatch timestamp of the first acquire; 0 until then
    private int _reason = -1;

    /// <summary>Registers the clock once as a singleton and as a participant, however many features use it.</summary>
    public static void Register(IServiceCollection services)
    {
        services.TryAddSingleton<TakeoverClock>();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHandoffParticipant, TakeoverClock>(sp => sp.GetRequiredService<TakeoverClock>()));
    }

    /// <summary>Time since the first acquire, or null before it.</summary>
    public TimeSpan? SinceTakeover => Volatile.Read(ref _takenOverAt) is var at and not 0 ? Stopwatch.GetElapsedTime(at) : null;

    /// <summary>The reason of the first acquire, or null before it.</summary>
    public HandoffAcquireReason? Reason => Volatile.Read(ref _reason) is var reason and >= 0 ? (HandoffAcquireReason)reason : null;

    public Task AcquireAsync(HandoffAcquireReason reason, CancellationToken cancellationToken)
    {
        // The reason first, so that a reader who sees the moment also sees why.
        if (Interlocked.CompareExchange(ref _reason, (int)reason, -1) == -1)
        {
            Volatile.Write(ref _takenOverAt, Stopwatch.GetTimestamp());
        }

        return Task.CompletedTask;
    }

    public Task ReleaseAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task AbandonAsync(string reason, CancellationToken cancellationToken) => Task.CompletedTask;
}
