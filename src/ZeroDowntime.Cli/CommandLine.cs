using System.CommandLine;
using System.CommandLine.Help;
using System.CommandLine.Invocation;
using System.CommandLine.Parsing;
using System.Globalization;
using ZeroDowntime.Hosting;

namespace ZeroDowntime.Cli;

/// <summary>
/// The tool's command line, parsed by System.CommandLine: the verbs status, upgrade, rollback and run, their options, help per
/// verb, parse errors, and shell completion through the <c>[suggest]</c> directive (dotnet-suggest). What each verb prints and its exit codes are in <see cref="Cli"/>. Where this departs from
/// System.CommandLine's defaults, it keeps what other tools rely on (README, exit codes): every parse error exits 2
/// (<see cref="ExitCodes.Usage"/>), not 1, which means "upgrade failed" here; <c>zerodowntime --help</c> prints the
/// whole <see cref="Cli.Usage"/> with the exit codes; run's COMMAND is never parsed; each departure says why below.
/// </summary>
internal static class CommandLine
{
    private static readonly TimeSpan MaxTimeout = TimeSpan.FromHours(1);

    private static readonly ParserConfiguration Parsing = new()
    {
        // run passes its COMMAND on as is: an argument such as @file is the app's, never a response file of the tool.
        ResponseFileTokenReplacer = null,
    };

    public static Task<int> InvokeAsync(string[] args, TextWriter stdout, TextWriter stderr) =>
        InvokeAsync(args, stdout, stderr, CommandLineVerbs.Printing(stdout, stderr));

    /// <summary>Parses <paramref name="args"/> and runs the verb with <paramref name="verbs"/>; 2 on a parse error.</summary>
    internal static Task<int> InvokeAsync(string[] args, TextWriter stdout, TextWriter stderr, CommandLineVerbs verbs)
    {
        var verbatim = RunCommandVerbatim(args);
        var root = Create(stdout, stderr, runAfterDoubleDash: verbatim is ["run", ..] && verbatim.Contains("--"), verbs);
        var result = root.Parse(verbatim, Parsing);
        if (result.Action is ParseErrorAction)
        {
            string verb = result.CommandResult.Command == root ? "" : result.CommandResult.Command.Name + ": ";
            foreach (var error in result.Errors)
            {
                stderr.WriteLine($"zerodowntime: {verb}{error.Message}");
            }

            stderr.WriteLine("Try 'zerodowntime --help'.");
            return Task.FromResult(ExitCodes.Usage);
        }

        return result.InvokeAsync(new InvocationConfiguration
        {
            Output = stdout,
            Error = stderr,

            // An exception is a crash, as before: exit 1 would read as "the upgrade failed".
            EnableDefaultExceptionHandler = false,

            // No SIGINT/SIGTERM handlers of System.CommandLine: run forwards those signals to the app itself, and
            // status and upgrade have deadlines of their own.
            ProcessTerminationTimeout = null,
        });
    }

