namespace ZeroDowntime.Hosting.Probation;

/// <summary>
/// The bounds of <see cref="ProbationSettings"/>, each error naming its key, the value and what is allowed, all of them
/// at once (as <c>ZeroDowntimeOptionsValidator</c> reports the rest of the section at start, exit code 78). The
/// thresholds are checked whether or not probation is on, so that turning it on later never meets a bad value first.
/// </summary>
internal static class ProbationSettingsValidator
{
    /// <summary>The longest probation: a day, after which the old release is no better a fallback than a fresh deploy.</summary>
    public static readonly TimeSpan MaxDuration = TimeSpan.FromDays(1);

    /// <summary>The shortest error window: each of its <see cref="ErrorRatioMonitor.BucketCount"/> buckets spans at least 50 ms.</summary>
    public static readonly TimeSpan MinErrorWindow = TimeSpan.FromSeconds(1);

    /// <summary>The longest error window.</summary>
    public static readonly TimeSpan MaxErrorWindow = TimeSpan.FromHours(1);

    /// <summary>The shortest unhealthy time: the tagged checks are looked at every second, so less would trip on one look.</summary>
    public static readonly TimeSpan MinUnhealthyFor = TimeSpan.FromSeconds(1);

    /// <summary>The longest unhealthy time.</summary>
    public static readonly TimeSpan MaxUnhealthyFor = TimeSpan.FromHours(1);

    /// <summary>The most requests <see cref="ProbationSettings.MinRequests"/> may ask for.</summary>
    public const int MaxMinRequests = 1_000_000;

    /// <summary>Every problem of <paramref name="settings"/>, in the order of the keys; empty when it is valid.</summary>
    public static IReadOnlyList<string> Validate(ProbationSettings settings)
    {
        ArgumentNullException.ThrowIfNull(settings);
        const string Section = ProbationSettings.SectionName;
        var errors = new List<string>();
        if (settings.Duration < TimeSpan.Zero || settings.Duration > MaxDuration)
        {
            errors.Add($"{Section}:Duration is {settings.Duration}; allowed: 00:00:00 (no probation) to {MaxDuration}.");
        }

        if (double.IsNaN(settings.MaxErrorRatio) || settings.MaxErrorRatio is < 0 or > 1)
        {
            errors.Add($"{Section}:MaxErrorRatio is {settings.MaxErrorRatio.ToString(System.Globalization.CultureInfo.InvariantCulture)}; allowed: 0 (any 5xx response rolls back) to 1 (the ratio never rolls back), for example 0.05.");
        }

        if (settings.MinRequests is < 1 or > MaxMinRequests)
        {
            errors.Add($"{Section}:MinRequests is {settings.MinRequests}; allowed: 1 to {MaxMinRequests}.");
        }

        if (settings.ErrorWindow < MinErrorWindow || settings.ErrorWindow > MaxErrorWindow)
        {
            errors.Add($"{Section}:ErrorWindow is {settings.ErrorWindow}; allowed: {MinErrorWindow} to {MaxErrorWindow}.");
        }

        if (settings.UnhealthyFor < MinUnhealthyFor || settings.UnhealthyFor > MaxUnhealthyFor)
        {
            errors.Add($"{Section}:UnhealthyFor is {settings.UnhealthyFor}; allowed: {MinUnhealthyFor} to {MaxUnhealthyFor} (the checks tagged {ProbationSettings.CheckTag} are looked at every second).");
        }

        if (!Enum.IsDefined(settings.RollbackSignal))
        {
            errors.Add($"{Section}:RollbackSignal must be SIGUSR1 or None.");
        }

        return errors;
    }
}
