namespace ZeroDowntime.Hosting.Probation;

/// <summary>
/// The share of 5xx responses that a release on probation served over the last <see cref="Window"/>, kept in
/// <see cref="BucketCount"/> time buckets of fixed size (a ring: memory does not grow with the traffic), and the
/// decision "above <see cref="MaxErrorRatio"/> with at least <see cref="MinRequests"/> responses". <see cref="Record"/>
/// runs once per response on the request path: one volatile read and one or two interlocked increments, no clock read,
/// no lock, no allocation. The ring moves on from a timer of the <see cref="TimeProvider"/> once per bucket (which empties
/// the slot that the new bucket reuses before it is counted in), and <see cref="Evaluate"/> moves it on to the clock
/// first. Evaluate runs off the request path (a timer), since the ratio also rises when older, healthier buckets leave
/// the window.
/// </summary>
/// <remarks>
/// The window is measured to one bucket: a reading covers the current bucket and the <see cref="BucketCount"/> - 1
/// before it, so between 19/20 of <see cref="Window"/> and all of it. A response recorded while the ring's timer is late
/// (a starved thread pool, a frozen process) counts in the bucket that the ring last moved to; a response recorded by a
/// thread that stalled for a whole window between reading the bucket and counting may land in a newer bucket. Nothing
/// else is lost or counted twice.
/// </remarks>
internal sealed class ErrorRatioMonitor : IDisposable
{
    /// <summary>How many buckets the window is divided into.</summary>
    public const int BucketCount = 20;

    private readonly Bucket[] _buckets = new Bucket[BucketCount];
    private readonly Lock _rollover = new();
    private readonly TimeProvider _time;
    private readonly ITimer _timer;
    private readonly long _start;
    private readonly long _bucketLength;
    private long _epoch;

    public ErrorRatioMonitor(TimeSpan window, double maxErrorRatio, int minRequests, TimeProvider time)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(window, TimeSpan.FromMilliseconds(BucketCount));
        ArgumentOutOfRangeException.ThrowIfNegative(maxErrorRatio);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(maxErrorRatio, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(minRequests, 1);
        ArgumentNullException.ThrowIfNull(time);
        Window = window;
        MaxErrorRatio = maxErrorRatio;
        MinRequests = minRequests;
        _time = time;
        _bucketLength = Math.Max(1, (long)(window.TotalSeconds * time.TimestampFrequency / BucketCount));
        for (int i = 1; i < _buckets.Length; i++)
        {
            _buckets[i].Epoch = -1;
        }

        _start = time.GetTimestamp();
        _timer = time.CreateTimer(static state => ((ErrorRatioMonitor)state!).MoveOn(), this, BucketLength, BucketLength);
    }

    /// <summary>A monitor with the thresholds of <paramref name="settings"/>.</summary>
    public ErrorRatioMonitor(ProbationSettings settings, TimeProvider time)
        : this(settings.ErrorWindow, settings.MaxErrorRatio, settings.MinRequests, time)
    {
    }

    public TimeSpan Window { get; }

    public double MaxErrorRatio { get; }

    public int MinRequests { get; }

    /// <summary>The length of one bucket: how often the ring moves on, and how often <see cref="Evaluate"/> is worth calling.</summary>
    public TimeSpan BucketLength => Window / BucketCount;

    /// <summary>
    /// Counts one response that the release served. <paramref name="isWarmup"/> (a request of the library's warm-up,
    /// <c>IZeroDowntimeWarmupFeature</c>) is not counted. Every status from 500 to 599 is an error; the caller passes 500
    /// for a request whose handler threw before a response was sent.
    /// </summary>
    public void Record(int statusCode, bool isWarmup)
    {
        if (isWarmup)
        {
            return;
        }

        ref var bucket = ref _buckets[Volatile.Read(ref _epoch) % BucketCount];

        // Requests before errors, and Evaluate reads them the other way round: a reading never has more errors than requests.
        Interlocked.Increment(ref bucket.Requests);
        if (statusCode is >= 500 and <= 599)
        {
            Interlocked.Increment(ref bucket.Errors);
        }
    }

    /// <summary>The responses and errors of the window now, and whether they pass the thresholds.</summary>
    public ErrorRatioReading Evaluate()
    {
        long current = MoveOn();
        long requests = 0;
        long errors = 0;
        for (int i = 0; i < _buckets.Length; i++)
        {
            ref var bucket = ref _buckets[i];
            long epoch = Volatile.Read(ref bucket.Epoch);
            if (epoch > current - BucketCount && epoch <= current)
            {
                errors += Volatile.Read(ref bucket.Errors);
                requests += Volatile.Read(ref bucket.Requests);
            }
        }

        return new ErrorRatioReading(requests, errors, Window, MaxErrorRatio, MinRequests);
    }

    public void Dispose() => _timer.Dispose();

    /// <summary>
    /// Moves the ring on to the bucket of the clock's time: each bucket that starts gets its slot emptied before
    /// <see cref="Record"/> can count in it. Catches up on every bucket a late timer missed. Returns the current bucket.
    /// </summary>
    private long MoveOn()
    {
        lock (_rollover)
        {
            long target = (_time.GetTimestamp() - _start) / _bucketLength;
            for (long next = Math.Max(_epoch + 1, target - BucketCount + 1); next <= target; next++)
            {
                ref var bucket = ref _buckets[next % BucketCount];
                Volatile.Write(ref bucket.Requests, 0);
                Volatile.Write(ref bucket.Errors, 0);
                Volatile.Write(ref bucket.Epoch, next);
            }

            if (target > _epoch)
            {
                Volatile.Write(ref _epoch, target);
            }

            return _epoch;
        }
    }

    private struct Bucket
    {
        /// <summary>Which bucket since the start this slot counts (-1: none yet).</summary>
        public long Epoch;

        public long Requests;

        public long Errors;
    }
}
