using System.Globalization;
using System.Text.Json;
using Microsoft.Extensions.Logging;

namespace ZeroDowntime.Hosting.FunctionalTests.Infrastructure;

/// <summary>
/// One line of a child process's output. The sample logs JSON (<c>Logs:ConsoleJson=true</c>, the fields of
/// Microsoft's json console formatter plus <c>EventName</c>); anything else (stderr, a crash, a launcher's own
/// output) is kept as plain text with no event. <see cref="Text"/> is what the test log shows.
/// </summary>
internal sealed record LogLine(string Text, int? EventId, string? EventName, string? Category, string? Level, string? Message, string? Exception, DateTimeOffset? Timestamp, IReadOnlyDictionary<string, string?> State)
{
    private static readonly IReadOnlyDictionary<string, string?> NoState = new Dictionary<string, string?>();

    /// <summary>True for the event with this id and name (both must agree; see <see cref="Tests.Infrastructure.Events"/>).</summary>
    public bool Is(EventId expected)
    {
        if (expected.Name is null)
        {
            throw new ArgumentException($"Event {expected.Id} has no name: match events by id and name (Events).", nameof(expected));
        }

        return EventId == expected.Id && string.Equals(EventName, expected.Name, StringComparison.Ordinal);
    }

    /// <summary>A structured property of the event (its value as JSON text, strings unquoted); null when absent.</summary>
    public string? this[string property] => State.GetValueOrDefault(property);

    /// <summary>A numeric property of the event.</summary>
    public double Number(string property) =>
        double.Parse(this[property] ?? throw new KeyNotFoundException($"'{property}' is not a property of: {Text}"), CultureInfo.InvariantCulture);

    /// <summary>Whether the readable text contains this (for what a message says, not which event it is).</summary>
    public bool Contains(string value, StringComparison comparison) => Text.Contains(value, comparison);

    public override string ToString() => Text;

    /// <summary>The readable text, for assertions on what an event's message says.</summary>
    public static implicit operator string(LogLine line) => line.Text;

    public static LogLine Parse(string line)
    {
        if (!line.StartsWith('{'))
        {
            return Plain(line);
        }

        try
        {
            using var json = JsonDocument.Parse(line);
            var root = json.RootElement;
            // The field names of the JSON console formatters (Microsoft's and the sample's).
            string? Field(string name) => root.TryGetProperty(name, out var value) && value.ValueKind != JsonValueKind.Null ? value.ToString() : null;
            var state = new Dictionary<string, string?>(StringComparer.Ordinal);
            if (root.TryGetProperty(nameof(State), out var properties) && properties.ValueKind == JsonValueKind.Object)
            {
                foreach (var property in properties.EnumerateObject())
                {
                    state[property.Name] = property.Value.ValueKind == JsonValueKind.Null ? null : property.Value.ToString();
                }
            }

            int? eventId = root.TryGetProperty(nameof(EventId), out var id) && id.ValueKind == JsonValueKind.Number ? id.GetInt32() : null;
            DateTimeOffset? timestamp = root.TryGetProperty(nameof(Timestamp), out var stamp) && stamp.TryGetDateTimeOffset(out var at) ? at : null;
            string? level = Field("LogLevel"), category = Field("Category"), message = Field("Message"), exception = Field("Exception");
            string text = $"{(timestamp is { } t ? t.ToString("HH:mm:ss.fff ", CultureInfo.InvariantCulture) : "")}{Short(level)}: {category}[{eventId}] {message}" +
                (exception is null ? "" : " " + exception.ReplaceLineEndings(" "));
            // Microsoft's own json formatter (an earlier build of the sample, a new user's app) writes no EventName: the
            // library's events have stable ids, so the name is the one Events gives that id.
            string? eventName = Field("EventName")
                ?? (eventId is { } known && category?.StartsWith("ZeroDowntime.Hosting", StringComparison.Ordinal) == true ? Tests.Infrastructure.Events.NameOf(known) : null);
            return new LogLine(text, eventId, eventName, category, level, message, exception, timestamp, state);
        }
        catch (JsonException)
        {
            return Plain(line);
        }
    }

    private static LogLine Plain(string line) => new(line, null, null, null, null, null, null, null, NoState);

    private static string Short(string? level) => level switch
    {
        "Trace" => "trce",
        "Debug" => "dbug",
        "Information" => "info",
        "Warning" => "warn",
        "Error" => "fail",
        "Critical" => "crit",
        _ => level ?? "?",
    };
}
