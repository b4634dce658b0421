using System.Diagnostics;

namespace ZeroDowntime.Hosting.FunctionalTests.Infrastructure;

/// <summary>The one bounded wait that every load client of the tests offers: "N more requests succeeded".</summary>
internal static class LoadProgress
{
    public static async Task WaitForMoreSuccessesAsync(Func<long> succeeded, Func<IEnumerable<string>> failures, long count, string what, TimeSpan? timeout)
    {
        long target = succeeded() + count;
        var limit = Stopwatch.StartNew();
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(10));
        while (succeeded() < target)
        {
            if (limit.Elapsed > (timeout ?? TimeSpan.FromSeconds(30)))
            {
                throw new TimeoutException($"Only {succeeded()} of {target} {what} succeeded in time; failures: {string.Join(" | ", failures().Take(5))}");
            }

            await timer.WaitForNextTickAsync();
        }
    }
}
