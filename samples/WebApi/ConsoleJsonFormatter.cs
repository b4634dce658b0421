using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Logging.Console;

namespace ZeroDowntime.Sample;

/// <summary>
/// <c>Logs:ConsoleJson=true</c>: every console line is one JSON object with the event id and name, category, level,
/// message, exception and the structured properties (<c>State</c>), the field names of Microsoft's <c>json</c>
/// console formatter plus <c>EventName</c>, which that one leaves out. The process-level tests set it and parse the
/// lines by event id and name; the default console format stays the one for humans. Written with
/// <see cref="Utf8JsonWriter"/> and no reflection, so the Native AOT build writes the same lines.
/// </summary>
internal sealed class ConsoleJsonFormatter() : ConsoleFormatter(FormatterName)
{
    public const string FormatterName = "sample-json";

    public override void Write<TState>(in LogEntry<TState> logEntry, IExternalScopeProvider? scopeProvider, TextWriter textWriter)
    {
        var buffer = new ArrayBufferWriter<byte>(512);
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteString("Timestamp", DateTimeOffset.Now);
            writer.WriteNumber("EventId", logEntry.EventId.Id);
            if (logEntry.EventId.Name is { } name)
            {
                writer.WriteString("EventName", name);
            }

            writer.WriteString("LogLevel", logEntry.LogLevel.ToString());
            writer.WriteString("Category", logEntry.Category);
            writer.WriteString("Message", logEntry.Formatter(logEntry.State, logEntry.Exception));
            if (logEntry.Exception is { } exception)
            {
                writer.WriteString("Exception", exception.ToString());
            }

            if (logEntry.State is IReadOnlyList<KeyValuePair<string, object?>> properties)
            {
                writer.WriteStartObject("State");
                foreach (var (key, value) in properties)
                {
                    WriteProperty(writer, key, value);
                }

                writer.WriteEndObject();
            }

            writer.WriteEndObject();
        }

        textWriter.WriteLine(Encoding.UTF8.GetString(buffer.WrittenSpan));
    }

    private static void WriteProperty(Utf8JsonWriter writer, string key, object? value)
    {
        switch (value)
        {
            case null:
                writer.WriteNull(key);
                break;
            case bool flag:
                writer.WriteBoolean(key, flag);
                break;
            case int or long or short or byte or uint or ulong or ushort or sbyte:
                writer.WriteNumber(key, Convert.ToInt64(value, CultureInfo.InvariantCulture));
                break;
            case double or float or decimal:
                writer.WriteNumber(key, Convert.ToDouble(value, CultureInfo.InvariantCulture));
                break;
            case IFormattable formattable:
                writer.WriteString(key, formattable.ToString(null, CultureInfo.InvariantCulture));
                break;
            default:
                writer.WriteString(key, value.ToString());
                break;
        }
    }
}

internal static class ConsoleJsonFormatterExtensions
{
    /// <summary>Makes <see cref="ConsoleJsonFormatter"/> the console's formatter (over <c>Logging:Console:FormatterName</c>).</summary>
    public static ILoggingBuilder AddConsoleJsonFormatter(this ILoggingBuilder logging)
    {
        // One write(2) per line. Console.Out writes through a 256-byte buffer, so a longer line left in several writes,
        // and the successors an upgrade starts share this process's stdout pipe: two processes' lines interleaved
        // mid-line, and the tests reading that pipe lost an event (found in UpgradeTests' three SIGHUP upgrades). With
        // a buffer larger than any line and a flush per write, each line is one write, and a pipe keeps a write of up to
        // PIPE_BUF (4096) bytes whole.
        Console.SetOut(new StreamWriter(Console.OpenStandardOutput(), new System.Text.UTF8Encoding(false), 1 << 16) { AutoFlush = true });
        logging.Services.TryAddEnumerable(ServiceDescriptor.Singleton<ConsoleFormatter, ConsoleJsonFormatter>());
        logging.Services.Configure<ConsoleLoggerOptions>(options => options.FormatterName = ConsoleJsonFormatter.FormatterName);
        return logging;
    }
}
