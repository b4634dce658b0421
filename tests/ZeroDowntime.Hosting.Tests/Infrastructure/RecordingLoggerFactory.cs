using Microsoft.Extensions.Logging;

namespace ZeroDowntime.Hosting.Tests.Infrastructure;

/// <summary>Hands out one recording logger for every category, so that a test reads the lines of all the library's areas in order.</summary>
internal sealed class RecordingLoggerFactory(ILogger logger) : ILoggerFactory
{
    public ILogger CreateLogger(string categoryName) => logger;

    public void AddProvider(ILoggerProvider provider) => throw new NotSupportedException("A recording factory has no providers.");

    public void Dispose()
    {
    }
}
