using ZeroDowntime.Cli;

namespace ZeroDowntime.Hosting.Tests.Unit;

/// <summary>
/// Issue 22: the <c>zerodowntime</c> tool's command line (System.CommandLine), parsed in-process with its verbs
/// replaced by recorders: every verb and option form accepted, the values they give, every usage error (exit 2, a
/// line on stderr, nothing run), help per verb, run's COMMAND passed on as is, and the <c>[suggest]</c> directive.
/// CliTests drives the same command line as a process.
/// </summary>
public sealed class CommandLineTests : IDisposable
{
    private static readonly string WorkingDirectory = Environment.CurrentDirectory;

    private readonly StringWriter _stdout = new();
    private readonly StringWriter _stderr = new();
    private readonly List<(string Verb, ControlOptions? Options, string[]? Command, RestartPolicy? Policy)> _calls = [];

    [Theory]
    [InlineData("status --socket /run/app.sock", "status", "/run/app.sock", false)]
    [InlineData("status --socket=/run/app.sock --json", "status", "/run/app.sock", true)]
    [InlineData("status --json --socket:/run/app.sock", "status", "/run/app.sock", true)]
    [InlineData("status --socket app.sock", "status", "app.sock", false)]
    [InlineData("upgrade --socket /run/app.sock", "upgrade", "/run/app.sock", false)]
    [InlineData("upgrade --json --socket /run/app.sock", "upgrade", "/run/app.sock", true)]
    [InlineData("rollback --socket /run/app.sock", "rollback", "/run/app.sock", false)]
    [InlineData("rollback --json --socket=/run/app.sock", "rollback", "/run/app.sock", true)]
    public async Task InvokeAsync_StatusOrUpgradeWithSocket_RunsTheVerbWithTheFullPath(string line, string verb, string socket, bool json)
    {
        int exitCode = await InvokeAsync(line.Split(' '), verbExitCode: 3);

        Assert.Equal(3, exitCode); // the verb's own exit code is the tool's
        var call = Assert.Single(_calls);
        Assert.Equal(verb, call.Verb);
        Assert.Equal(new ControlOptions(Path.GetFullPath(socket, WorkingDirectory), Cli.Cli.DefaultUpgradeTimeout, json), call.Options);
        Assert.Equal("", _stdout.ToString() + _stderr.ToString());
    }

    [Theory]
    [InlineData("status")]
    [InlineData("upgrade")]
    [InlineData("rollback")]
    public async Task InvokeAsync_App_RunsTheVerbWithTheLibrarysDefaultPath(string verb)
    {
        Assert.Equal(0, await InvokeAsync([verb, "--app", "WebApi"]));

        string expected = ZeroDowntimeOptionsDefaults.DefaultSocketPath("WebApi", Environment.GetEnvironmentVariable("XDG_RUNTIME_DIR"));
        Assert.Equal(expected, Assert.Single(_calls).Options?.SocketPath);
    }

    [Theory]
    [InlineData("90", 90_000)]
    [InlineData("90s", 90_000)]
    [InlineData("1500ms", 1_500)]
    [InlineData("2m", 120_000)]
    [InlineData("2min", 120_000)]
    [InlineData("0.5", 500)]
    [InlineData("00:01:30", 90_000)]
    [InlineData("1ms", 1)]
    [InlineData("3600", 3_600_000)]
    public async Task InvokeAsync_UpgradeTimeout_AcceptsEachDurationForm(string timeout, int milliseconds)
    {
        Assert.Equal(0, await InvokeAsync(["upgrade", "--app", "WebApi", "--timeout", timeout]));
        Assert.Equal(0, await InvokeAsync(["upgrade", "--timeout=" + timeout, "--app", "WebApi"]));

        Assert.All(_calls, call => Assert.Equal(TimeSpan.FromMilliseconds(milliseconds), call.Options?.Timeout));
        Assert.Equal(2, _calls.Count);
    }

    [Theory]
    [InlineData("rollback --app WebApi --timeout 10s", 10_000)]
    [InlineData("rollback --timeout=1500ms --app WebApi", 1_500)]
    [InlineData("rollback --app WebApi", 75_000)]
    public async Task InvokeAsync_RollbackTimeout_DefaultsTo75SecondsAndAcceptsTheDurationForms(string line, int milliseconds)
    {
        Assert.Equal(0, await InvokeAsync(line.Split(' ')));

        Assert.Equal(TimeSpan.FromMilliseconds(milliseconds), Assert.Single(_calls).Options?.Timeout);
    }

