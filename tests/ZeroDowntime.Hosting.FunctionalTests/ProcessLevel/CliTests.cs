using System.Globalization;
using System.Net.Sockets;
using System.Text.Json;
using Xunit.Abstractions;
using ZeroDowntime.Hosting.FunctionalTests.Infrastructure;
using ZeroDowntime.Hosting.Protocol;
using ZeroDowntime.Hosting.Tests.Infrastructure;
using static ZeroDowntime.Hosting.FunctionalTests.Infrastructure.HandoffSteps;

namespace ZeroDowntime.Hosting.FunctionalTests;

/// <summary>
/// The <c>zerodowntime</c> tool against real processes of the sample, deployed as release folders behind a
/// <c>current</c> symlink, under load. The successors are started by the running process (not by the test): their
/// output arrives on the first process's pipes, their pids come from the tool, their exits are seen through /proc.
/// </summary>
public sealed class CliTests(ITestOutputHelper output)
{
    private static readonly TimeSpan UpgradeWait = TimeSpan.FromSeconds(90);

    /// <summary>
    /// Each release's appsettings.json sets its own <c>Sample:StartupDelayMs</c> (11, 12, 13 ms), an existing key of
    /// the sample whose effect is one line the successor logs itself ("Warming up for 12 ms"), before its Ready, so
    /// the line proves which appsettings.json the new process read; the first release keeps 0 and logs no such line.
    /// The new process's /proc/PID/cwd must be the new release's folder, and /pid must answer its pid.
    /// </summary>
    [Fact]
    public async Task Upgrade_AfterCurrentSymlinkSwitched_NewProcessServesTheNewRelease_ExitsZero()
    {
        using var scope = new TestScope();
        var releases = new Releases(scope);
        string first = releases.Create("1");
        releases.Switch(first);
        var config = scope.Config() with { SampleDirectory = releases.Current, RelativeEntryPoint = true };
        await using var v1 = await StartFirstAsync("v1", config, output);
        var pids = new List<int> { v1.Pid };
        try
        {
            await using var load = HttpLoad.Start(scope.BaseUri, workers: 8, newConnectionPerRequest: true);
            await load.WaitForMoreSuccessesAsync(200);
            var wallTimes = new List<double>();
            for (int release = 2; release <= 4; release++)
            {
                int delay = 9 + release;
                string folder = releases.Create(release.ToString(CultureInfo.InvariantCulture), json => json["Sample"]!["StartupDelayMs"] = delay);
                releases.Switch(folder);

                int previous = pids[^1];
                var upgrade = await ZeroDowntimeTool.RunAsync(output, UpgradeWait, "upgrade", "--socket", scope.SocketPath, "--json");
                Assert.True(upgrade.ExitCode == 0, $"upgrade to release {release} exited {upgrade.ExitCode}: {upgrade.Stdout}{upgrade.Stderr}");
                var result = upgrade.Json;
                int successor = result.GetProperty("successorPid").GetInt32();
                pids.Add(successor);
                wallTimes.Add(upgrade.Elapsed.TotalMilliseconds);
                Assert.Equal("committed", result.GetProperty("outcome").GetString());
                Assert.Equal(previous, result.GetProperty("previousPid").GetInt32());

                await v1.WaitForOutputLineAsync(l => l.Contains($"Warming up for {delay} ms", StringComparison.Ordinal), $"release {release}'s warm-up line");
                Assert.Equal(Path.GetFullPath(folder), ProcessWatch.WorkingDirectory(successor));
                using (var client = new HttpClient())
                {
                    Assert.Equal(successor.ToString(CultureInfo.InvariantCulture), await client.GetStringAsync(new Uri(scope.BaseUri, "/pid")));
                }

                var status = (await ZeroDowntimeTool.RunAsync(output, TimeSpan.FromSeconds(30), "status", "--socket", scope.SocketPath, "--json")).Json;
                Assert.Equal(successor, status.GetProperty("pid").GetInt32());
                Assert.Equal(release, status.GetProperty("generation").GetInt64());

                // The old process drains and exits 0 (v1 is this test's child; the later ones are not).
                if (previous == v1.Pid)
                {
                    Assert.Equal(0, await v1.WaitForExitAsync(TimeSpan.FromSeconds(60)));
                }
                else
                {
                    using var drained = new AdoptedProcess(previous);
                    await drained.WaitForExitAsync(TimeSpan.FromSeconds(60));
                }

                await load.WaitForMoreSuccessesAsync(200);
            }

            await load.StopAsync();
            output.WriteLine($"load: {load}");
            output.WriteLine($"zerodowntime upgrade wall time (command to exit), 3 runs: {string.Join(", ", wallTimes.Select(t => t.ToString("0", CultureInfo.InvariantCulture)))} ms");
            load.AssertNoFailures();
            Assert.Equal(4, load.ResponsesByBody.Count);
        }
        finally
        {
            await StopAsync(pids[1..]);
        }
    }

