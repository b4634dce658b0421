using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using ZeroDowntime.Hosting.Drain;
using ZeroDowntime.Hosting.Protocol;
using ZeroDowntime.Hosting.Upgrade;

namespace ZeroDowntime.Cli;

/// <summary>What the verbs status, upgrade and rollback do and print (the command line is in <see cref="CommandLine"/>).</summary>
internal static class Cli
{
    /// <summary>HandoffTimeout's default (60 s) plus a margin, below systemd's default TimeoutStartSec (90 s) for ExecReload=.</summary>
    public static readonly TimeSpan DefaultUpgradeTimeout = TimeSpan.FromSeconds(75);

    /// <summary>How long status waits for its answer (and upgrade for the status it asks first).</summary>
    public static readonly TimeSpan StatusTimeout = TimeSpan.FromSeconds(5);

    /// <summary>How long an answer from a process that has handed over (draining) is asked again, for its successor.</summary>
    public static readonly TimeSpan HandedOverWait = TimeSpan.FromSeconds(5);

    public const string Usage = """
        zerodowntime: status and upgrades of a ZeroDowntime.Hosting app over its handoff socket, and a supervisor.

        Usage:
          zerodowntime status  [--socket PATH | --app ID] [--json]
          zerodowntime upgrade [--socket PATH | --app ID] [--timeout T] [--wait-probation] [--json]
          zerodowntime rollback [--socket PATH | --app ID] [--timeout T] [--note TEXT] [--json]
          zerodowntime run [--max-restarts N] [--restart-window T] [--] COMMAND [ARGS...]
          zerodowntime --help | --version

        status    Who serves: pid, since when, generation, state (serving, handing-over, draining, shutting-down),
                  listeners (key and bound endpoint), a predecessor still draining, a successor being handed over to,
                  and every generation that still drains after its handoff (pid, generation, open connections).
        upgrade   Asks the running process to start its successor (as on SIGHUP) and waits until the successor has
                  committed (exit 0, its pid and the handoff's timings) or the upgrade ended otherwise (non-zero, why).
                  With --wait-probation it then waits through the new release's probation (ZeroDowntime:Probation):
                  exit 0 only when the probation ended without a rollback.
        rollback  Asks the serving process, on probation, to hand back to the generation that stands by, and waits
                  until the old generation serves again (exit 0, the switch in ms) or the rollback ended otherwise.
        run       Runs COMMAND as a supervisor with a stable pid (containers, process managers): child subreaper,
                  its own NOTIFY_SOCKET for the app, follows MAINPID= through every handoff, forwards SIGTERM/SIGINT
                  to the current main process, SIGHUP as an upgrade and SIGUSR1 as a rollback, reaps every child, exits with the main
                  process's exit code (128+N when signal N killed it) once no child is left. Keeps the listening
                  sockets the app stores with it (FDSTORE=1) and starts a crashed app again with them (LISTEN_FDS).

        Options:
          --socket PATH  The handoff socket (the app's ZeroDowntime:SocketPath).
          --app ID       The app's ApplicationId (by default its assembly name, e.g. WebApi): the library's default path,
                         $XDG_RUNTIME_DIR/zerodowntime/ID.sock, else /tmp/zerodowntime-UID/ID.sock. Give one of the two.
          --timeout T    upgrade, rollback: how long to wait for the result (default 75s: the default HandoffTimeout of
                         60 s plus a margin, below systemd's default TimeoutStartSec of 90 s). 90, 90s, 1500ms, 2m or
                         00:01:30. upgrade --wait-probation waits beyond it until the window's end plus 30 s.
          --wait-probation  upgrade: after the commit, wait until the new release's probation has ended.
          --note TEXT    rollback: why (logged by both processes; default none).
          --json         One JSON object on stdout.
          --max-restarts N    run: how many times a crashed app is started again within --restart-window (default 5).
          --restart-window T  run: the window of --max-restarts (default 60s).

        Exit codes (status, upgrade, rollback):
          0  status: a process serves; upgrade: the successor committed and serves (--wait-probation: and its
             probation ended without a rollback); rollback: rolled back, the old generation serves again
          1  upgrade: the successor failed (exit code and last lines printed) or the handoff was abandoned;
             rollback: it did not complete (the old process vanished or did not answer); this release serves on
          2  bad usage
          3  nobody serves the socket (no file, a stale file, the process is shutting down, or it has handed
             over and no successor took the socket over within 5 s)
          4  upgrade refused: another upgrade or handoff runs, or the process drains or shuts down; rollback
             refused: no generation on probation, a rollback or handoff in progress, or shutting down
          5  no answer in time (upgrade: --timeout passed; the upgrade may still be running)
          6  the socket is served by another user's process: nothing was asked (SO_PEERCRED)
          7  the process speaks no control requests (an older build, protocol v1) or sent garbage; rollback: its
             build has no probation (nothing was asked)
          9  upgrade --wait-probation: the release was rolled back during its probation (reason printed)
          10 upgrade --wait-probation: committed, but no probation ran to its end (none asked for, a build
             without probation, or the old process ended during the window); no way back
        run exits with the main process's exit code, 127 when COMMAND cannot be started, 2 on bad usage, 8 when the
        app crashed more than --max-restarts times within --restart-window (the kept sockets are closed).
        """;