    [Theory]
    [InlineData(new[] { "rollback", "--app", "WebApi", "--note", "bad deploy: 500 on /" }, "bad deploy: 500 on /")]
    [InlineData(new[] { "rollback", "--note=why", "--app", "WebApi" }, "why")]
    [InlineData(new[] { "rollback", "--app", "WebApi", "--note", "" }, "")]
    [InlineData(new[] { "rollback", "--app", "WebApi" }, "")]
    public async Task InvokeAsync_RollbackNote_IsPassedOnAsGiven(string[] args, string note)
    {
        Assert.Equal(0, await InvokeAsync(args));

        var options = Assert.Single(_calls).Options;
        Assert.Equal(note, options?.Note);
        Assert.False(options?.WaitProbation);
    }

    [Theory]
    [InlineData("upgrade --app WebApi --wait-probation", true, false)]
    [InlineData("upgrade --wait-probation --json --socket /run/app.sock --timeout 90", true, true)]
    [InlineData("upgrade --app WebApi", false, false)]
    public async Task InvokeAsync_UpgradeWaitProbation_IsAFlag(string line, bool wait, bool json)
    {
        Assert.Equal(0, await InvokeAsync(line.Split(' ')));

        var options = Assert.Single(_calls).Options;
        Assert.Equal(wait, options?.WaitProbation);
        Assert.Equal(json, options?.Json);
        Assert.Equal("", options?.Note);
    }

    [Fact]
    public async Task InvokeAsync_UpgradeWithoutTimeout_Waits75Seconds()
    {
        Assert.Equal(0, await InvokeAsync(["upgrade", "--socket", "/run/app.sock"]));

        Assert.Equal(TimeSpan.FromSeconds(75), Assert.Single(_calls).Options?.Timeout);
    }

    [Theory]
    [InlineData("run -- dotnet app.dll --urls x", "dotnet app.dll --urls x", 5, 60_000)]
    [InlineData("run dotnet app.dll --urls x", "dotnet app.dll --urls x", 5, 60_000)]
    [InlineData("run dotnet app.dll --help -h -? --version", "dotnet app.dll --help -h -? --version", 5, 60_000)]
    [InlineData("run dotnet app.dll -- x -- y", "dotnet app.dll -- x -- y", 5, 60_000)]
    [InlineData("run -- dotnet app.dll -- x", "dotnet app.dll -- x", 5, 60_000)]
    [InlineData("run -- --no-such-program", "--no-such-program", 5, 60_000)]
    [InlineData("run -- -- x", "-- x", 5, 60_000)]
    [InlineData("run [x] @file status", "[x] @file status", 5, 60_000)]
    [InlineData("run --max-restarts 2 --restart-window 10s dotnet app.dll --max-restarts 9", "dotnet app.dll --max-restarts 9", 2, 10_000)]
    [InlineData("run --restart-window 1500ms --max-restarts 0 -- dotnet app.dll", "dotnet app.dll", 0, 1_500)]
    [InlineData("run --max-restarts=3 --restart-window=2m dotnet app.dll --help", "dotnet app.dll --help", 3, 120_000)]
    [InlineData("run --max-restarts:1000 --restart-window:00:01:00 -- dotnet", "dotnet", 1000, 60_000)]
    public async Task InvokeAsync_Run_PassesCommandAndArgumentsOnAsTheyAre(string line, string command, int maxRestarts, int windowMilliseconds)
    {
        Assert.Equal(7, await InvokeAsync(line.Split(' '), verbExitCode: 7));

        var call = Assert.Single(_calls);
        Assert.Equal("run", call.Verb);
        Assert.Equal(command.Split(' '), call.Command);
        Assert.Equal(new RestartPolicy(maxRestarts, TimeSpan.FromMilliseconds(windowMilliseconds)), call.Policy);
        Assert.Equal("", _stdout.ToString() + _stderr.ToString());
    }

