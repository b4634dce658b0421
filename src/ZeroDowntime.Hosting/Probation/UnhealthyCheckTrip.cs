using static System.FormattableString;

namespace ZeroDowntime.Hosting.Probation;

/// <summary>
/// A check tagged <see cref="ProbationSettings.CheckTag"/> that has been Unhealthy for at least
/// <paramref name="UnhealthyFor"/>: the reason of an automatic rollback.
/// </summary>
/// <param name="CheckName">The check's registration name.</param>
/// <param name="Description">What the check said, if anything.</param>
/// <param name="ExceptionMessage">The message of the exception the check reported or threw, if any.</param>
/// <param name="Lasted">How long it has been Unhealthy, from the first report that said so to the latest.</param>
/// <param name="UnhealthyFor">The configured time.</param>
internal sealed record UnhealthyCheckTrip(string CheckName, string? Description, string? ExceptionMessage, TimeSpan Lasted, TimeSpan UnhealthyFor)
{
    /// <summary>
    /// For people: for example "health check 'db' (tagged zerodowntime-probation) has been Unhealthy for 00:00:10
    /// (UnhealthyFor 00:00:10): the database does not answer (connection refused)".
    /// </summary>
    public string Reason =>
        Invariant($"health check '{CheckName}' (tagged {ProbationSettings.CheckTag}) has been Unhealthy for {Lasted} (UnhealthyFor {UnhealthyFor})")
        + (Description is { Length: > 0 } ? ": " + Description : "")
        + (ExceptionMessage is { Length: > 0 } ? " (" + ExceptionMessage + ")" : "");
}
