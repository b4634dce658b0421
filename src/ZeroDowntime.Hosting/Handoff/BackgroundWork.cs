using Microsoft.Extensions.Logging;
using ZeroDowntime.Hosting.Logging;
using ZeroDowntime.Hosting.Warmup;

namespace ZeroDowntime.Hosting.Handoff;

/// <summary>
/// The one way the library runs work in the background (as <c>Host.HandleBackgroundException</c> does for hosted
/// services): whatever escapes the work is logged at Critical with the work's name, never left to an unobserved
/// task. A cancellation that ends the work is its normal end.
/// </summary>
internal static class BackgroundWork
{
    public static Task Start(string name, Func<Task> work, ILogger logger) => ObserveAsync(name, work, logger);

    private static async Task ObserveAsync(string name, Func<Task> work, ILogger logger)
    {
        try
        {
            await Task.Run(work);
        }
        catch (OperationCanceledException)
        {
        }
        catch (Exception ex)
        {
            logger.BackgroundTaskFailed(name, ex);
        }
    }
}