    [Fact]
    public async Task InvokeAsync_RunWithEmptyAndSpacedArguments_PassesThemOnUnchanged()
    {
        Assert.Equal(0, await InvokeAsync(["run", "sh", "-c", "echo \"$1\"", "", "a b", " -x"]));

        string[] expected = ["sh", "-c", "echo \"$1\"", "", "a b", " -x"];
        Assert.Equal(expected, Assert.Single(_calls).Command);
    }

    [Theory]
    [InlineData("frobnicate", "zerodowntime: Unrecognized command or argument 'frobnicate'.")]
    [InlineData("--bogus", "zerodowntime: Unrecognized command or argument '--bogus'.")]
    [InlineData("[x]", "zerodowntime: Unrecognized command or argument '[x]'.")]
    [InlineData("status", "zerodowntime: status: which app? Give --socket PATH (its ZeroDowntime:SocketPath) or --app ID")]
    [InlineData("status --json", "zerodowntime: status: which app? Give --socket PATH (its ZeroDowntime:SocketPath) or --app ID")]
    [InlineData("upgrade", "zerodowntime: upgrade: which app? Give --socket PATH (its ZeroDowntime:SocketPath) or --app ID")]
    [InlineData("rollback", "zerodowntime: rollback: which app? Give --socket PATH (its ZeroDowntime:SocketPath) or --app ID")]
    [InlineData("rollback --app y --socket /x", "zerodowntime: rollback: give --socket or --app, not both")]
    [InlineData("rollback --app WebApi --note", "zerodowntime: rollback: Required argument missing for option: '--note'.")]
    [InlineData("rollback --app WebApi --timeout 2h", "zerodowntime: rollback: --timeout '2h' is not a duration from 1 ms to 1 h (90, 90s, 1500ms, 2m, 00:01:30)")]
    [InlineData("rollback --app WebApi --wait-probation", "zerodowntime: rollback: Unrecognized command or argument '--wait-probation'.")]
    [InlineData("upgrade --app WebApi --note x", "zerodowntime: upgrade: Unrecognized command or argument '--note'.")]
    [InlineData("upgrade --app WebApi --wait-probation=yes", "zerodowntime: upgrade: Unrecognized command or argument 'yes'.")]
    [InlineData("status --app WebApi --wait-probation", "zerodowntime: status: Unrecognized command or argument '--wait-probation'.")]
    [InlineData("status --app WebApi --note x", "zerodowntime: status: Unrecognized command or argument '--note'.")]
    [InlineData("status --socket", "zerodowntime: status: Required argument missing for option: '--socket'.")]
    [InlineData("status --socket=", "zerodowntime: status: Required argument missing for option: '--socket'.")]
    [InlineData("status --socket /x --socket /y", "zerodowntime: status: Option '--socket' expects a single argument but 2 were provided.")]
    [InlineData("status --socket /x --app y", "zerodowntime: status: give --socket or --app, not both")]
    [InlineData("upgrade --app y --socket /x", "zerodowntime: upgrade: give --socket or --app, not both")]
    [InlineData("status --socket /x --json=true", "zerodowntime: status: Unrecognized command or argument 'true'.")]
    [InlineData("status --socket /x extra", "zerodowntime: status: Unrecognized command or argument 'extra'.")]
    [InlineData("status --app WebApi --timeout 5", "zerodowntime: status: Unrecognized command or argument '--timeout'.")]
    [InlineData("status --app WebApi --max-restarts 5", "zerodowntime: status: Unrecognized command or argument '--max-restarts'.")]
    [InlineData("upgrade --app WebApi --timeout", "zerodowntime: upgrade: Required argument missing for option: '--timeout'.")]
    [InlineData("upgrade --app WebApi --timeout 2h", "zerodowntime: upgrade: --timeout '2h' is not a duration from 1 ms to 1 h (90, 90s, 1500ms, 2m, 00:01:30)")]
    [InlineData("upgrade --app WebApi --timeout 0", "zerodowntime: upgrade: --timeout '0' is not a duration from 1 ms to 1 h (90, 90s, 1500ms, 2m, 00:01:30)")]
    [InlineData("upgrade --app WebApi --timeout 3601", "zerodowntime: upgrade: --timeout '3601' is not a duration from 1 ms to 1 h (90, 90s, 1500ms, 2m, 00:01:30)")]
    [InlineData("upgrade --app WebApi --timeout soon", "zerodowntime: upgrade: --timeout 'soon' is not a duration from 1 ms to 1 h (90, 90s, 1500ms, 2m, 00:01:30)")]
    [InlineData("upgrade --app WebApi --timeout 1,5s", "zerodowntime: upgrade: --timeout '1,5s' is not a duration from 1 ms to 1 h (90, 90s, 1500ms, 2m, 00:01:30)")]
    [InlineData("run", "zerodowntime: run: no COMMAND given (zerodowntime run -- dotnet MyApp.dll)")]
    [InlineData("run --", "zerodowntime: run: no COMMAND given (zerodowntime run -- dotnet MyApp.dll)")]
    [InlineData("run --max-restarts 2", "zerodowntime: run: no COMMAND given (zerodowntime run -- dotnet MyApp.dll)")]
    [InlineData("run --bogus", "zerodowntime: run: unknown option '--bogus' (put -- before a command that starts with '-')")]
    [InlineData("run --max-restarts -- true", "zerodowntime: run: Required argument missing for option: '--max-restarts'.")]
    [InlineData("run --restart-window --max-restarts 3 -- true", "zerodowntime: run: --restart-window '--max-restarts' is not a duration from 1 ms to 1 h (60, 60s, 1500ms, 2m, 00:01:00)")]
    [InlineData("run --max-restarts x -- true", "zerodowntime: run: --max-restarts 'x' is not a number from 0 to 1000")]
    [InlineData("run --max-restarts -1 -- true", "zerodowntime: run: --max-restarts '-1' is not a number from 0 to 1000")]
    [InlineData("run --max-restarts 1001 -- true", "zerodowntime: run: --max-restarts '1001' is not a number from 0 to 1000")]
    [InlineData("run --restart-window 2h -- true", "zerodowntime: run: --restart-window '2h' is not a duration from 1 ms to 1 h (60, 60s, 1500ms, 2m, 00:01:00)")]
    [InlineData("run --restart-window=0s true", "zerodowntime: run: --restart-window '0s' is not a duration from 1 ms to 1 h (60, 60s, 1500ms, 2m, 00:01:00)")]
    public async Task InvokeAsync_BadUsage_ExitsTwoWithTheReasonOnStderrAndRunsNothing(string line, string reason)
    {
        Assert.Equal(ExitCodes.Usage, await InvokeAsync(line.Split(' ')));

        Assert.Empty(_calls);
        Assert.Equal("", _stdout.ToString());
        var lines = _stderr.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Contains(reason, lines);
        Assert.Equal("Try 'zerodowntime --help'.", lines[^1]);
    }

