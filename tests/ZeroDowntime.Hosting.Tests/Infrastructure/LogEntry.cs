using Microsoft.Extensions.Logging;

namespace ZeroDowntime.Hosting.Tests.Infrastructure;

internal sealed record LogEntry(LogLevel Level, EventId EventId, string Message, Exception? Exception);
