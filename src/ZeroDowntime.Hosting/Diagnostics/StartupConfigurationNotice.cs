using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using ZeroDowntime.Hosting.Handoff;
using ZeroDowntime.Hosting.Logging;

namespace ZeroDowntime.Hosting.Diagnostics;

/// <summary>
/// Says at start, in every process (the first one, each successor, and so each predecessor), where its configuration
/// came from: content root, environment, configuration files found or not (event 140). A release started from the wrong
/// directory reads no <c>appsettings.json</c>, and this line shows it before anything else does. Registered before the
/// coordinator, so it is the first line of the library.
/// </summary>
internal sealed class StartupConfigurationNotice(
    IOptions<ZeroDowntimeOptions> options,
    ILoggerFactory loggerFactory) : IHostedLifecycleService
{
    private readonly ILogger logger = loggerFactory.CreateLogger(LogCategories.Startup);

    public Task StartingAsync(CancellationToken cancellationToken)
    {
        var value = options.Value;
        if (value.Enabled)
        {
            var origin = value.Origin ?? ConfigurationOrigin.Unknown;
            logger.StartupConfiguration(origin.ContentRoot, origin.EnvironmentName, origin.FilesText);
        }

        return Task.CompletedTask;
    }

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StoppingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
