using Xunit.Abstractions;

namespace ZeroDowntime.Hosting.Tests.Infrastructure;

/// <summary>The steps every process-level test takes, each with a bounded wait on a log event.</summary>
internal static class Handoff
{
    /// <summary>Event ids of ZeroDowntimeLog, as the tests rely on them.</summary>
    public static class Events
    {
        public const int NoPredecessor = 4;
        public const int StaleSocket = 5;
        public const int ListenersReceived = 7;
        public const int ListenerInherited = 8;
        public const int ListenerBound = 9;
        public const int InheritedListenerUnused = 10;
        public const int Accepting = 12;
        public const int ServingHandoffSocket = 13;
        public const int SentReady = 20;
        public const int Committed = 21;
        public const int RefusedByPredecessor = 22;
        public const int HandoffAbandoned = 24;
        public const int PredecessorVanished = 25;
        public const int HandoffRequested = 40;
        public const int HandoffRefused = 41;
        public const int SuccessorReady = 42;
        public const int SuccessorFailed = 43;
        public const int SuccessorTimedOut = 44;
        public const int DrainStarted = 45;
        public const int DrainCompleted = 46;
        public const int SuccessorLost = 47;
        public const int HandoffProtocolError = 49;
        public const int AbandonedSuccessorDraining = 32;
        public const int SpeakingOlderVersion = 33;
        public const int ShutdownDelayStarted = 74;
        public const int ShutdownDelaySkipped = 75;
        public const int UpgradeStarted = 82;
        public const int UpgradeRefused = 83;
        public const int UpgradeCommitted = 84;
        public const int UpgradeFailed = 85;
        public const int HangupIgnored = 71;
        public const int AddressInUse = 72;
        public const int ParticipantOverran = 80;
        public const int HandoffAbandonedAtCommit = 81;
    }

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
            string received = Figure(successor, "[7]", @"in ([\d.]+) ms");
            string firstAccept = Figure(successor, "[16]", @"accepted (\d+) ms");
            output.WriteLine($"handoff {old.Name} -> {name}: old exited {exitCode} {successor.Age.TotalMilliseconds:0} ms after the successor started (handoff time); fd receive {received} ms; first accepted connection {firstAccept} ms after successor start (takeover time)");
            return (successor, exitCode);
        }
        catch
        {
            await successor.DisposeAsync();
            throw;
        }
    }

    private static string Figure(SampleApp app, string eventTag, string pattern)
    {
        string? line = app.Lines.FirstOrDefault(l => l.Contains("ZeroDowntime.Hosting.", StringComparison.Ordinal) && l.Contains(eventTag, StringComparison.Ordinal));
        var match = line is null ? null : System.Text.RegularExpressions.Regex.Match(line, pattern);
        return match is { Success: true } ? match.Groups[1].Value : "n/a";
    }
}