    /// <param name="stdout">Output, help and version.</param>
    /// <param name="stderr">Errors, and run's log.</param>
    /// <param name="runAfterDoubleDash">True when run's COMMAND follows a <c>--</c>, so it may start with '-'.</param>
    /// <param name="verbs">What status, upgrade and run do with the values parsed.</param>
    internal static RootCommand Create(TextWriter stdout, TextWriter stderr, bool runAfterDoubleDash, CommandLineVerbs verbs)
    {
        var status = new Command("status", "Who serves: pid, since when, generation, state (serving, handing-over, draining, shutting-down), listeners (key and bound endpoint), a predecessor still draining, a successor being handed over to. Exit codes: zerodowntime --help.");
        var statusOptions = new ControlOptionSymbols(status, ControlVerb.Status);
        status.SetAction((result, _) => verbs.StatusAsync(statusOptions.Read(result)));

        var upgrade = new Command("upgrade", "Asks the running process to start its successor (as on SIGHUP) and waits until the successor has committed (exit 0, its pid and the handoff's timings) or the upgrade ended otherwise (non-zero, why); with --wait-probation, then until its probation has ended (exit 0 passed, 9 rolled back, 10 no probation ran to its end). Exit codes: zerodowntime --help.");
        var upgradeOptions = new ControlOptionSymbols(upgrade, ControlVerb.Upgrade);
        upgrade.SetAction((result, _) => verbs.UpgradeAsync(upgradeOptions.Read(result)));

        var rollback = new Command("rollback", "Asks the serving process, on probation, to hand back to the generation that stands by, and waits until the old generation serves again (exit 0, the switch in ms) or the rollback ended otherwise (1 did not complete, 4 refused, 7 the build has no probation). Exit codes: zerodowntime --help.");
        var rollbackOptions = new ControlOptionSymbols(rollback, ControlVerb.Rollback);
        rollback.SetAction((result, _) => verbs.RollbackAsync(rollbackOptions.Read(result)));

        var command = new Argument<string[]>("COMMAND")
        {
            Arity = ArgumentArity.ZeroOrMore,
            Description = "The app's command and its arguments, passed on as they are (put -- before a command that starts with '-').",
        };
        var maxRestarts = new Option<int>("--max-restarts")
        {
            HelpName = "N",
            Description = "How many times a crashed app is started again within --restart-window before run gives up, closes the kept sockets and exits 8 (default 5).",
            DefaultValueFactory = _ => RestartPolicy.Default.MaxRestarts,
            CustomParser = result =>
            {
                string text = result.Tokens[0].Value;
                if (int.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int parsed) && parsed <= 1000)
                {
                    return parsed;
                }

                result.AddError($"--max-restarts '{text}' is not a number from 0 to 1000");
                return 0;
            },
        };
        var restartWindow = new Option<TimeSpan>("--restart-window")
        {
            HelpName = "T",
            Description = "The window of --max-restarts (default 60s). 60, 60s, 1500ms, 2m or 00:01:00.",
            DefaultValueFactory = _ => RestartPolicy.Default.Window,
            CustomParser = result =>
            {
                string text = result.Tokens[0].Value;
                if (ParseDuration(text) is { } parsed && parsed > TimeSpan.Zero && parsed <= MaxTimeout)
                {
                    return parsed;
                }

                result.AddError($"--restart-window '{text}' is not a duration from 1 ms to 1 h (60, 60s, 1500ms, 2m, 00:01:00)");
                return TimeSpan.Zero;
            },
        };
        var run = new Command("run", "Runs COMMAND as a supervisor with a stable pid (containers, process managers): child subreaper, its own NOTIFY_SOCKET for the app, follows MAINPID= through every handoff, forwards SIGTERM/SIGINT to the current main process, SIGHUP as an upgrade and SIGUSR1 as a rollback, reaps every child, exits with the main process's exit code (128+N when signal N killed it) once no child is left, 127 when COMMAND cannot be started. Keeps the listening sockets the app stores with it (FDSTORE=1) and starts a crashed app again with them (LISTEN_FDS), at most --max-restarts times within --restart-window (then it closes them and exits 8).")
        {
            maxRestarts,
            restartWindow,
            command,
        };
        run.Validators.Add(result =>
        {
            // An option that run does not know lands in COMMAND: System.CommandLine takes it for an argument.
            var tokens = result.GetResult(command)?.Tokens ?? [];
            if (tokens.Count == 0)
            {
                result.AddError("no COMMAND given (zerodowntime run -- dotnet MyApp.dll)");
            }
            else if (tokens[0].Value.StartsWith('-') && !runAfterDoubleDash)
            {
                result.AddError($"unknown option '{tokens[0].Value}' (put -- before a command that starts with '-')");
            }
        });
        run.SetAction(result => verbs.Run(result.GetRequiredValue(command),
            new RestartPolicy(result.GetValue(maxRestarts), result.GetValue(restartWindow))));

        // "zerodowntime help" as before, besides --help.
        var help = new Command("help") { Hidden = true, TreatUnmatchedTokensAsErrors = false };
        help.SetAction(_ => Usage(stdout, ExitCodes.Ok));

