using System.Globalization;
using ZeroDowntime.Hosting;

namespace ZeroDowntime.Sample;

/// <summary>
/// <c>Sample:FailRequestsAfterMs=N</c> (read once at start; absent or negative: never): from N ms after this process
/// took over (<see cref="TakeoverClock"/>) on, <c>GET /</c> answers 500 with a body exactly as long as the 200 one
/// (52 bytes: the pid zero-padded to 7 digits in both), so that Apache Bench counts the answers as "Non-2xx responses"
/// and not as length failures. Warm-up requests (<see cref="IZeroDowntimeWarmupFeature"/>) never fail. Every other
/// endpoint answers as usual. A release that breaks after it has committed, for the probation's proofs (issue 20).
/// </summary>
internal sealed partial class FailRequestsAfterTakeover
{
    /// <summary>The configuration key.</summary>
    public const string Key = "Sample:FailRequestsAfterMs";

    private readonly TakeoverClock _clock;
    private readonly ILogger<FailRequestsAfterTakeover> _logger;
    private readonly int _afterMs;
    private volatile bool _failing; // once true, no more clock reads
    private int _announced;

    private FailRequestsAfterTakeover(int afterMs, TakeoverClock clock, ILogger<FailRequestsAfterTakeover> logger)
    {
        _afterMs = afterMs;
        _clock = clock;
        _logger = logger;
        Body = $"Failing on purpose: FailRequestsAfterMs pid {Environment.ProcessId.ToString("D7", CultureInfo.InvariantCulture)}\n";
        LogFailRequestsPlanned(logger, afterMs);
    }

    /// <summary>The body of a failing answer, as long as the 200 one.</summary>
    public string Body { get; }

    /// <summary>Registers the plan when the key is 0 or more; nothing otherwise.</summary>
    public static void Register(WebApplicationBuilder builder)
    {
        int afterMs = builder.Configuration.GetValue(Key, -1);
        if (afterMs < 0)
        {
            return;
        }

        TakeoverClock.Register(builder.Services);
        builder.Services.AddSingleton(sp => new FailRequestsAfterTakeover(afterMs, sp.GetRequiredService<TakeoverClock>(), sp.GetRequiredService<ILogger<FailRequestsAfterTakeover>>()));
    }

    /// <summary>True when this request of <c>/</c> must be answered with 500 and <see cref="Body"/>.</summary>
    public bool Fails(HttpContext context)
    {
        if (context.Features.Get<IZeroDowntimeWarmupFeature>() is not null)
        {
            return false;
        }

        if (!_failing)
        {
            if (_clock.SinceTakeover is not { } since || since.TotalMilliseconds < _afterMs)
            {
                return false;
            }

            _failing = true;
        }

        if (Volatile.Read(ref _announced) == 0 && Interlocked.Exchange(ref _announced, 1) == 0)
        {
            LogFailingRequests(_logger, _afterMs, _clock.Reason);
        }

        return true;
    }

    [LoggerMessage(EventId = 1002, EventName = "FailRequestsPlanned", Level = LogLevel.Information,
        Message = "Will answer 500 on / from {Ms} ms after taking over (Sample:FailRequestsAfterMs)")]
    private static partial void LogFailRequestsPlanned(ILogger logger, int ms);

    [LoggerMessage(EventId = 1003, EventName = "FailingRequests", Level = LogLevel.Information,
        Message = "Answering 500 on / from now on: {Ms} ms after taking over ({Reason}) (Sample:FailRequestsAfterMs)")]
    private static partial void LogFailingRequests(ILogger logger, int ms, HandoffAcquireReason? reason);
}
