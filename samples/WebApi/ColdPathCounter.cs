using System.Globalization;
using ZeroDowntime.Hosting;

namespace ZeroDowntime.Sample;

/// <summary>
/// Counts the runs of the sample's <c>/</c> endpoint, warm-up requests apart (they carry
/// <see cref="IZeroDowntimeWarmupFeature"/>), and remembers whether its very first run in this process (its cold path:
/// JIT compilation of the endpoint, routing and Kestrel's parser) was a warm-up request or a client's. Read it at
/// <c>/stats/root</c>: <c>calls=3 warmup=64 first=warmup</c>.
/// </summary>
internal sealed class ColdPathCounter
{
    private long _clientCalls;
    private long _warmupCalls;
    private int _firstWasWarmup = -1;

    public void Count(HttpContext context)
    {
        bool warmup = context.Features.Get<IZeroDowntimeWarmupFeature>() is not null;
        Interlocked.CompareExchange(ref _firstWasWarmup, warmup ? 1 : 0, -1);
        Interlocked.Increment(ref warmup ? ref _warmupCalls : ref _clientCalls);
    }

    public string Describe() => string.Create(CultureInfo.InvariantCulture,
        $"calls={Interlocked.Read(ref _clientCalls)} warmup={Interlocked.Read(ref _warmupCalls)} first={_firstWasWarmup switch { 1 => "warmup", 0 => "client", _ => "none" }}\n");
}