    [Fact]
    public async Task InvokeAsync_EmptyString_IsAValueThatIsMissing()
    {
        Assert.Equal(ExitCodes.Usage, await InvokeAsync(["status", "--socket", ""]));
        Assert.Equal(ExitCodes.Usage, await InvokeAsync(["upgrade", "--app", ""]));

        Assert.Empty(_calls);
        Assert.Equal(
            "zerodowntime: status: --socket needs a value\nTry 'zerodowntime --help'.\nzerodowntime: upgrade: --app needs a value\nTry 'zerodowntime --help'.\n",
            _stderr.ToString().ReplaceLineEndings("\n"));
    }

    [Fact]
    public async Task InvokeAsync_NoVerb_PrintsTheUsageOnStderrAndExitsTwo()
    {
        Assert.Equal(ExitCodes.Usage, await InvokeAsync([]));

        Assert.Equal(Cli.Cli.Usage + Environment.NewLine, _stderr.ToString());
        Assert.Equal("", _stdout.ToString());
        Assert.Empty(_calls);
    }

    [Theory]
    [InlineData("--help")]
    [InlineData("-h")]
    [InlineData("-?")]
    [InlineData("help")]
    [InlineData("help status")]
    public async Task InvokeAsync_ToolHelp_PrintsTheWholeUsageWithExitCodes(string line)
    {
        Assert.Equal(0, await InvokeAsync(line.Split(' ')));

        Assert.Equal(Cli.Cli.Usage + Environment.NewLine, _stdout.ToString());
        Assert.Contains("Exit codes (status, upgrade, rollback):", _stdout.ToString(), StringComparison.Ordinal);
        Assert.Equal("", _stderr.ToString());
        Assert.Empty(_calls);
    }

