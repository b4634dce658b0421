using Microsoft.Extensions.Logging;

namespace ZeroDowntime.Hosting.Tests.Infrastructure;

/// <summary>One recorded line: its event, its text, and its structured fields (the message template's names).</summary>
internal sealed record LogEntry(LogLevel Level, EventId EventId, string Message, Exception? Exception, IReadOnlyDictionary<string, object?> Fields);
