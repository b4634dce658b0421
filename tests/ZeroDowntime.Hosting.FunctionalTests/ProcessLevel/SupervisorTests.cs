using System.Collections.Concurrent;
using System.Globalization;
using System.Net.Sockets;
using System.Text;
using Xunit.Abstractions;
using ZeroDowntime.Hosting.FunctionalTests.Infrastructure;
using ZeroDowntime.Hosting.Tests.Infrastructure;
using static ZeroDowntime.Hosting.FunctionalTests.Infrastructure.Handoff;

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

    private static async Task<int> PidAsync(TestScope scope)
    {
        using var client = new HttpClient();
        return int.Parse(await client.GetStringAsync(new Uri(scope.BaseUri, "/pid")), CultureInfo.InvariantCulture);
    }

    /// <summary>Waits for the <paramref name="count"/>-th line of the supervisor containing <paramref name="text"/>.</summary>
    private static Task<string> WaitForSupervisorLineAsync(SampleApp run, string text, int count)
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
