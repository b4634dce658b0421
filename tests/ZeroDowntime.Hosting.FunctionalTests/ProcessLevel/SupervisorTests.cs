using System.Collections.Concurrent;
using System.Globalization;
using System.Net.Sockets;
using System.Text;
using Xunit.Abstractions;
using ZeroDowntime.Hosting.FunctionalTests.Infrastructure;
using ZeroDowntime.Hosting.Tests.Infrastructure;

namespace ZeroDowntime.Hosting.FunctionalTests;

/// <summary>
/// <c>zerodowntime run</c>, the supervisor with a stable pid: as PID 1 of a PID namespace (what a container runtime
/// gives it, made here with unshare(1) without any container runtime), and under a NOTIFY_SOCKET of its own.
/// </summary>
public sealed class SupervisorTests(ITestOutputHelper output)
{
    /// <summary>
    /// unshare --pid --fork --mount-proc makes the supervisor PID 1 of a new PID namespace. Three SIGHUPs to it are
    /// three upgrades (forwarded to the main process, whose upgrade signal is SIGHUP); each time it follows MAINPID=
    /// to the successor and reaps the old process. Then SIGTERM: the app drains its last request, the supervisor
    /// exits 0, and no process of the namespace was ever left a zombie.
    /// </summary>
    [Fact]
    public async Task Run_AsPid1OfAPidNamespace_ThreeSighupUpgradesThenSigterm_ExitsZeroNoZombieNoFailedRequest()
    {
        OtherUser.RequireRoot();
        LoadTool.Require("unshare");
        using var scope = new TestScope();
        var config = scope.Config() with
        {
            Launcher = ["unshare", "--pid", "--fork", "--mount-proc", ZeroDowntimeTool.DotnetPath(), ZeroDowntimeTool.DllPath, "run", "--"],
        };
        await using var run = SampleApp.Start("run", config, output);
        await run.WaitForEventAsync(Events.ServingHandoffSocket);
        await Until.TrueAsync(() => ProcessWatch.ChildrenOf(run.Pid).Count == 1, "unshare's child, the supervisor");
        int supervisor = ProcessWatch.ChildrenOf(run.Pid)[0].Pid;
        Assert.Equal(1, ProcessWatch.InnerPid(supervisor));

        await using var load = HttpLoad.Start(scope.BaseUri, workers: 8, newConnectionPerRequest: true);
        await load.WaitForMoreSuccessesAsync(200);
        for (int upgrade = 1; upgrade <= 3; upgrade++)
        {
            int main = await PidAsync(scope);
            Posix.Kill(supervisor, Posix.SIGHUP);
            string followed = await WaitForSupervisorLineAsync(run, "main pid is now ", upgrade);
            output.WriteLine($"upgrade {upgrade}: {followed}");
            Assert.Contains($"(was {main})", followed, StringComparison.Ordinal);
            // "reaped pid 13: it exited with code 0", or "main pid 13 exited with code 0" when the old process exited
            // before its successor's MAINPID= datagram arrived (both orders happen; the supervisor follows either way).
            var reaped = new System.Text.RegularExpressions.Regex($@"zerodowntime run\[1\]: (reaped pid {main}: it|main pid {main}) exited with code 0$");
            await run.WaitForOutputLineAsync(l => reaped.IsMatch(l), $"the supervisor reaping pid {main}", TimeSpan.FromSeconds(60));
            await load.WaitForMoreSuccessesAsync(200);
            Assert.NotEqual(main, await PidAsync(scope));
        }

        // Only the current main process is left below PID 1, and nothing in the namespace is a zombie.
        var children = ProcessWatch.ChildrenOf(supervisor);
        output.WriteLine($"children of the supervisor: {string.Join(", ", children.Select(c => $"{c.Pid}/{ProcessWatch.InnerPid(c.Pid)} {c.State}"))}");
        var child = Assert.Single(children);
        Assert.Equal(await PidAsync(scope), ProcessWatch.InnerPid(child.Pid));
        Assert.DoesNotContain(Descendants(supervisor), d => d.State == 'Z');

        await load.StopAsync();
        output.WriteLine($"load: {load}");
        load.AssertNoFailures();
        Assert.Equal(4, load.ResponsesByBody.Count);

        // SIGTERM to PID 1 reaches the app, which drains the request it runs.
        using var client = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
        var inFlight = client.GetAsync(new Uri(scope.BaseUri, "/delay/2000"));
        await Until.TrueAsync(() => TcpTable.CountEstablished(scope.Port) >= 1, "the last request's connection");
        Posix.Kill(supervisor, Posix.SIGTERM);
        var response = await inFlight;
        Assert.Equal(System.Net.HttpStatusCode.OK, response.StatusCode);
        await run.WaitForOutputLineAsync(l => l.Contains("no child left: exiting with code 0", StringComparison.Ordinal), "the supervisor's exit");
        Assert.Equal(0, await run.WaitForExitAsync(TimeSpan.FromSeconds(30)));
    }

