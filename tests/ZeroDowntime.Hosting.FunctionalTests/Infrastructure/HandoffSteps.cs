using Microsoft.Extensions.Logging;
using Xunit.Abstractions;
using ZeroDowntime.Hosting.Tests.Infrastructure;

namespace ZeroDowntime.Hosting.FunctionalTests.Infrastructure;

/// <summary>The steps every process-level test takes, each with a bounded wait on a log event.</summary>
internal static class HandoffSteps
{
    /// <summary>Starts the first process and waits until it serves and listens for successors.</summary>
    public static async Task<SampleApp> StartFirstAsync(string name, SampleConfig config, ITestOutputHelper output)
    {
        var app = SampleApp.Start(name, config, output);
        try
        {
            await app.WaitForEventAsync(Events.ServingHandoffSocket);
            return app;
        }
        catch
        {
            await app.DisposeAsync();
            throw;
        }
    }

    /// <summary>
    /// Sends new connections to <paramref name="baseUri"/>'s <c>/pid</c> for <paramref name="duration"/> and asserts that
    /// every one succeeded and was answered by <paramref name="only"/>: no other generation serves.
    /// </summary>
    public static async Task AssertOnlyOneServesAsync(Uri baseUri, SampleApp only, TimeSpan duration, ITestOutputHelper output)
    {
        await using var probes = HttpLoad.Start(new Uri(baseUri, "/pid"), workers: 2, newConnectionPerRequest: true);
        var observed = System.Diagnostics.Stopwatch.StartNew();
        while (observed.Elapsed < duration)
        {
            await probes.WaitForMoreSuccessesAsync(20);
        }

        await probes.StopAsync();
        output.WriteLine($"probes: {probes}");
        probes.AssertNoFailures();
        Assert.Equal([only.Pid.ToString(System.Globalization.CultureInfo.InvariantCulture)], probes.ResponsesByBody.Keys);
    }

    /// <summary>
    /// Starts a successor, waits until it has taken over and serves the handoff socket, then until the old process
    /// has drained and exited; returns the successor and the old process's exit code.
    /// </summary>
    public static Task<(SampleApp Successor, int OldExitCode)> HandOverAsync(SampleApp old, string name, SampleConfig config, ITestOutputHelper output) =>
        HandOverAsync(old, name, config, output, null);

    /// <summary>As above; <paramref name="whileStarting"/> runs once the successor is started, before the commit is awaited.</summary>
    public static async Task<(SampleApp Successor, int OldExitCode)> HandOverAsync(SampleApp old, string name, SampleConfig config, ITestOutputHelper output, Func<SampleApp, Task>? whileStarting)
    {
        var successor = SampleApp.Start(name, config, output);
        try
        {
            if (whileStarting is not null)
            {
                await whileStarting(successor);
            }

            await successor.WaitForEventAsync(Events.Committed);
            await successor.WaitForEventAsync(Events.ServingHandoffSocket);
            int exitCode = await old.WaitForExitAsync(TimeSpan.FromSeconds(60));
            string received = Figure(successor, Events.ListenersReceived, "ElapsedMs");
            string firstAccept = Figure(successor, Events.FirstConnectionAccepted, "ElapsedMs");
            output.WriteLine($"handoff {old.Name} -> {name}: old exited {exitCode} {successor.Age.TotalMilliseconds:0} ms after the successor started (handoff time); fd receive {received} ms; first accepted connection {firstAccept} ms after successor start (takeover time)");
            return (successor, exitCode);
        }
        catch
        {
            await successor.DisposeAsync();
            throw;
        }
    }

    private static string Figure(SampleApp app, EventId expected, string property) =>
        app.Entries.FirstOrDefault(l => l.Is(expected)) is { } line
            ? line.Number(property).ToString("0.#", System.Globalization.CultureInfo.InvariantCulture)
            : "n/a";
}