    [Fact]
    public async Task Upgrade_ToReleaseThatFailsAtStart_ExitsOneNamingTheFailure_OldServes_ThenGoodReleaseExitsZero()
    {
        using var scope = new TestScope();
        var releases = new Releases(scope);
        string first = releases.Create("1");
        string broken = releases.Create("2-broken", json => json["Sample"]!["FailStartup"] = true);
        string good = releases.Create("3", json => json["Sample"]!["StartupDelayMs"] = 21);
        releases.Switch(first);
        var config = scope.Config() with { SampleDirectory = releases.Current, RelativeEntryPoint = true };
        await using var v1 = await StartFirstAsync("v1", config, output);
        int successor = 0;
        try
        {
            await using var load = HttpLoad.Start(scope.BaseUri, workers: 8, newConnectionPerRequest: true);
            await load.WaitForMoreSuccessesAsync(200);

            releases.Switch(broken);
            var failed = await ZeroDowntimeTool.RunAsync(output, UpgradeWait, "upgrade", "--socket", scope.SocketPath);
            Assert.Equal(1, failed.ExitCode);
            Assert.Contains("Upgrade failed", failed.Stderr, StringComparison.Ordinal);
            Assert.Contains("FailStartup", failed.Stderr, StringComparison.Ordinal);
            Assert.Contains($"pid {v1.Pid} still serves", failed.Stderr, StringComparison.Ordinal);
            Assert.False(v1.HasExited);
            using (var client = new HttpClient())
            {
                Assert.Equal(v1.Pid.ToString(CultureInfo.InvariantCulture), await client.GetStringAsync(new Uri(scope.BaseUri, "/pid")));
            }

            var status = (await ZeroDowntimeTool.RunAsync(output, TimeSpan.FromSeconds(30), "status", "--socket", scope.SocketPath, "--json")).Json;
            Assert.Equal(v1.Pid, status.GetProperty("pid").GetInt32());
            Assert.Equal("serving", status.GetProperty("state").GetString());
            Assert.Equal(JsonValueKind.Null, status.GetProperty("successorPid").ValueKind);
            await load.WaitForMoreSuccessesAsync(200);

            releases.Switch(good);
            var upgrade = await ZeroDowntimeTool.RunAsync(output, UpgradeWait, "upgrade", "--socket", scope.SocketPath, "--json");
            Assert.True(upgrade.ExitCode == 0, upgrade.Stdout + upgrade.Stderr);
            successor = upgrade.Json.GetProperty("successorPid").GetInt32();
            await v1.WaitForOutputLineAsync(l => l.Contains("Warming up for 21 ms", StringComparison.Ordinal), "the good release's warm-up line");
            Assert.Equal(0, await v1.WaitForExitAsync(TimeSpan.FromSeconds(60)));
            await load.WaitForMoreSuccessesAsync(200);
            await load.StopAsync();
            output.WriteLine($"load: {load}");
            load.AssertNoFailures();
        }
        finally
        {
            await StopAsync([successor]);
        }
    }