    /// <summary>
    /// Under systemd (its own NOTIFY_SOCKET set) the supervisor is the unit's main process: what the app says on the
    /// supervisor's socket is passed on with MAINPID= set to the supervisor's pid, through an upgrade on SIGHUP
    /// (RELOADING=1, then READY=1 as Type=notify-reload wants).
    /// </summary>
    [Fact]
    public async Task Run_UnderNotifySocket_ForwardsReadyAsItsOwnPid_ThroughASighupUpgrade()
    {
        using var scope = new TestScope();
        string notifyPath = Path.Combine(scope.Directory, "notify.sock");
        using var systemd = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        systemd.Bind(new UnixDomainSocketEndPoint(notifyPath));
        var datagrams = new ConcurrentQueue<string>();
        using var stop = new CancellationTokenSource();
        var receiver = Task.Run(async () =>
        {
            var buffer = new byte[4096];
            try
            {
                while (true)
                {
                    int read = await systemd.ReceiveAsync(buffer, SocketFlags.None, stop.Token);
                    datagrams.Enqueue(Encoding.UTF8.GetString(buffer, 0, read));
                }
            }
            catch (OperationCanceledException)
            {
            }
        });

        var config = (scope.Config() with { Launcher = [ZeroDowntimeTool.DotnetPath(), ZeroDowntimeTool.DllPath, "run", "--"] }).With("NOTIFY_SOCKET", notifyPath);
        await using var run = SampleApp.Start("run", config, output);
        await run.WaitForEventAsync(Events.ServingHandoffSocket);
        string self = $"MAINPID={run.Pid}\n";
        await Until.TrueAsync(() => datagrams.Any(d => d.StartsWith(self, StringComparison.Ordinal) && d.Contains("READY=1", StringComparison.Ordinal)), "READY=1 as the supervisor");
        int main = await PidAsync(scope);
        Assert.NotEqual(run.Pid, main);

        // A forged MAINPID= naming a process outside the supervisor's tree is ignored (else SIGTERM would go to it).
        string started = await run.WaitForOutputLineAsync(l => l.Contains("(NOTIFY_SOCKET=", StringComparison.Ordinal), "the supervisor's NOTIFY_SOCKET");
        string ownSocket = started[(started.IndexOf("(NOTIFY_SOCKET=", StringComparison.Ordinal) + 15)..^1];
        using var bystander = System.Diagnostics.Process.Start("sleep", "60");
        using (var forger = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified))
        {
            forger.Connect(new UnixDomainSocketEndPoint(ownSocket));
            forger.Send(Encoding.UTF8.GetBytes($"MAINPID={bystander.Id}\nREADY=1"));
        }

        await run.WaitForOutputLineAsync(l => l.Contains($"ignored MAINPID={bystander.Id}: not a descendant", StringComparison.Ordinal), "the forged MAINPID= ignored");