    [Theory]
    [InlineData("status --help", "zerodowntime status [options]", new[] { "--socket <PATH>", "--app <ID>", "--json" })]
    [InlineData("status -h --socket /x", "zerodowntime status [options]", new[] { "--socket <PATH>", "--app <ID>", "--json" })]
    [InlineData("upgrade -?", "zerodowntime upgrade [options]", new[] { "--socket <PATH>", "--app <ID>", "--timeout <T>", "--json" })]
    [InlineData("upgrade --socket /x --timeout never --help", "zerodowntime upgrade [options]", new[] { "--timeout <T>", "--wait-probation" })]
    [InlineData("rollback --help", "zerodowntime rollback [options]", new[] { "--socket <PATH>", "--app <ID>", "--timeout <T>", "--note <TEXT>", "--json" })]
    [InlineData("run --help", "zerodowntime run [<COMMAND>...] [options]", new[] { "<COMMAND>", "--max-restarts <N>", "--restart-window <T>" })]
    [InlineData("run --max-restarts 2 -h", "zerodowntime run [<COMMAND>...] [options]", new[] { "--max-restarts <N>" })]
    public async Task InvokeAsync_VerbHelp_PrintsTheVerbsUsageAndOptions(string line, string usage, string[] options)
    {
        Assert.Equal(0, await InvokeAsync(line.Split(' ')));

        string help = _stdout.ToString();
        Assert.Contains("Usage:\n  " + usage + "\n", help.ReplaceLineEndings("\n"), StringComparison.Ordinal);
        Assert.All(options, option => Assert.Contains(option, help, StringComparison.Ordinal));
        Assert.DoesNotContain("ZeroDowntime.Cli", help, StringComparison.Ordinal);
        Assert.Equal("", _stderr.ToString());
        Assert.Empty(_calls);
    }

    [Fact]
    public async Task InvokeAsync_Version_PrintsMajorMinorPatch()
    {
        Assert.Equal(0, await InvokeAsync(["--version"]));

        Assert.Matches(@"^[0-9]+\.[0-9]+\.[0-9]+\r?\n$", _stdout.ToString());
        Assert.Empty(_calls);
    }

    [Theory]
    [InlineData("zerodowntime st", "status")]
    [InlineData("zerodowntime up", "upgrade")]
    [InlineData("zerodowntime ", "rollback run status upgrade")]
    [InlineData("zerodowntime ro", "rollback")]
    [InlineData("zerodowntime rollback --", "--app --help --json --note --socket --timeout")]
    [InlineData("zerodowntime upgrade --w", "--wait-probation")]
    [InlineData("zerodowntime status --", "--app --help --json --socket")]
    [InlineData("zerodowntime upgrade --app WebApi --t", "--timeout")]
    [InlineData("zerodowntime run --", "--help --max-restarts --restart-window")]
    public async Task InvokeAsync_SuggestDirective_CompletesVerbsAndOptions(string typed, string expected)
    {
        // What dotnet-suggest runs for a shell: the line typed so far and the cursor's position in it.
        Assert.Equal(0, await InvokeAsync([$"[suggest:{typed.Length}]", typed]));

        var suggestions = _stdout.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.All(expected.Split(' '), word => Assert.Contains(word, suggestions));
        Assert.DoesNotContain("help", suggestions); // the hidden "help" verb is not offered
        Assert.Empty(_calls);
    }

    public void Dispose()
    {
        _stdout.Dispose();
        _stderr.Dispose();
    }

    private Task<int> InvokeAsync(string[] args, int verbExitCode = 0) =>
        CommandLine.InvokeAsync(args, _stdout, _stderr, new CommandLineVerbs(
            options =>
            {
                _calls.Add(("status", options, null, null));
                return Task.FromResult(verbExitCode);
            },
            options =>
            {
                _calls.Add(("upgrade", options, null, null));
                return Task.FromResult(verbExitCode);
            },
            options =>
            {
                _calls.Add(("rollback", options, null, null));
                return Task.FromResult(verbExitCode);
            },
            (command, policy) =>
            {
                _calls.Add(("run", null, command, policy));
                return verbExitCode;
            }));
}