    internal static async Task<int> StatusAsync(ControlOptions options, TextWriter stdout, TextWriter stderr)
    {
        StatusMessage status;
        ProbationStatusMessage? probation;
        try
        {
            (status, probation) = await CurrentStatusAsync(options.SocketPath);
        }
        catch (ControlException ex)
        {
            return await FailAsync(options, ex, stdout, stderr);
        }

        bool serves = status.State is not (ServingState.ShuttingDown or ServingState.Draining);
        var draining = DrainingGenerationFiles.ReadAll(options.SocketPath);
        if (options.Json)
        {
            await stdout.WriteLineAsync(Json(writer =>
            {
                writer.WriteString("socket", options.SocketPath);
                writer.WriteBoolean("serving", serves);
                WriteStatus(writer, status);
                WriteDraining(writer, draining);
                WriteProbation(writer, probation);
            }));
        }
        else
        {
            await stdout.WriteAsync(Describe(status) + Describe(probation) + Describe(draining));
        }

        if (!serves)
        {
            await stderr.WriteLineAsync(status.State == ServingState.Draining
                ? $"zerodowntime: pid {status.ProcessId} has handed over and drains, and no successor took over {options.SocketPath} within {HandedOverWait.TotalSeconds:0} s."
                : $"zerodowntime: pid {status.ProcessId} is shutting down: nobody serves {options.SocketPath}.");
        }

        return serves ? ExitCodes.Ok : ExitCodes.NoServer;
    }

    internal static async Task<int> UpgradeAsync(ControlOptions options, TextWriter stdout, TextWriter stderr)
    {
        var clock = Stopwatch.StartNew();
        StatusMessage before;
        UpgradeResultMessage result;
        ProbationUpdateMessage? probation = null;
        bool committedPrinted = false;
        int startedPid = 0;
        double startedAfter = -1;
        double total = -1;
        try
        {
            // Who serves now (for the report); the same errors as the upgrade itself, found in milliseconds.
            before = (await CurrentStatusAsync(options.SocketPath)).Status;
            var left = options.Timeout - clock.Elapsed;
            if (left <= TimeSpan.Zero)
            {
                throw new ControlException(ControlError.TimedOut, $"--timeout {options.Timeout.TotalSeconds:0.###} s passed before the upgrade was asked for.");
            }

            void Started(int pid)
            {
                startedPid = pid;
                startedAfter = clock.Elapsed.TotalMilliseconds;
                if (!options.Json)
                {
                    stderr.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"zerodowntime: pid {before.ProcessId} started its successor, pid {pid}; waiting for it (at most {options.Timeout.TotalSeconds:0.###} s)"));
                }
            }

