using System.Collections.Concurrent;
using System.Globalization;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.Logging;
using Xunit.Abstractions;

namespace ZeroDowntime.Hosting.Tests.Infrastructure;

/// <summary>
/// A real ASP.NET Core host with the library, inside the test process: real Kestrel, real sockets, and what a
/// process cannot show from outside (the app-facing <see cref="IZeroDowntimeLifetime"/>, descriptors that must be
/// closed while the process lives on). It speaks to real sample processes like any version of the app would.
/// </summary>
internal sealed class InProcessHost : IAsyncDisposable
{
    private readonly ConcurrentQueue<(EventId Event, string Line)> _lines;

    private InProcessHost(WebApplication app, ConcurrentQueue<(EventId Event, string Line)> lines)
    {
        App = app;
        _lines = lines;
    }

    public WebApplication App { get; }

    public IReadOnlyCollection<string> Lines => _lines.Select(l => l.Line).ToArray();

    public static InProcessHost Create(string socketPath, int port, ITestOutputHelper output, string name)
    {
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { EnvironmentName = "Production", ContentRootPath = AppContext.BaseDirectory });
        builder.Configuration["ZeroDowntime:SocketPath"] = socketPath;
        builder.Configuration["ZeroDowntime:ApplicationId"] = "WebApi"; // the sample's application id
        builder.Configuration["ZeroDowntime:IdleConnectionGracePeriod"] = "00:00:01";
        builder.WebHost.UseUrls($"http://127.0.0.1:{port}");
        var lines = new ConcurrentQueue<(EventId Event, string Line)>();
        builder.Logging.ClearProviders();
        builder.Logging.AddProvider(new OutputLoggerProvider(output, name, lines));
        builder.WebHost.UseZeroDowntime();
        var app = builder.Build();
        app.MapGet("/pid", () => Environment.ProcessId.ToString(CultureInfo.InvariantCulture));
        return new InProcessHost(app, lines);
    }

    /// <summary>Waits (bounded) for an event of the library with this id and name (see <see cref="Events"/>).</summary>
    public Task WaitForEventAsync(EventId expected) =>
        Until.TrueAsync(() => _lines.Any(l => l.Event.Id == expected.Id && l.Event.Name == expected.Name), $"in-process event {expected.Id} {expected.Name}", TimeSpan.FromSeconds(30));

    public async ValueTask DisposeAsync()
    {
        try
        {
            await App.StopAsync(new CancellationTokenSource(TimeSpan.FromSeconds(10)).Token);
        }
        catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException or InvalidOperationException)
        {
        }

        await App.DisposeAsync();
    }

    private sealed class OutputLoggerProvider(ITestOutputHelper output, string name, ConcurrentQueue<(EventId Event, string Line)> lines) : ILoggerProvider
    {
        public ILogger CreateLogger(string categoryName) => new OutputLogger(output, name, categoryName, lines);

        public void Dispose()
        {
        }
    }

    private sealed class OutputLogger(ITestOutputHelper output, string name, string category, ConcurrentQueue<(EventId Event, string Line)> lines) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Information && !category.StartsWith("Microsoft.AspNetCore", StringComparison.Ordinal);

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (!IsEnabled(logLevel))
            {
                return;
            }

            string line = $"{logLevel}: {category}[{eventId.Id}] {formatter(state, exception)}{(exception is null ? "" : " " + exception.GetType().Name + ": " + exception.Message)}";
            lines.Enqueue((eventId, line));
            try
            {
                output.WriteLine($"[{name} in-process] {line}");
            }
            catch (InvalidOperationException)
            {
            }
        }
    }
}
