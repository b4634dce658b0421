namespace ZeroDowntime.Sample;

/// <summary>
/// Simulates a release's warm-up, after the listeners have been received and bound and before the host reports
/// started: <c>Sample:StartupDelayMs</c> makes it slow, <c>Sample:FailStartup=true</c> makes it fail.
/// </summary>
internal sealed partial class SampleStartup(IConfiguration configuration, ILogger<SampleStartup> logger) : IHostedLifecycleService
{
    public async Task StartedAsync(CancellationToken cancellationToken)
    {
        int delay = configuration.GetValue("Sample:StartupDelayMs", 0);
        if (delay > 0)
        {
            LogWarmingUp(logger, delay);
            await Task.Delay(delay, cancellationToken);
        }

        if (configuration.GetValue("Sample:FailStartup", false))
        {
            throw new InvalidOperationException("Start-up failed on purpose (Sample:FailStartup=true).");
        }
    }

    public Task StartingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StoppingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    [LoggerMessage(1000, LogLevel.Information, "Warming up for {DelayMs} ms (Sample:StartupDelayMs)")]
    private static partial void LogWarmingUp(ILogger logger, int delayMs);
}
