using System.Diagnostics;

namespace ZeroDowntime.Hosting.Tests.Infrastructure;

/// <summary>Bounded polling for conditions that have no event (socket states in /proc).</summary>
internal static class Until
{
    public static async Task TrueAsync(Func<bool> condition, string description, TimeSpan? timeout = null)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(20));
        var limit = Stopwatch.StartNew();
        while (!condition())
        {
            if (limit.Elapsed > (timeout ?? TimeSpan.FromSeconds(20)))
            {
                throw new TimeoutException("Timed out waiting for " + description);
            }

            await timer.WaitForNextTickAsync();
        }
    }
}