        await using var load = HttpLoad.Start(scope.BaseUri, workers: 4, newConnectionPerRequest: true);
        await load.WaitForMoreSuccessesAsync(100);
        int before = datagrams.Count;
        Posix.Kill(run.Pid, Posix.SIGHUP);
        await WaitForSupervisorLineAsync(run, "main pid is now ", 1);
        await Until.TrueAsync(() => datagrams.Skip(before).Any(d => d.Contains("READY=1", StringComparison.Ordinal)), "READY=1 after the upgrade");
        await load.WaitForMoreSuccessesAsync(100);
        await load.StopAsync();
        load.AssertNoFailures();

        Posix.Kill(run.Pid, Posix.SIGTERM);
        Assert.Equal(0, await run.WaitForExitAsync(TimeSpan.FromSeconds(60)));
        Assert.False(bystander.HasExited, "the process named by the forged MAINPID= must not have been signalled");
        bystander.Kill();
        await stop.CancelAsync();
        await receiver;
        foreach (string datagram in datagrams)
        {
            output.WriteLine("sd_notify: " + datagram.Replace('\n', ' '));
        }

        // Every datagram that names a main pid names the supervisor; the app's own pids never reach systemd.
        Assert.All(datagrams.Where(d => d.Contains("MAINPID=", StringComparison.Ordinal)), d => Assert.StartsWith(self, d, StringComparison.Ordinal));
        Assert.Equal(2, datagrams.Count(d => d.Contains("READY=1", StringComparison.Ordinal))); // start, upgrade; not the forged one
        var afterSighup = datagrams.Skip(before).ToList();
        int reloading = afterSighup.FindIndex(d => d.Contains("RELOADING=1", StringComparison.Ordinal));
        int ready = afterSighup.FindLastIndex(d => d.Contains("READY=1", StringComparison.Ordinal));
        Assert.True(reloading >= 0, "RELOADING=1 on SIGHUP (Type=notify-reload): " + string.Join(" | ", afterSighup));
        Assert.Contains("MONOTONIC_USEC=", afterSighup[reloading], StringComparison.Ordinal);
        Assert.True(ready > reloading, "READY=1 after RELOADING=1");
    }

    /// <summary>
    /// Pid reuse (issue 18, item 8), forced in a PID namespace of its own so that it happens every run: main process
    /// m1 starts m2 (MAINPID=m2) and a bystander, and exits; the supervisor reaps m1. m2 then writes m1's pid - 1 to
    /// ns_last_pid and starts m3 until m3 gets m1's pid (other forks in the namespace may take it first: retried), and
    /// exits 5. m3, the real owner now, says MAINPID=m3 (its pid is m1's) and waits for SIGTERM, on which it exits 42.
    /// The supervisor must follow m3, send SIGTERM to m3 alone (not the bystander, also its direct child), and exit 42,
    /// not the 5 of an earlier main. The test knows that the supervisor has handled m3's MAINPID= when the datagram
    /// after it arrives on the test's NOTIFY_SOCKET (the supervisor passes on every datagram after handling it).
    /// </summary>
    [Fact]
    public async Task Run_MainPidNamesAReusedPid_FollowsTheNewOwner_SignalsOnlyIt_ExitsWithItsCode()
    {
        OtherUser.RequireRoot();
        LoadTool.Require("unshare");
        using var scope = new TestScope();
        string script = Path.Combine(scope.Directory, "app.sh");
        File.WriteAllText(script, ReusedPidScript);
        string notifyPath = Path.Combine(scope.Directory, "notify.sock");
        using var systemd = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        systemd.Bind(new UnixDomainSocketEndPoint(notifyPath));
        var datagrams = new ConcurrentQueue<string>();
        var announced = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var stop = new CancellationTokenSource();
        var receiver = Task.Run(async () =>
        {
            var buffer = new byte[4096];
            try
            {
                while (true)
                {
                    string datagram = Encoding.UTF8.GetString(buffer, 0, await systemd.ReceiveAsync(buffer, SocketFlags.None, stop.Token));
                    datagrams.Enqueue(datagram);
                    if (datagram.Contains("STATUS=m3 announced", StringComparison.Ordinal))
                    {
                        announced.TrySetResult();
                    }
                }
            }
            catch (OperationCanceledException)
            {
            }
        });

        await using var run = ZeroDowntimeTool.Start(output, "unshare",
            ["--pid", "--fork", "--mount-proc", ZeroDowntimeTool.DotnetPath(), ZeroDowntimeTool.DllPath, "run", "--", "/bin/sh", script, "m1", scope.Directory],
            new Dictionary<string, string> { ["NOTIFY_SOCKET"] = notifyPath });
        await Task.WhenAny(announced.Task, run.Exited).WaitAsync(TimeSpan.FromSeconds(60));
        Assert.True(announced.Task.IsCompleted, "m3 never said MAINPID= (the script's output says why)");
        await Until.TrueAsync(() => ProcessWatch.ChildrenOf(run.Pid).Count == 1, "unshare's child, the supervisor");
        int supervisor = ProcessWatch.ChildrenOf(run.Pid)[0].Pid;
        Posix.Kill(supervisor, Posix.SIGTERM);
        var result = await run.WaitForExitAsync(TimeSpan.FromSeconds(60));
        await stop.CancelAsync();
        await receiver;
        foreach (string datagram in datagrams)
        {
            output.WriteLine("sd_notify: " + datagram.Replace('\n', ' '));
        }

        // Pids as the namespace sees them, which is what the supervisor logs.
        int m1 = ScriptPid(result.Stderr, "m1");
        int m2 = ScriptPid(result.Stderr, "m2");
        Assert.Equal(m1, ScriptPid(result.Stderr, "m3"));
        Assert.Contains($"zerodowntime run[1]: main pid is now {m1} (was {m2})\n", result.Stderr, StringComparison.Ordinal);
        Assert.Contains($"zerodowntime run[1]: signal 15 forwarded to pid {m1}\n", result.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("bystander: SIGTERM", result.Stderr, StringComparison.Ordinal);
        Assert.Contains("m3: SIGTERM", result.Stderr, StringComparison.Ordinal);
        Assert.Contains($"zerodowntime run[1]: main pid {m1} exited with code 42\n", result.Stderr, StringComparison.Ordinal);
        Assert.Equal(42, result.ExitCode);
    }

    /// <summary>The roles of <see cref="Run_MainPidNamesAReusedPid_FollowsTheNewOwner_SignalsOnlyIt_ExitsWithItsCode"/>: sh app.sh ROLE DIR [PIDS].</summary>
    private const string ReusedPidScript = """
        role=$1; dir=$2
        notify() { /usr/bin/python3 -c 'import os, socket, sys; socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(sys.argv[1].encode(), os.environ["NOTIFY_SOCKET"])' "$1"; }
        # Bounded wait until /proc/$1 is gone, i.e. the process has exited and been reaped (its pid is free).
        until_reaped() { i=0; while [ -e "/proc/$1" ]; do i=$((i + 1)); [ $i -le 2000 ] || { echo "$role: pid $1 never reaped" >&2; exit 90; }; sleep 0.005; done; }
        case $role in
        m1)
            echo "m1: pid $$" >&2
            sh "$0" bystander "$dir" &
            echo $! > "$dir/bystander.pid"
            mkfifo "$dir/m2.fifo"
            sh "$0" m2 "$dir" $$ &
            read -r _ < "$dir/m2.fifo"
            exit 0 ;;
        m2)
            m1=$3
            echo "m2: pid $$" >&2
            notify "MAINPID=$$"
            echo announced > "$dir/m2.fifo"
            until_reaped "$m1"
            try=0
            while :; do
                try=$((try + 1))
                [ $try -le 200 ] || { echo "m2: pid $m1 never reused" >&2; exit 91; }
                echo $((m1 - 1)) > /proc/sys/kernel/ns_last_pid
                sh "$0" m3 "$dir" "$m1" $$ &
                [ $! -eq "$m1" ] && break
                wait $!
            done
            echo "m2: m3 got pid $m1 (try $try); exiting 5" >&2
            exit 5 ;;
        m3)
            [ $$ -eq "$3" ] || exit 99
            echo "m3: pid $$" >&2
            until_reaped "$4"
            trap 'echo "m3: SIGTERM" >&2; kill -USR1 "$(cat "$dir/bystander.pid")"; kill $s; exit 42' TERM
            sleep 600 & s=$!
            notify "MAINPID=$$"
            notify "STATUS=m3 announced"
            wait $s ;;
        bystander)
            trap 'echo "bystander: SIGTERM" >&2; kill $s; exit 0' TERM
            trap 'kill $s; exit 0' USR1
            sleep 600 & s=$!
            wait $s ;;
        esac
        """;

    private static int ScriptPid(string output, string role)
    {
        var match = System.Text.RegularExpressions.Regex.Match(output, $"^{role}: pid ([0-9]+)$", System.Text.RegularExpressions.RegexOptions.Multiline);
        Assert.True(match.Success, $"no '{role}: pid' line");
        return int.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture);
    }

    /// <summary>The exit code is the main process's, and an orphan it left behind is waited for and reaped first.</summary>
    [Fact]
    public async Task Run_MainExitsLeavingAnOrphan_ReapsItThenExitsWithTheMainExitCode()
    {
        var result = await ZeroDowntimeTool.RunAsync(output, TimeSpan.FromSeconds(30), "run", "--", "sh", "-c", "(sleep 1; echo orphan-done) & exit 7");
        Assert.Equal(7, result.ExitCode);
        Assert.Contains("orphan-done", result.Stdout, StringComparison.Ordinal);
        Assert.Contains("exited with code 7", result.Stderr, StringComparison.Ordinal);
        Assert.Contains("reaped pid", result.Stderr, StringComparison.Ordinal);
        int orphanReaped = result.Stderr.IndexOf("reaped pid", StringComparison.Ordinal);
        Assert.True(orphanReaped < result.Stderr.IndexOf("no child left", StringComparison.Ordinal));

        var killed = await ZeroDowntimeTool.RunAsync(output, TimeSpan.FromSeconds(30), "run", "--", "sh", "-c", "kill -KILL $$");
        Assert.Equal(128 + 9, killed.ExitCode);

        var missing = await ZeroDowntimeTool.RunAsync(output, TimeSpan.FromSeconds(30), "run", "--", "/nonexistent/zerodowntime-app");
        Assert.Equal(127, missing.ExitCode);
    }

    internal static async Task<int> PidAsync(TestScope scope)
    {
        using var client = new HttpClient();
        return int.Parse(await client.GetStringAsync(new Uri(scope.BaseUri, "/pid")), CultureInfo.InvariantCulture);
    }

    /// <summary>Waits for the <paramref name="count"/>-th line of the supervisor containing <paramref name="text"/>.</summary>
    internal static Task<string> WaitForSupervisorLineAsync(SampleApp run, string text, int count)
    {
        // Every line is offered to the predicate once and in order (see SampleApp.WaitForEventCountAsync).
        int seen = 0;
        return run.WaitForOutputLineAsync(
            l => l.Contains("zerodowntime run[", StringComparison.Ordinal) && l.Contains(text, StringComparison.Ordinal) && ++seen >= count,
            $"'{text}' ({count}. time)", TimeSpan.FromSeconds(60));
    }

    private static List<(int Pid, char State)> Descendants(int pid)
    {
        var all = new List<(int, char)>();
        foreach (var child in ProcessWatch.ChildrenOf(pid))
        {
            all.Add(child);
            all.AddRange(Descendants(child.Pid));
        }

        return all;
    }
}
