using System.Globalization;

namespace ZeroDowntime.Hosting.FunctionalTests.Infrastructure;

/// <summary>One row of HAProxy's <c>show stat</c> (CSV): a frontend, a backend or a server, by column name.</summary>
internal sealed class HaProxyStat(IReadOnlyDictionary<string, string> fields)
{
    public string Proxy => fields["pxname"];

    public string Name => fields["svname"];

    /// <summary>UP, DOWN, or transitional ("UP 1/3": going down; "DOWN 1/2": coming up), MAINT, OPEN (frontend).</summary>
    public string Status => fields["status"];

    /// <summary>Result of the last check: L7OK, L7STS (wrong status), L4CON (refused), ...</summary>
    public string CheckStatus => fields.GetValueOrDefault("check_status", "");

    /// <summary>In rotation: UP, or UP and going down after a failed check.</summary>
    public bool IsUp => Status == "UP" || Status.StartsWith("UP ", StringComparison.Ordinal);

    /// <summary>Out of rotation: DOWN (also while coming up again), or in maintenance.</summary>
    public bool IsDown => Status.StartsWith("DOWN", StringComparison.Ordinal) || Status.StartsWith("MAINT", StringComparison.Ordinal);

    public long this[string column] =>
        long.TryParse(fields.GetValueOrDefault(column, ""), NumberStyles.None, CultureInfo.InvariantCulture, out long value) ? value : 0;

    /// <summary>The counters that say whether HAProxy failed or repaired requests.</summary>
    public override string ToString() =>
        $"{Proxy}/{Name} {Status} (check {CheckStatus}): sessions {this["stot"]}, 2xx {this["hrsp_2xx"]}, 5xx {this["hrsp_5xx"]}, " +
        $"connect errors {this["econ"]}, response errors {this["eresp"]}, retries {this["wretr"]}, redispatches {this["wredis"]}";
}
