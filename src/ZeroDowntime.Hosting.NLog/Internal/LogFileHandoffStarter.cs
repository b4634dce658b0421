using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace ZeroDowntime.Hosting.NLog.Internal;

/// <summary>
/// Acquires the log files at start when no handoff will: off Linux, with <c>ZeroDowntime:Enabled=false</c>, or
/// without <c>UseZeroDowntime()</c>. Otherwise the handoff coordinator calls the participant at the right moment.
/// </summary>
internal sealed class LogFileHandoffStarter(LogFileHandoffParticipant participant, IServiceProvider services) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken) =>
        HandoffsRun(services) ? Task.CompletedTask : participant.AcquireAsync(HandoffAcquireReason.FirstStart, cancellationToken);

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    private static bool HandoffsRun(IServiceProvider services)
    {
        if (!OperatingSystem.IsLinux() || services.GetService<IZeroDowntimeLifetime>() is null)
        {
            return false;
        }

        return services.GetService<IOptions<ZeroDowntimeOptions>>()?.Value.Enabled ?? false;
    }
}
