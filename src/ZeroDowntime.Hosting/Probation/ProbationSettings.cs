using System.Globalization;
using Microsoft.Extensions.Configuration;

namespace ZeroDowntime.Hosting.Probation;

/// <summary>
/// The section <c>ZeroDowntime:Probation</c> (issue 20, docs/probation-design.md): how long a committed release stays
/// revocable, and when it rolls itself back. Internal until the lead exposes it as public options; the names of the
/// properties are the configuration keys.
/// </summary>
/// <param name="Duration">How long the old process stands by after the commit; zero turns probation off.</param>
/// <param name="MaxErrorRatio">The share of 5xx responses in <paramref name="ErrorWindow"/> above which the release rolls back; 1 turns the check off.</param>
/// <param name="MinRequests">The least number of responses in <paramref name="ErrorWindow"/> before the ratio counts.</param>
/// <param name="ErrorWindow">The sliding window over which the ratio is measured.</param>
/// <param name="UnhealthyFor">How long a check tagged <see cref="CheckTag"/> must stay Unhealthy before the release rolls back.</param>
/// <param name="RollbackSignal">The signal that asks the serving process to roll back, as <c>zerodowntime rollback</c> does.</param>
internal sealed record ProbationSettings(
    TimeSpan Duration,
    double MaxErrorRatio,
    int MinRequests,
    TimeSpan ErrorWindow,
    TimeSpan UnhealthyFor,
    ProbationRollbackSignal RollbackSignal)
{
    /// <summary>The configuration section, below <c>ZeroDowntime</c>.</summary>
    public const string SectionName = "ZeroDowntime:Probation";

    /// <summary>The tag of the app's health checks that are watched during probation.</summary>
    public const string CheckTag = "zerodowntime-probation";

    /// <summary>Probation off; the thresholds as documented, used once it is turned on.</summary>
    public static ProbationSettings Default { get; } = new(
        Duration: TimeSpan.Zero,
        MaxErrorRatio: 0.05,
        MinRequests: 20,
        ErrorWindow: TimeSpan.FromSeconds(30),
        UnhealthyFor: TimeSpan.FromSeconds(10),
        RollbackSignal: ProbationRollbackSignal.SigUsr1);

    /// <summary>The configuration values of <see cref="RollbackSignal"/>.</summary>
    internal static readonly IReadOnlyDictionary<string, ProbationRollbackSignal> Signals =
        new Dictionary<string, ProbationRollbackSignal>(StringComparer.OrdinalIgnoreCase)
        {
            ["SIGUSR1"] = ProbationRollbackSignal.SigUsr1,
            ["None"] = ProbationRollbackSignal.None,
        };

    /// <summary>Whether probation runs at all.</summary>
    public bool IsEnabled => Duration > TimeSpan.Zero;

    /// <summary>
    /// Reads the section <see cref="SectionName"/> of <paramref name="configuration"/> over <see cref="Default"/>. A value
    /// that cannot be parsed keeps its default and adds one message naming its key to <paramref name="errors"/>, as
    /// the options binder does for every other key (the validator reports them all at start).
    /// </summary>
    public static ProbationSettings Read(IConfiguration configuration, List<string> errors)
    {
        var section = configuration.GetSection(SectionName);
        var values = new ConfigurationValues(section, errors);
        var defaults = Default;
        return new ProbationSettings(
            values.Duration(nameof(Duration), defaults.Duration),
            ReadRatio(section, nameof(MaxErrorRatio), defaults.MaxErrorRatio, errors),
            values.Integer(nameof(MinRequests), defaults.MinRequests),
            values.Duration(nameof(ErrorWindow), defaults.ErrorWindow),
            values.Duration(nameof(UnhealthyFor), defaults.UnhealthyFor),
            values.Choice(nameof(RollbackSignal), defaults.RollbackSignal, Signals));
    }

    /// <summary>A number written with a '.' (invariant culture), as the configuration binder reads a double.</summary>
    private static double ReadRatio(IConfigurationSection section, string key, double current, List<string> errors)
    {
        if (section[key] is not { Length: > 0 } text)
        {
            return current;
        }

        if (double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double value))
        {
            return value;
        }

        errors.Add($"{SectionName}:{key} '{text}' is not a number: write a share such as 0.05 (5 %).");
        return current;
    }
}