    [Fact]
    public async Task Status_BeforeDuringAndAfterASlowHandoff_ReportsEachState()
    {
        using var scope = new TestScope();
        var releases = new Releases(scope);
        releases.Switch(releases.Create("1"));
        var config = scope.Config() with { SampleDirectory = releases.Current, RelativeEntryPoint = true };
        await using var v1 = await StartFirstAsync("v1", config, output);
        int successor = 0;
        try
        {
            await using var load = HttpLoad.Start(scope.BaseUri, workers: 4, newConnectionPerRequest: true);
            await load.WaitForMoreSuccessesAsync(100);

            var before = await StatusAsync(scope);
            Assert.Equal(v1.Pid, before.GetProperty("pid").GetInt32());
            Assert.Equal("serving", before.GetProperty("state").GetString());
            Assert.Equal(1, before.GetProperty("generation").GetInt64());
            Assert.Equal("WebApi", before.GetProperty("applicationId").GetString());
            var listener = Assert.Single(before.GetProperty("listeners").EnumerateArray());
            Assert.Equal($"tcp:127.0.0.1:{scope.Port}", listener.GetProperty("key").GetString());
            Assert.Equal($"127.0.0.1:{scope.Port}", listener.GetProperty("boundEndPoint").GetString());
            Assert.Equal(JsonValueKind.Null, before.GetProperty("drainingPredecessorPid").ValueKind);
            Assert.Equal(JsonValueKind.Null, before.GetProperty("successorPid").ValueKind);

            // A slow release: 4 s of warm-up after the sockets were received, while v1 alone accepts.
            releases.Switch(releases.Create("2", json => json["Sample"]!["StartupDelayMs"] = 4000));
            var upgrade = ZeroDowntimeTool.RunAsync(output, UpgradeWait, "upgrade", "--socket", scope.SocketPath, "--json");
            await v1.WaitForOutputLineAsync(l => l.Contains("Warming up for 4000 ms", StringComparison.Ordinal), "the slow release's warm-up line");
            var during = await StatusAsync(scope);
            Assert.Equal(v1.Pid, during.GetProperty("pid").GetInt32());
            Assert.Equal("handing-over", during.GetProperty("state").GetString());
            successor = during.GetProperty("successorPid").GetInt32();
            Assert.True(ProcessWatch.IsAlive(successor), $"successor pid {successor} should be warming up");

            // A long request that v1 accepts now (it is the only acceptor while the successor warms up) keeps v1
            // draining after the commit.
            using var slow = new HttpClient { Timeout = TimeSpan.FromSeconds(60) };
            var held = slow.GetAsync(new Uri(scope.BaseUri, "/delay/8000"));

            var result = await upgrade;
            Assert.True(result.ExitCode == 0, result.Stdout + result.Stderr);
            Assert.Equal(successor, result.Json.GetProperty("successorPid").GetInt32());
            Assert.True(result.Json.GetProperty("readyMs").GetInt64() >= 4000, "ready after the 4 s warm-up");

            var after = await StatusAsync(scope);
            Assert.Equal(successor, after.GetProperty("pid").GetInt32());
            Assert.Equal("serving", after.GetProperty("state").GetString());
            Assert.Equal(2, after.GetProperty("generation").GetInt64());
            Assert.Equal(before.GetProperty("firstStart").GetString(), after.GetProperty("firstStart").GetString());
            Assert.Single(after.GetProperty("listeners").EnumerateArray());
            if (!held.IsCompleted)
            {
                Assert.Equal(v1.Pid, after.GetProperty("drainingPredecessorPid").GetInt32());
            }

            var response = await held;
            Assert.Contains($"pid {v1.Pid:D7}", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
            Assert.Equal(0, await v1.WaitForExitAsync(TimeSpan.FromSeconds(60)));
            var drained = await StatusAsync(scope);
            Assert.Equal(JsonValueKind.Null, drained.GetProperty("drainingPredecessorPid").ValueKind);

            await load.WaitForMoreSuccessesAsync(100);
            await load.StopAsync();
            output.WriteLine($"load: {load}");
            load.AssertNoFailures();
        }
        finally
        {
            await StopAsync([successor]);
        }
    }

    /// <summary>
    /// The other ways an upgrade ends: the tool's own --timeout (exit 5, the upgrade goes on), a second upgrade while
    /// one runs (exit 4, refused), and a successor slower than HandoffTimeout (exit 1, abandoned). The old process
    /// serves throughout; 0 failed requests.
    /// </summary>
    [Fact]
    public async Task Upgrade_TimedOutRefusedOrAbandoned_ExitsFiveFourOne_OldServes()
    {
        using var scope = new TestScope();
        var releases = new Releases(scope);
        releases.Switch(releases.Create("1"));
        var config = (scope.Config() with { SampleDirectory = releases.Current, RelativeEntryPoint = true }).With("ZeroDowntime__HandoffTimeout", "00:00:06");
        await using var v1 = await StartFirstAsync("v1", config, output);
        var successors = new List<int>();
        try
        {
            await using var load = HttpLoad.Start(scope.BaseUri, workers: 4, newConnectionPerRequest: true);
            await load.WaitForMoreSuccessesAsync(100);

            // Slower than the HandoffTimeout of 6 s: v1 abandons it. (The successor must still greet within those 6 s of its
            // launch, JIT start-up included: 3 s was too little on a loaded machine, CI-like load average 25.)
            releases.Switch(releases.Create("2-slow", json => json["Sample"]!["StartupDelayMs"] = 12000));
            var first = ZeroDowntimeTool.RunAsync(output, UpgradeWait, "upgrade", "--socket", scope.SocketPath, "--json");
            await v1.WaitForOutputLineAsync(l => l.Contains("Warming up for 12000 ms", StringComparison.Ordinal), "the slow release's warm-up line");
            var during = await StatusAsync(scope);
            successors.Add(during.GetProperty("successorPid").GetInt32());

            var refused = await ZeroDowntimeTool.RunAsync(output, UpgradeWait, "upgrade", "--socket", scope.SocketPath);
            Assert.Equal(4, refused.ExitCode);
            Assert.Contains("refused", refused.Stderr, StringComparison.Ordinal);

            var abandoned = await first;
            Assert.Equal(1, abandoned.ExitCode);
            Assert.Equal("abandoned", abandoned.Json.GetProperty("outcome").GetString());
            output.WriteLine($"abandoned: {abandoned.Json.GetProperty("reason").GetString()}");
            Assert.Equal(v1.Pid, (await StatusAsync(scope)).GetProperty("pid").GetInt32());

            // The tool's own deadline: exit 5 at 1 s; the upgrade itself goes on and is abandoned by v1 at 6 s.
            using (var abandonedSuccessor = new AdoptedProcess(successors[0]))
            {
                await abandonedSuccessor.WaitForExitAsync(TimeSpan.FromSeconds(30));
            }

            var timedOut = await ZeroDowntimeTool.RunAsync(output, UpgradeWait, "upgrade", "--socket", scope.SocketPath, "--timeout", "1s");
            Assert.Equal(5, timedOut.ExitCode);
            Assert.Contains("may still be running", timedOut.Stderr, StringComparison.Ordinal);
            await v1.WaitForOutputEntryAsync(l => l.Is(Events.UpgradeFailed) && !l.Contains($"pid {successors[0]} ", StringComparison.Ordinal), "the second slow successor's end (event 85)");
            var after = await StatusAsync(scope);
            Assert.Equal(v1.Pid, after.GetProperty("pid").GetInt32());
            Assert.Equal(1, after.GetProperty("generation").GetInt64());
            Assert.False(v1.HasExited);

            await load.WaitForMoreSuccessesAsync(100);
            await load.StopAsync();
            output.WriteLine($"load: {load}");
            load.AssertNoFailures();
            Assert.Single(load.ResponsesByBody);
        }
        finally
        {
            await StopAsync(successors);
        }
    }

    /// <summary>
    /// Another uid gets nothing: the socket is opened up (0666, directory 0755) so that uid 65534 can connect at
    /// all. The tool run as that user refuses to ask a process of another uid (exit 6); a raw StatusRequest or
    /// UpgradeRequest of that user is refused by the server before it reads a byte. Garbage is refused as before.
    /// </summary>
    [Fact]
    public async Task StatusAndUpgrade_FromAnotherUidOrGarbage_GetNothing_ServerKeepsServing()
    {
        OtherUser.RequireRoot();
        using var scope = new TestScope();
        var config = scope.Config();
        await using var v1 = await StartFirstAsync("v1", config, output);
        File.SetUnixFileMode(scope.Directory, (UnixFileMode)0b111_101_101);
        File.SetUnixFileMode(scope.SocketPath, (UnixFileMode)0b110_110_110);

        var status = await ZeroDowntimeTool.RunAsOtherUserAsync(output, TimeSpan.FromSeconds(30), "status", "--socket", scope.SocketPath, "--json");
        Assert.Equal(6, status.ExitCode);
        Assert.Contains("runs as uid 0", status.Stderr, StringComparison.Ordinal);
        Assert.False(status.Json.GetProperty("serving").GetBoolean());
        Assert.False(status.Json.TryGetProperty("pid", out _));
        var upgrade = await ZeroDowntimeTool.RunAsOtherUserAsync(output, TimeSpan.FromSeconds(30), "upgrade", "--socket", scope.SocketPath);
        Assert.Equal(6, upgrade.ExitCode);

        // The server's side: the same requests, sent raw by uid 65534, get no byte back.
        foreach (var request in new HandoffMessage[] { new StatusRequestMessage(2), new UpgradeRequestMessage(2) })
        {
            string frame = Convert.ToHexString(HandoffProtocol.Encode(request));
            var (_, answer) = await OtherUser.RunPythonAsync(RequestFromNobody, scope.SocketPath, frame);
            output.WriteLine($"{request.Type} from uid {OtherUser.Uid}: {answer.Trim()}");
            Assert.Equal("answer-bytes 0", answer.Trim());
        }

        await v1.WaitForEntryAsync(l => l.Is(Events.HandoffRefused) && l.Contains($"uid {OtherUser.Uid}", StringComparison.Ordinal), "refusal of uid 65534");

        // Garbage, an absurd length and a control frame with a bad payload: refused, one line each, nothing else.
        var inputs = new[]
        {
            "GET / HTTP/1.1\r\nHost: x\r\n\r\n"u8.ToArray(),
            [(byte)'Z', (byte)'D', (byte)MessageType.StatusRequest, 0xFF, 0xFF, 0xFF, 0xFF],
            [(byte)'Z', (byte)'D', (byte)MessageType.UpgradeRequest, 0, 0, 0, 1, 7],
        };
        foreach (byte[] bytes in inputs)
        {
            using var client = await RawHandoffClient.ConnectAsync(scope.SocketPath);
            await client.SendAsync(bytes);
        }

        await Until.TrueAsync(() => v1.CountEvent(Events.HandoffProtocolError) >= inputs.Length, $"{inputs.Length} protocol errors (event 49)");
        var after = await StatusAsync(scope);
        Assert.Equal(v1.Pid, after.GetProperty("pid").GetInt32());
        Assert.Equal("serving", after.GetProperty("state").GetString());
        Assert.Equal(1, after.GetProperty("generation").GetInt64());
        Assert.Equal(JsonValueKind.Null, after.GetProperty("successorPid").ValueKind);
        Assert.False(v1.HasExited);
    }

    /// <summary>The exit codes that need no server: usage, help, no socket, a stale socket, a server that does not answer.</summary>
    [Fact]
    public async Task Tool_WithBadUsageOrWithoutAServer_ExitsWithTheDocumentedCodes()
    {
        using var scope = new TestScope();
        var timeout = TimeSpan.FromSeconds(30);
        var help = await ZeroDowntimeTool.RunAsync(output, timeout, "--help");
        Assert.Equal(0, help.ExitCode);
        Assert.Contains("6  the socket is served by another user's process", help.Stdout, StringComparison.Ordinal);
        Assert.Equal(2, (await ZeroDowntimeTool.RunAsync(output, timeout)).ExitCode);
        Assert.Equal(2, (await ZeroDowntimeTool.RunAsync(output, timeout, "frobnicate")).ExitCode);
        Assert.Equal(2, (await ZeroDowntimeTool.RunAsync(output, timeout, "status")).ExitCode);
        Assert.Equal(2, (await ZeroDowntimeTool.RunAsync(output, timeout, "status", "--socket")).ExitCode);
        Assert.Equal(2, (await ZeroDowntimeTool.RunAsync(output, timeout, "status", "--socket", "/x", "--app", "y")).ExitCode);
        Assert.Equal(2, (await ZeroDowntimeTool.RunAsync(output, timeout, "upgrade", "--app", "WebApi", "--timeout", "soon")).ExitCode);
        Assert.Equal(2, (await ZeroDowntimeTool.RunAsync(output, timeout, "status", "--app", "WebApi", "--timeout", "5")).ExitCode);
        Assert.Equal(2, (await ZeroDowntimeTool.RunAsync(output, timeout, "run")).ExitCode);

        string missing = Path.Combine(scope.Directory, "missing.sock");
        var none = await ZeroDowntimeTool.RunAsync(output, timeout, "status", "--socket", missing, "--json");
        Assert.Equal(3, none.ExitCode);
        Assert.Equal("no-server", none.Json.GetProperty("error").GetString());
        Assert.Equal(3, (await ZeroDowntimeTool.RunAsync(output, timeout, "upgrade", "--socket", missing)).ExitCode);

        // --app: the library's default path under $XDG_RUNTIME_DIR (or /tmp/zerodowntime-UID): named in the message.
        var byApp = await ZeroDowntimeTool.RunAsync(output, timeout, "status", "--app", "NoSuchApp-" + Guid.NewGuid().ToString("N")[..6]);
        Assert.Equal(3, byApp.ExitCode);
        Assert.Contains("zerodowntime", byApp.Stderr, StringComparison.Ordinal);

        string stale = Path.Combine(scope.Directory, "stale.sock");
        using (var dead = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
        {
            dead.Bind(new UnixDomainSocketEndPoint(stale));
        }

        var staleResult = await ZeroDowntimeTool.RunAsync(output, timeout, "status", "--socket", stale);
        Assert.Equal(3, staleResult.ExitCode);
        Assert.Contains("stale", staleResult.Stderr, StringComparison.Ordinal);

        // A server that accepts and closes (what a build of protocol v1 does with a control request).
        string mute = Path.Combine(scope.Directory, "mute.sock");
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(mute));
        listener.Listen(4);
        var closer = Task.Run(async () =>
        {
            for (int i = 0; i < 2; i++)
            {
                using var accepted = await listener.AcceptAsync();
                var buffer = new byte[64];
                _ = await accepted.ReceiveAsync(buffer);
            }
        });
        Assert.Equal(7, (await ZeroDowntimeTool.RunAsync(output, timeout, "status", "--socket", mute)).ExitCode);
        Assert.Equal(7, (await ZeroDowntimeTool.RunAsync(output, timeout, "upgrade", "--socket", mute)).ExitCode);
        await closer.WaitAsync(timeout);
    }

    /// <summary>
    /// The command line as System.CommandLine parses it, against the contract of the hand-written parser it replaced:
    /// --help per verb (exit 0, on stdout), --help and help for the tool print the whole usage with the exit codes, a
    /// parse error is exit 2 with "zerodowntime: VERB: why" and the hint (never System.CommandLine's exit 1, which means
    /// "upgrade failed" here), and run passes its COMMAND on as is: options after it (--help, -c), empty arguments and
    /// @file are the app's.
    /// </summary>
    [Fact]
    public async Task Tool_HelpPerVerbAndParseErrors_ExitZeroOrTwo_RunPassesItsCommandOnAsIs()
    {
        var timeout = TimeSpan.FromSeconds(30);
        foreach (var (verb, line, option) in new[]
        {
            ("status", "zerodowntime status [options]", "--socket <PATH>"),
            ("upgrade", "zerodowntime upgrade [options]", "--timeout <T>"),
            ("run", "zerodowntime run [<COMMAND>...] [options]", "<COMMAND>"),
        })
        {
            var help = await ZeroDowntimeTool.RunAsync(output, timeout, verb, "--help");
            Assert.Equal(0, help.ExitCode);
            Assert.Contains(line, help.Stdout, StringComparison.Ordinal);
            Assert.Contains(option, help.Stdout, StringComparison.Ordinal);
            Assert.Equal("", help.Stderr);
            Assert.Equal(help.Stdout, (await ZeroDowntimeTool.RunAsync(output, timeout, verb, "-h")).Stdout);
        }

        // The whole usage, as before: the same text from --help, -h and help, and on stderr (exit 2) without a verb.
        var usage = await ZeroDowntimeTool.RunAsync(output, timeout, "--help");
        Assert.StartsWith("zerodowntime: status and upgrades of a ZeroDowntime.Hosting app", usage.Stdout, StringComparison.Ordinal);
        Assert.Contains("  zerodowntime run [--max-restarts N] [--restart-window T] [--] COMMAND [ARGS...]\n", usage.Stdout, StringComparison.Ordinal);
        Assert.Equal(usage.Stdout, (await ZeroDowntimeTool.RunAsync(output, timeout, "-h")).Stdout);
        Assert.Equal(usage.Stdout, (await ZeroDowntimeTool.RunAsync(output, timeout, "help")).Stdout);
        var none = await ZeroDowntimeTool.RunAsync(output, timeout);
        Assert.Equal((2, "", usage.Stdout), (none.ExitCode, none.Stdout, none.Stderr));
        var version = await ZeroDowntimeTool.RunAsync(output, timeout, "--version");
        Assert.Equal(0, version.ExitCode);
        Assert.Matches(@"^[0-9]+\.[0-9]+\.[0-9]+\n$", version.Stdout);

        // Parse errors: exit 2, each reason on a line of its own naming the verb, then the hint; nothing on stdout.
        foreach (var (arguments, reason) in new (string[], string)[]
        {
            (["frobnicate"], "zerodowntime: Unrecognized command or argument 'frobnicate'."),
            (["status", "--socket="], "zerodowntime: status: Required argument missing for option: '--socket'."),
            (["status", "--socket", ""], "zerodowntime: status: --socket needs a value"),
            (["status", "--socket", "/x", "--socket", "/y"], "zerodowntime: status: Option '--socket' expects a single argument but 2 were provided."),
            (["status", "--socket", "/x", "--app", "y"], "zerodowntime: status: give --socket or --app, not both"),
            (["status", "--json"], "zerodowntime: status: which app? Give --socket PATH (its ZeroDowntime:SocketPath) or --app ID"),
            (["status", "--socket", "/x", "--json=true"], "zerodowntime: status: Unrecognized command or argument 'true'."),
            (["status", "--app", "WebApi", "--timeout", "5"], "zerodowntime: status: Unrecognized command or argument '--timeout'."),
            (["upgrade", "--app", "WebApi", "--timeout", "2h"], "zerodowntime: upgrade: --timeout '2h' is not a duration from 1 ms to 1 h (90, 90s, 1500ms, 2m, 00:01:30)"),
            (["run"], "zerodowntime: run: no COMMAND given (zerodowntime run -- dotnet MyApp.dll)"),
            (["run", "--bogus"], "zerodowntime: run: unknown option '--bogus' (put -- before a command that starts with '-')"),
            (["run", "--max-restarts", "x", "--", "true"], "zerodowntime: run: --max-restarts 'x' is not a number from 0 to 1000"),
            (["run", "--restart-window", "2h", "--", "true"], "zerodowntime: run: --restart-window '2h' is not a duration from 1 ms to 1 h (60, 60s, 1500ms, 2m, 00:01:00)"),
        })
        {
            var error = await ZeroDowntimeTool.RunAsync(output, timeout, arguments);
            Assert.Equal(2, error.ExitCode);
            Assert.Equal("", error.Stdout);
            var lines = error.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.Contains(reason, lines);
            Assert.Equal("Try 'zerodowntime --help'.", lines[^1]);
        }

        // run: the command and everything after it are the app's, whether or not -- comes first.
        var verbatim = await ZeroDowntimeTool.RunAsync(output, timeout, "run", "sh", "-c", "echo \"[$#] [$1] [$2] [$3]\"; exit 4", "sh", "--help", "", "@file");
        Assert.Equal(4, verbatim.ExitCode);
        Assert.Equal("[3] [--help] [] [@file]\n", verbatim.Stdout);
        var afterDoubleDash = await ZeroDowntimeTool.RunAsync(output, timeout, "run", "--", "sh", "-c", "exit 5", "-h");
        Assert.Equal(5, afterDoubleDash.ExitCode);
        var afterRunOptions = await ZeroDowntimeTool.RunAsync(output, timeout, "run", "--max-restarts", "2", "--restart-window", "10s", "sh", "-c", "exit 6", "sh", "--help");
        Assert.Equal(6, afterRunOptions.ExitCode);
        var dashCommand = await ZeroDowntimeTool.RunAsync(output, timeout, "run", "--", "--no-such-program");
        Assert.Equal(127, dashCommand.ExitCode);
        Assert.Contains("cannot start --no-such-program", dashCommand.Stderr, StringComparison.Ordinal);
    }

    private const string RequestFromNobody = """
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print("connect-failed", e.errno); sys.exit(0)
try:
    s.sendall(bytes.fromhex(sys.argv[2]))
except OSError:
    pass
s.settimeout(20)
total = 0
try:
    while True:
        data = s.recv(4096)
        if not data:
            break
        total += len(data)
except OSError:
    pass
print("answer-bytes", total)
""";

    private async Task<JsonElement> StatusAsync(TestScope scope)
    {
        var status = await ZeroDowntimeTool.RunAsync(output, TimeSpan.FromSeconds(30), "status", "--socket", scope.SocketPath, "--json");
        Assert.True(status.ExitCode == 0, status.Stdout + status.Stderr);
        return status.Json;
    }

    /// <summary>Stops processes the test did not start: SIGTERM, a bounded wait, SIGKILL on dispose.</summary>
    private async Task StopAsync(IEnumerable<int> pids)
    {
        foreach (int pid in pids)
        {
            await AdoptedProcess.StopIfAliveAsync(pid, output);
        }
    }
}
