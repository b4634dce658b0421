using static System.FormattableString;

namespace ZeroDowntime.Hosting.Probation;

/// <summary>
/// One reading of <see cref="ErrorRatioMonitor"/>: the responses and 5xx responses in the window, and the thresholds
/// they were judged by. The structured values go to the log and the metric; <see cref="Reason"/> to the peer and the tool.
/// </summary>
internal readonly record struct ErrorRatioReading(long Requests, long Errors, TimeSpan Window, double MaxErrorRatio, int MinRequests)
{
    /// <summary>Errors over requests; 0 without requests.</summary>
    public double Ratio => Requests == 0 ? 0 : (double)Errors / Requests;

    /// <summary>Whether the release must roll back: at least <see cref="MinRequests"/> responses and a ratio above <see cref="MaxErrorRatio"/>.</summary>
    public bool IsAboveLimit => Requests >= MinRequests && Ratio > MaxErrorRatio;

    /// <summary>
    /// What the reading says, for people: for example "5xx ratio 0.250 (25 of 100 responses in the last 00:00:30) is
    /// above MaxErrorRatio 0.05".
    /// </summary>
    public string Reason => IsAboveLimit
        ? Invariant($"5xx ratio {Ratio:0.000} ({Errors} of {Requests} responses in the last {Window}) is above MaxErrorRatio {MaxErrorRatio}")
        : Requests < MinRequests
            ? Invariant($"5xx ratio not judged: {Requests} responses in the last {Window}, fewer than MinRequests {MinRequests} ({Errors} of them 5xx)")
            : Invariant($"5xx ratio {Ratio:0.000} ({Errors} of {Requests} responses in the last {Window}) is within MaxErrorRatio {MaxErrorRatio}");
}