        // A RootCommand for its [suggest] directive (shell completion through dotnet-suggest). It is named after the
        // entry assembly (ZeroDowntime.Cli); HelpName puts the tool's command name in help's usage lines instead
        // (System.CommandLine 3 defaults it to ToolCommandName; set here so that help does not depend on build metadata).
        var root = new RootCommand("Status and upgrades of a ZeroDowntime.Hosting app over its handoff socket, and a supervisor.")
        {
            status, upgrade, rollback, run, help,
        };
        root.HelpName = "zerodowntime";
        var helpOption = root.Options.OfType<HelpOption>().Single();
        helpOption.Action = new UsageOrVerbHelp(root, (SynchronousCommandLineAction)helpOption.Action!, stdout);
        root.Options.OfType<VersionOption>().Single().Action = new PrintVersion(stdout);
        root.SetAction(_ => Usage(stderr, ExitCodes.Usage));
        return root;
    }

    /// <summary>
    /// run's COMMAND and its arguments are the app's: from the first token after <c>run</c> that is not an option on,
    /// nothing is parsed (as env(1) and nohup(1) do), so <c>run dotnet App.dll --help</c> runs the app with --help.
    /// A <c>--</c> put in front makes System.CommandLine take every later token as an argument. run's own options
    /// (<c>--max-restarts N</c>, <c>--restart-window T</c>, also as <c>--max-restarts=N</c> or <c>--max-restarts:N</c>)
    /// come before the command and stay the tool's.
    /// </summary>
    private static string[] RunCommandVerbatim(string[] args)
    {
        if (args is not ["run", ..])
        {
            return args;
        }

        int first = 1;
        while (first < args.Length)
        {
            if (args[first] is "--max-restarts" or "--restart-window" && first + 1 < args.Length)
            {
                first += 2;
            }
            else if (RunOptionWithItsValue(args[first]))
            {
                first += 1;
            }
            else
            {
                break;
            }
        }

        return first < args.Length && !args[first].StartsWith('-') ? [.. args.AsSpan(0, first), "--", .. args.AsSpan(first)] : args;
    }

    private static bool RunOptionWithItsValue(string token) =>
        token.StartsWith("--max-restarts=", StringComparison.Ordinal) || token.StartsWith("--max-restarts:", StringComparison.Ordinal) ||
        token.StartsWith("--restart-window=", StringComparison.Ordinal) || token.StartsWith("--restart-window:", StringComparison.Ordinal);

    private static int Usage(TextWriter writer, int exitCode)
    {
        writer.WriteLine(Cli.Usage);
        return exitCode;
    }

    internal static TimeSpan? ParseDuration(string text)
    {
        var invariant = CultureInfo.InvariantCulture;
        if (text.Contains(':', StringComparison.Ordinal))
        {
            return TimeSpan.TryParse(text, invariant, out var span) ? span : null;
        }

        (string number, double scale) = text switch
        {
            _ when text.EndsWith("ms", StringComparison.Ordinal) => (text[..^2], 1.0),
            _ when text.EndsWith('s') => (text[..^1], 1000.0),
            _ when text.EndsWith("min", StringComparison.Ordinal) => (text[..^3], 60_000.0),
            _ when text.EndsWith('m') => (text[..^1], 60_000.0),
            _ => (text, 1000.0),
        };
        return double.TryParse(number, NumberStyles.AllowDecimalPoint, invariant, out double value) && value * scale < TimeSpan.MaxValue.TotalMilliseconds
            ? TimeSpan.FromMilliseconds(value * scale)
            : null;
    }

    /// <summary>The verbs that talk to the running process, for the options each of them has.</summary>
    private enum ControlVerb
    {
        Status,
        Upgrade,
        Rollback,
    }

    /// <summary>The options of status, upgrade and rollback, added to <paramref name="verb"/>.</summary>
    private sealed class ControlOptionSymbols
    {
        private readonly Option<string> _socket = new("--socket")
        {
            HelpName = "PATH",
            Description = "The handoff socket (the app's ZeroDowntime:SocketPath).",
        };

        private readonly Option<string> _app = new("--app")
        {
            HelpName = "ID",
            Description = "The app's ApplicationId (by default its assembly name, e.g. WebApi): the library's default path, $XDG_RUNTIME_DIR/zerodowntime/ID.sock, else /tmp/zerodowntime-UID/ID.sock. Give one of the two.",
        };

        private readonly Option<bool> _json = new("--json")
        {
            Arity = ArgumentArity.Zero,
            Description = "One JSON object on stdout.",
        };

        private readonly Option<bool> _waitProbation = new("--wait-probation")
        {
            Arity = ArgumentArity.Zero,
            Description = "After the commit, wait until the new release's probation has ended (at most its window's end plus 30 s): exit 0 when it passed, 9 when the release was rolled back, 10 when no probation ran to its end.",
        };

        private readonly Option<string> _note = new("--note")
        {
            HelpName = "TEXT",
            Description = "Why: logged by both processes and returned as the rollback's reason (default none).",
        };

        private readonly Option<TimeSpan?>? _timeout;

        public ControlOptionSymbols(Command verb, ControlVerb kind)
        {
            verb.Options.Add(_socket);
            verb.Options.Add(_app);
            if (kind is ControlVerb.Upgrade or ControlVerb.Rollback)
            {
                _timeout = new Option<TimeSpan?>("--timeout")
                {
                    HelpName = "T",
                    Description = "How long to wait for the result (default 75s: the default HandoffTimeout of 60 s plus a margin, below systemd's default TimeoutStartSec of 90 s). 90, 90s, 1500ms, 2m or 00:01:30.",
                    CustomParser = result =>
                    {
                        string text = result.Tokens[0].Value;
                        if (ParseDuration(text) is { } parsed && parsed > TimeSpan.Zero && parsed <= MaxTimeout)
                        {
                            return parsed;
                        }

                        result.AddError($"--timeout '{text}' is not a duration from 1 ms to 1 h (90, 90s, 1500ms, 2m, 00:01:30)");
                        return null;
                    },
                };
                verb.Options.Add(_timeout);
            }

            if (kind == ControlVerb.Upgrade)
            {
                verb.Options.Add(_waitProbation);
            }

            if (kind == ControlVerb.Rollback)
            {
                verb.Options.Add(_note);
            }

            verb.Options.Add(_json);
            foreach (var option in new[] { _socket, _app })
            {
                option.Validators.Add(result =>
                {
                    if (result.Tokens is [{ Value.Length: 0 }])
                    {
                        result.AddError($"{option.Name} needs a value");
                    }
                });
            }

            verb.Validators.Add(result =>
            {
                bool socket = result.GetResult(_socket) is not null;
                bool app = result.GetResult(_app) is not null;
                if (socket && app)
                {
                    result.AddError("give --socket or --app, not both");
                }
                else if (!socket && !app)
                {
                    result.AddError("which app? Give --socket PATH (its ZeroDowntime:SocketPath) or --app ID");
                }
            });
        }

        public ControlOptions Read(ParseResult result)
        {
            string path = result.GetValue(_socket) is { } socket
                ? Path.IsPathRooted(socket) ? socket : Path.GetFullPath(socket)
                : ZeroDowntimeOptionsDefaults.DefaultSocketPath(result.GetRequiredValue(_app), Environment.GetEnvironmentVariable("XDG_RUNTIME_DIR"));
            TimeSpan? timeout = _timeout is null ? null : result.GetValue(_timeout);
            return new ControlOptions(path, timeout ?? Cli.DefaultUpgradeTimeout, result.GetValue(_json),
                result.GetResult(_waitProbation) is not null && result.GetValue(_waitProbation), result.GetResult(_note) is null ? "" : result.GetValue(_note) ?? "");
        }
    }

    /// <summary>--help: the whole usage text for the tool (as before), System.CommandLine's help for a verb.</summary>
    private sealed class UsageOrVerbHelp(Command root, SynchronousCommandLineAction verbHelp, TextWriter stdout) : SynchronousCommandLineAction
    {
        public override bool ClearsParseErrors => true;

        public override int Invoke(ParseResult parseResult) =>
            parseResult.CommandResult.Command == root || parseResult.CommandResult.Command.Name == "help"
                ? Usage(stdout, ExitCodes.Ok)
                : verbHelp.Invoke(parseResult);
    }

    /// <summary>--version: the package version (major.minor.patch), as before.</summary>
    private sealed class PrintVersion(TextWriter stdout) : SynchronousCommandLineAction
    {
        public override int Invoke(ParseResult parseResult)
        {
            stdout.WriteLine(typeof(CommandLine).Assembly.GetName().Version?.ToString(3) ?? "?");
            return ExitCodes.Ok;
        }
    }
}

/// <summary>
/// The options of status, upgrade and rollback: <paramref name="WaitProbation"/> is upgrade's <c>--wait-probation</c>,
/// <paramref name="Note"/> rollback's <c>--note</c> ("" when not given).
/// </summary>
internal sealed record ControlOptions(string SocketPath, TimeSpan Timeout, bool Json, bool WaitProbation = false, string Note = "");