            if (options.WaitProbation)
            {
                // The commit is printed as without the flag, at once; then the probation is waited for.
                var waited = await HandoffControlClient.UpgradeThroughProbationAsync(options.SocketPath, left, Started,
                    committed =>
                    {
                        total = clock.Elapsed.TotalMilliseconds;
                        startedPid = committed.SuccessorPid;
                        if (!options.Json)
                        {
                            stdout.WriteLine(Committed(committed, before, total));
                            committedPrinted = true;
                        }
                    },
                    started =>
                    {
                        if (!options.Json)
                        {
                            stdout.WriteLine($"on probation until {Time(started.EndsUnixMilliseconds)} (pid {before.ProcessId} stands by)");
                        }
                    });
                (result, probation) = (waited.Result, waited.Probation);
            }
            else
            {
                result = await HandoffControlClient.UpgradeAsync(options.SocketPath, left, Started);
            }
        }
        catch (ControlException ex)
        {
            if (ex.Error == ControlError.TimedOut && total >= 0)
            {
                // --wait-probation: the commit was reported; what did not come in time is the probation's end.
                ex = new ControlException(ControlError.TimedOut,
                    $"Successor pid {startedPid} committed, but the end of its probation was not reported in time (the window's end plus {HandoffControlClient.ProbationEndMargin.TotalSeconds:0} s). {ex.Message}");
            }
            else if (ex.Error == ControlError.TimedOut && startedPid != 0)
            {
                ex = new ControlException(ControlError.TimedOut,
                    $"Successor pid {startedPid} did not commit within --timeout {options.Timeout.TotalSeconds:0.###} s; the upgrade may still be running (the process gives up at its HandoffTimeout). {ex.Message}");
            }

            return await FailAsync(options, ex, stdout, stderr);
        }

        if (total < 0)
        {
            total = clock.Elapsed.TotalMilliseconds;
        }

        int exitCode = result.Outcome switch
        {
            UpgradeOutcome.Committed when options.WaitProbation => probation?.Progress switch
            {
                ProbationProgress.Passed => ExitCodes.Ok,
                ProbationProgress.RolledBack => ExitCodes.RolledBackDuringProbation,
                _ => ExitCodes.NoProbationCompleted,
            },
            UpgradeOutcome.Committed => ExitCodes.Ok,
            UpgradeOutcome.Refused => ExitCodes.Refused,
            _ => ExitCodes.UpgradeFailed,
        };

        if (options.Json)
        {
            await stdout.WriteLineAsync(Json(writer =>
            {
                writer.WriteString("socket", options.SocketPath);
                writer.WriteString("outcome", Name(result.Outcome));
                writer.WriteNumber("exitCode", exitCode);
                writer.WriteNumber("previousPid", before.ProcessId);
                writer.WriteNumber("previousGeneration", before.Generation);
                writer.WriteNumber("successorPid", result.SuccessorPid);
                if (result.ExitCode >= 0)
                {
                    writer.WriteNumber("successorExitCode", result.ExitCode);
                }
                else
                {
                    writer.WriteNull("successorExitCode");
                }

                writer.WriteString("reason", result.Reason);
                WriteMilliseconds(writer, "readyMs", result.ReadyMilliseconds);
                WriteMilliseconds(writer, "committedMs", result.CommittedMilliseconds);
                WriteMilliseconds(writer, "startedAfterMs", (long)Math.Round(startedAfter));
                writer.WriteNumber("totalMs", Math.Round(total, 1));
                if (options.WaitProbation && result.Outcome == UpgradeOutcome.Committed)
                {
                    WriteProbationOutcome(writer, probation, before);
                }
            }));
            return exitCode;
        }

        if (result.Outcome == UpgradeOutcome.Committed && options.WaitProbation)
        {
            if (!committedPrinted)
            {
                await stdout.WriteLineAsync(Committed(result, before, total));
            }

            string ending = DescribeProbationOutcome(probation, result, before);
            await (exitCode == ExitCodes.Ok ? stdout : stderr).WriteLineAsync(exitCode == ExitCodes.Ok ? ending : "zerodowntime: " + ending);
            return exitCode;
        }

        string text = result.Outcome switch
        {
            UpgradeOutcome.Committed => Committed(result, before, total),
            UpgradeOutcome.Refused => $"Upgrade refused by pid {before.ProcessId}: {result.Reason}",
            UpgradeOutcome.Abandoned => string.Create(CultureInfo.InvariantCulture,
                $"Upgrade abandoned: successor pid {result.SuccessorPid}{ExitedWith(result.ExitCode)}; pid {before.ProcessId} still serves. {result.Reason}"),
            _ => string.Create(CultureInfo.InvariantCulture,
                $"Upgrade failed: successor pid {result.SuccessorPid}{ExitedWith(result.ExitCode)}; pid {before.ProcessId} still serves. {result.Reason}"),
        };
        await (exitCode == ExitCodes.Ok ? stdout : stderr).WriteLineAsync(exitCode == ExitCodes.Ok ? text : "zerodowntime: " + text);
        return exitCode;
    }

    internal static async Task<int> RollbackAsync(ControlOptions options, TextWriter stdout, TextWriter stderr)
    {
        var clock = Stopwatch.StartNew();
        RollbackReply reply;
        try
        {
            reply = await HandoffControlClient.RollbackAsync(options.SocketPath, options.Timeout, options.Note, HandedOverWait);
        }
        catch (ControlException ex)
        {
            return await FailAsync(options, ex, stdout, stderr);
        }

        var result = reply.Result;
        int exitCode = result.Outcome switch
        {
            RollbackOutcome.RolledBack => ExitCodes.Ok,
            RollbackOutcome.Refused => ExitCodes.Refused,
            _ => ExitCodes.RollbackIncomplete,
        };
        if (options.Json)
        {
            await stdout.WriteLineAsync(Json(writer =>
            {
                writer.WriteString("socket", options.SocketPath);
                writer.WriteString("outcome", Name(result.Outcome));
                writer.WriteNumber("exitCode", exitCode);
                WritePid(writer, "servingPid", result.ServingPid);
                WritePid(writer, "rolledBackPid", result.Outcome == RollbackOutcome.RolledBack ? reply.Before.ProcessId : 0);
                writer.WriteString("reason", result.Reason);
                WriteMilliseconds(writer, "switchMilliseconds", result.SwitchMilliseconds);
                writer.WriteNumber("totalMs", Math.Round(clock.Elapsed.TotalMilliseconds, 1));
            }));
            return exitCode;
        }

        string text = result.Outcome switch
        {
            RollbackOutcome.RolledBack => string.Create(CultureInfo.InvariantCulture,
                $"rolled back: pid {result.ServingPid} serves again (pid {reply.Before.ProcessId} drains and exits 81); switch {Ms(result.SwitchMilliseconds)}; reason: {result.Reason}"),
            RollbackOutcome.Refused => $"rollback refused by pid {reply.Before.ProcessId}: {result.Reason}",
            _ => string.Create(CultureInfo.InvariantCulture,
                $"rollback did not complete: {result.Reason}; pid {result.ServingPid} serves on with no way back"),
        };
        await (exitCode == ExitCodes.Ok ? stdout : stderr).WriteLineAsync(exitCode == ExitCodes.Ok ? text : "zerodowntime: " + text);
        return exitCode;
    }

    private static string Committed(UpgradeResultMessage result, StatusMessage before, double total) => string.Create(CultureInfo.InvariantCulture,
        $"Upgraded: pid {result.SuccessorPid} serves (took over from pid {before.ProcessId}, generation {before.Generation + 1}); ready {Ms(result.ReadyMilliseconds)} and committed {Ms(result.CommittedMilliseconds)} after it was started; {total:0} ms from this command to the commit.");

    /// <summary>The last line of <c>upgrade --wait-probation</c> after a commit: how the probation ended.</summary>
    private static string DescribeProbationOutcome(ProbationUpdateMessage? probation, UpgradeResultMessage result, StatusMessage before) => probation?.Progress switch
    {
        ProbationProgress.Passed => $"probation passed: {probation.Reason}; pid {result.SuccessorPid} serves, pid {before.ProcessId} exits",
        ProbationProgress.RolledBack => $"rolled back during probation ({Name(probation.Origin)}): {probation.Reason}; pid {before.ProcessId} serves again",
        ProbationProgress.EndedEarly => $"probation ended early: {probation.Reason}; pid {result.SuccessorPid} serves with no way back",
        ProbationProgress.None => $"no probation: {probation.Reason}; pid {result.SuccessorPid} serves with no way back",
        _ => $"no probation: the build of pid {before.ProcessId} has none (no probation update after the commit); pid {result.SuccessorPid} serves with no way back",
    };

    /// <summary>upgrade --wait-probation --json: <c>"probation": {"outcome", "reason", "origin", "endsAt"}</c>.</summary>
    private static void WriteProbationOutcome(Utf8JsonWriter writer, ProbationUpdateMessage? probation, StatusMessage before)
    {
        writer.WriteStartObject("probation");
        writer.WriteString("outcome", probation is null ? "none" : Name(probation.Progress));
        writer.WriteString("reason", probation?.Reason ?? $"the build of pid {before.ProcessId} has no probation (no probation update after the commit)");
        if (probation is { Origin: not RollbackOrigin.None })
        {
            writer.WriteString("origin", Name(probation.Origin));
        }
        else
        {
            writer.WriteNull("origin");
        }

        WriteTime(writer, "endsAt", probation?.EndsUnixMilliseconds ?? 0);
        writer.WriteEndObject();
    }

    /// <summary>status --json: <c>"probation"</c>, null when no generation is on probation (or the build has none).</summary>
    private static void WriteProbation(Utf8JsonWriter writer, ProbationStatusMessage? probation)
    {
        if (probation is null or { State: ProbationState.None })
        {
            writer.WriteNull("probation");
            return;
        }

        writer.WriteStartObject("probation");
        writer.WriteString("state", Name(probation.State));
        WritePid(writer, "peerPid", probation.PeerPid);
        WriteTime(writer, "endsAt", probation.EndsUnixMilliseconds);
        if (probation.EndsUnixMilliseconds > 0)
        {
            writer.WriteNumber("remainingMs", (long)Math.Max(0, Left(probation.EndsUnixMilliseconds).TotalMilliseconds));
        }
        else
        {
            writer.WriteNull("remainingMs");
        }

        if (probation.Reason.Length > 0)
        {
            writer.WriteString("reason", probation.Reason);
        }
        else
        {
            writer.WriteNull("reason");
        }

        writer.WriteEndObject();
    }

    /// <summary>status: one <c>probation:</c> line, none when no generation is on probation (or the build has none).</summary>
    private static string Describe(ProbationStatusMessage? probation) => probation?.State switch
    {
        ProbationState.OnProbation => string.Create(CultureInfo.InvariantCulture,
            $"  probation: pid {probation.PeerPid} stands by until {Time(probation.EndsUnixMilliseconds)} ({Duration(Left(probation.EndsUnixMilliseconds))} left)\n"),
        ProbationState.RollingBack => string.Create(CultureInfo.InvariantCulture, $"  probation: rolling back to pid {probation.PeerPid}\n"),
        ProbationState.RolledBack => string.Create(CultureInfo.InvariantCulture,
            $"  probation: rolled back from pid {probation.PeerPid}{(probation.EndsUnixMilliseconds > 0 ? " at " + Time(probation.EndsUnixMilliseconds) : "")}: {probation.Reason}\n"),
        _ => "",
    };

    private static TimeSpan Left(long unixMilliseconds) => DateTimeOffset.FromUnixTimeMilliseconds(unixMilliseconds) - DateTimeOffset.UtcNow;

    private static string Duration(TimeSpan span) =>
        span <= TimeSpan.Zero ? "0 s" :
        span.TotalMinutes < 1 ? string.Create(CultureInfo.InvariantCulture, $"{(int)span.TotalSeconds} s") :
        span.TotalHours < 1 ? string.Create(CultureInfo.InvariantCulture, $"{(int)span.TotalMinutes} min {span.Seconds} s") :
        string.Create(CultureInfo.InvariantCulture, $"{(int)span.TotalHours} h {span.Minutes} min");

    private static void WriteTime(Utf8JsonWriter writer, string name, long unixMilliseconds)
    {
        if (unixMilliseconds > 0)
        {
            writer.WriteString(name, Time(unixMilliseconds));
        }
        else
        {
            writer.WriteNull(name);
        }
    }

    /// <summary>
    /// The status of the process that serves the socket. Right after a commit the old process still answers on the
    /// path until its successor renames its own socket over it (architecture.md, step 6): a Draining answer is asked
    /// again (every 50 ms, at most <see cref="HandedOverWait"/>), as a successor retries "already handed over".
    /// </summary>
    private static async Task<ControlStatus> CurrentStatusAsync(string socketPath)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            var status = await HandoffControlClient.StatusWithProbationAsync(socketPath, StatusTimeout);
            if (status.Status.State != ServingState.Draining || clock.Elapsed >= HandedOverWait)
            {
                return status;
            }

            await Task.Delay(50);
        }
    }

    private static string ExitedWith(int exitCode) =>
        exitCode >= 0 ? string.Create(CultureInfo.InvariantCulture, $" exited with code {exitCode}") : "";

    private static string Ms(long milliseconds) =>
        milliseconds >= 0 ? string.Create(CultureInfo.InvariantCulture, $"{milliseconds} ms") : "never";

    private static void WriteMilliseconds(Utf8JsonWriter writer, string name, long milliseconds)
    {
        if (milliseconds >= 0)
        {
            writer.WriteNumber(name, milliseconds);
        }
        else
        {
            writer.WriteNull(name);
        }
    }

    private static async Task<int> FailAsync(ControlOptions options, ControlException ex, TextWriter stdout, TextWriter stderr)
    {
        int code = ex.Error switch
        {
            ControlError.NoServer => ExitCodes.NoServer,
            ControlError.Untrusted => ExitCodes.Untrusted,
            ControlError.TimedOut => ExitCodes.TimedOut,
            ControlError.Refused => ExitCodes.Refused,
            _ => ExitCodes.Protocol, // also NoProbation: rollback's "this build has no probation"
        };
        if (options.Json)
        {
            await stdout.WriteLineAsync(Json(writer =>
            {
                writer.WriteString("socket", options.SocketPath);
                writer.WriteBoolean("serving", false);
                writer.WriteString("error", ex.Error switch
                {
                    ControlError.NoServer => "no-server",
                    ControlError.Untrusted => "untrusted",
                    ControlError.TimedOut => "timed-out",
                    ControlError.Refused => "refused",
                    ControlError.NoProbation => "no-probation",
                    _ => "protocol",
                });
                writer.WriteString("message", ex.Message);
                writer.WriteNumber("exitCode", code);
            }));
        }

        await stderr.WriteLineAsync("zerodowntime: " + ex.Message);
        return code;
    }

    internal static string Name(ServingState state) => state switch
    {
        ServingState.Serving => "serving",
        ServingState.HandingOver => "handing-over",
        ServingState.Draining => "draining",
        ServingState.ShuttingDown => "shutting-down",
        _ => "unknown-" + ((byte)state).ToString(CultureInfo.InvariantCulture),
    };

    private static string Name(UpgradeOutcome outcome) => outcome switch
    {
        UpgradeOutcome.Committed => "committed",
        UpgradeOutcome.Failed => "failed",
        UpgradeOutcome.Abandoned => "abandoned",
        UpgradeOutcome.Refused => "refused",
        _ => "unknown-" + ((byte)outcome).ToString(CultureInfo.InvariantCulture),
    };

    private static string Name(RollbackOutcome outcome) => outcome switch
    {
        RollbackOutcome.RolledBack => "rolled-back",
        RollbackOutcome.Refused => "refused",
        RollbackOutcome.Failed => "failed",
        _ => "unknown-" + ((byte)outcome).ToString(CultureInfo.InvariantCulture),
    };

    private static string Name(ProbationProgress progress) => progress switch
    {
        ProbationProgress.Started => "started",
        ProbationProgress.Passed => "passed",
        ProbationProgress.RolledBack => "rolled-back",
        ProbationProgress.EndedEarly => "ended-early",
        ProbationProgress.None => "none",
        _ => "unknown-" + ((byte)progress).ToString(CultureInfo.InvariantCulture),
    };

    private static string Name(ProbationState state) => state switch
    {
        ProbationState.None => "none",
        ProbationState.OnProbation => "on-probation",
        ProbationState.RollingBack => "rolling-back",
        ProbationState.RolledBack => "rolled-back",
        _ => "unknown-" + ((byte)state).ToString(CultureInfo.InvariantCulture),
    };

    /// <summary>As the <c>zerodowntime.rollback.origin</c> tag (docs/probation-design.md section 4).</summary>
    private static string Name(RollbackOrigin origin) => origin switch
    {
        RollbackOrigin.Tool => "manual",
        RollbackOrigin.Signal => "signal",
        RollbackOrigin.ErrorRatio => "error-ratio",
        RollbackOrigin.HealthCheck => "health-check",
        _ => "none",
    };

    private static void WriteStatus(Utf8JsonWriter writer, StatusMessage status)
    {
        writer.WriteNumber("pid", status.ProcessId);
        writer.WriteString("applicationId", status.ApplicationId);
        writer.WriteString("state", Name(status.State));
        writer.WriteNumber("generation", status.Generation);
        writer.WriteString("servingSince", Time(status.ServingSinceUnixMilliseconds));
        writer.WriteString("firstStart", Time(status.FirstStartUnixMilliseconds));
        writer.WriteStartArray("listeners");
        foreach (var listener in status.Listeners)
        {
            writer.WriteStartObject();
            writer.WriteString("key", listener.Key);
            writer.WriteString("boundEndPoint", listener.BoundEndPoint);
            writer.WriteEndObject();
        }

        writer.WriteEndArray();
        WritePid(writer, "drainingPredecessorPid", status.DrainingPredecessorPid);
        WritePid(writer, "successorPid", status.SuccessorPid);
    }

    /// <summary>
    /// The generations that drain after their handoff (oldest first), from their state files beside the socket: a
    /// released predecessor has no connection to the serving process, so these are read here, not asked for.
    /// </summary>
    private static void WriteDraining(Utf8JsonWriter writer, IReadOnlyList<DrainingGeneration> draining)
    {
        writer.WriteStartArray("drainingGenerations");
        foreach (var generation in draining)
        {
            writer.WriteStartObject();
            writer.WriteNumber("pid", generation.ProcessId);
            writer.WriteNumber("generation", generation.Generation);
            writer.WriteNumber("openConnections", generation.OpenConnections);
            writer.WriteString("drainDeadline", Time(generation.DrainDeadlineUnixMilliseconds));
            writer.WriteEndObject();
        }

        writer.WriteEndArray();
    }

    private static string Describe(IReadOnlyList<DrainingGeneration> draining)
    {
        var text = new StringBuilder();
        foreach (var generation in draining)
        {
            text.Append(CultureInfo.InvariantCulture,
                $"  draining: generation {generation.Generation}, pid {generation.ProcessId}, {generation.OpenConnections} open connection(s), deadline {Time(generation.DrainDeadlineUnixMilliseconds)}\n");
        }

        return text.ToString();
    }

    private static void WritePid(Utf8JsonWriter writer, string name, int pid)
    {
        if (pid > 0)
        {
            writer.WriteNumber(name, pid);
        }
        else
        {
            writer.WriteNull(name);
        }
    }

    private static string Describe(StatusMessage status)
    {
        var text = new StringBuilder();
        var since = DateTimeOffset.FromUnixTimeMilliseconds(status.ServingSinceUnixMilliseconds);
        var age = DateTimeOffset.UtcNow - since;
        text.Append(CultureInfo.InvariantCulture,
            $"{status.ApplicationId}: pid {status.ProcessId}, {Name(status.State)} since {Time(status.ServingSinceUnixMilliseconds)} ({Age(age)}), generation {status.Generation}, first start {Time(status.FirstStartUnixMilliseconds)}\n");
        foreach (var listener in status.Listeners)
        {
            text.Append(CultureInfo.InvariantCulture, $"  listener {listener.Key} on {listener.BoundEndPoint}\n");
        }

        if (status.DrainingPredecessorPid > 0)
        {
            text.Append(CultureInfo.InvariantCulture, $"  predecessor pid {status.DrainingPredecessorPid} still draining\n");
        }

        if (status.SuccessorPid > 0)
        {
            text.Append(CultureInfo.InvariantCulture, $"  handing over to successor pid {status.SuccessorPid}\n");
        }

        return text.ToString();
    }

    private static string Age(TimeSpan age) => age.TotalSeconds < 0 ? "just now" :
        age.TotalMinutes < 2 ? string.Create(CultureInfo.InvariantCulture, $"{age.TotalSeconds:0} s ago") :
        age.TotalHours < 2 ? string.Create(CultureInfo.InvariantCulture, $"{age.TotalMinutes:0} min ago") :
        string.Create(CultureInfo.InvariantCulture, $"{age.TotalHours:0.#} h ago");

    private static string Time(long unixMilliseconds) =>
        DateTimeOffset.FromUnixTimeMilliseconds(unixMilliseconds).ToString("yyyy-MM-ddTHH:mm:ss.fffZ", CultureInfo.InvariantCulture);

    private static string Json(Action<Utf8JsonWriter> body)
    {
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            body(writer);
            writer.WriteEndObject();
        }

        return Encoding.UTF8.GetString(buffer.ToArray());
    }
}
