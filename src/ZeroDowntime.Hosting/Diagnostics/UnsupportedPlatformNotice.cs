using System.Runtime.InteropServices;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using ZeroDowntime.Hosting.Logging;

namespace ZeroDowntime.Hosting.Diagnostics;

/// <summary>Says once, off Linux, that handoffs do not happen here.</summary>
internal sealed class UnsupportedPlatformNotice(ILoggerFactory loggerFactory) : IHostedService
{
    private readonly ILogger logger = loggerFactory.CreateLogger(LogCategories.Startup);

    public Task StartAsync(CancellationToken cancellationToken)
    {
        logger.NotSupportedOnPlatform(RuntimeInformation.OSDescription);
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
