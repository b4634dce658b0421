using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Xunit.Abstractions;
using ZeroDowntime.Hosting.FunctionalTests.Infrastructure;
using ZeroDowntime.Hosting.Tests.Infrastructure;

namespace ZeroDowntime.Hosting.FunctionalTests;

/// <summary>
/// Issue 21: <c>zerodowntime run</c> keeps the listening sockets that the app stores with it (FDSTORE=1) and starts a
/// crashed app again with them (LISTEN_FDS), so a <c>kill -9</c> only delays clients: their connections wait in the
/// kernel's queue. Past the restart limit it closes them, and the port refuses at once.
/// </summary>
public sealed class CrashRestartTests(ITestOutputHelper output)
{
    private const int Concurrency = 16;

    /// <summary>
    /// The supervisor as PID 1 of a PID namespace, ab -r -c 16 for the whole test, five kill -9 of the serving process
    /// with a SIGHUP upgrade before the third and the fifth. No connect error at all; the only failed requests are those
    /// the killed process had accepted (at most 16 a kill, ab's concurrency), and a request sent right after each kill
    /// is answered by the restarted process: its latency is the outage, printed per crash.
    /// </summary>
    [Fact]
    public async Task Run_AsPid1_FiveKill9UnderAb_NoConnectError_OnlyInFlightRequestsFail()
    {
        OtherUser.RequireRoot();
        LoadTool.Require("unshare");
        using var scope = new TestScope();
        var config = scope.Config() with
        {
            Launcher = ["unshare", "--pid", "--fork", "--mount-proc", ZeroDowntimeTool.DotnetPath(), ZeroDowntimeTool.DllPath, "run", "--"],
        };
        await using var run = SampleApp.Start("run", config, output);
        int serving = 1;
        await run.WaitForEventAsync(Events.ServingHandoffSocket);
        await run.WaitForEventAsync(Events.ListenerStored);
        await Until.TrueAsync(() => ProcessWatch.ChildrenOf(run.Pid).Count == 1, "unshare's child, the supervisor");
        int supervisor = ProcessWatch.ChildrenOf(run.Pid)[0].Pid;
        Assert.Equal(1, ProcessWatch.InnerPid(supervisor));

        await using var ab = LoadTool.Start("ab", "-r", "-c", Concurrency.ToString(CultureInfo.InvariantCulture), "-t", "120", "-n", "100000000", "-s", "30",
            new Uri(scope.BaseUri, "/").ToString());
        // ab takes the length of the first answer it closes as the length of all: a kill before it has one would make
        // every later answer a "Length" failure. The server closes first (HTTP/1.0), so TIME_WAIT counts answers.
        await Until.TrueAsync(() => TcpTable.CountTimeWait(scope.Port) >= 200, "ab's first 200 answers");
        var outages = new List<double>();
        int upgrades = 0;
        for (int crash = 1; crash <= 5; crash++)
        {
            if (crash is 3 or 5)
            {
                int before = await PidAsync(scope);
                Posix.Kill(supervisor, Posix.SIGHUP);
                upgrades++;
                await WaitForSupervisorLineAsync(run, "main pid is now ", upgrades);
                await run.WaitForEventCountAsync(Events.ServingHandoffSocket, ++serving, TimeSpan.FromSeconds(60));
                await WaitForSupervisorLineAsync(run, $"pid {PidText(before)}", 1, reaped: true);
                output.WriteLine($"upgrade by SIGHUP: pid {before} -> {await PidAsync(scope)}");
            }

            int main = await PidAsync(scope);
            int host = HostPid(supervisor, main);
            var outage = Stopwatch.StartNew();
            Posix.Kill(host, Posix.SIGKILL);

            // A new connection right after the kill: it waits in the queue of the socket that the supervisor kept.
            int answeredBy = await PidAsync(scope);
            outage.Stop();
            Assert.NotEqual(main, answeredBy);
            outages.Add(outage.Elapsed.TotalMilliseconds);
            output.WriteLine($"crash {crash}: kill -9 of pid {main}, first answer from pid {answeredBy} {outage.Elapsed.TotalMilliseconds:0} ms later");
            await WaitForSupervisorLineAsync(run, "restarted as pid ", crash);
            await run.WaitForEventCountAsync(Events.ServingHandoffSocket, ++serving, TimeSpan.FromSeconds(60));
        }

        Assert.False(ab.HasExited, "ab must run through every crash: " + ab.Output);
        string text = await ab.InterruptAsync(TimeSpan.FromSeconds(60));
        output.WriteLine(text);
        var result = LoadTool.AbResult.Parse(text);
        // A request cut by a kill ends with fewer bytes than the others: ab counts it under Length, and also under
        // Receive and Exceptions when the kernel reset the connection (one request, up to three counts). So Length is
        // the number of requests in flight at a kill; every other request succeeded.
        long inFlight = result.Length;
        output.WriteLine($"outage per crash (kill to first answer): {string.Join(", ", outages.Select(o => $"{o:0} ms"))}; ab: {result.Complete} complete, {result.Connect} connect errors, {inFlight} requests in flight at a kill (ab's counts: length {result.Length}, receive {result.Receive}, exceptions {result.Exceptions}), {result.Non2xx} non-2xx");
        Assert.Equal(0, result.Connect);
        Assert.Equal(0, result.Non2xx);
        Assert.True(result.Receive <= inFlight && result.Exceptions <= inFlight, $"ab: {result}");
        Assert.True(inFlight <= 5 * Concurrency, $"{inFlight} failed requests: more than the {Concurrency} a kill that can be in flight");
        Assert.True(result.Complete > 1000, $"ab completed only {result.Complete} requests");

        // Every process stored the same socket again (after each restart and each upgrade): the supervisor kept one.
        var stores = run.Lines.Where(l => l.Contains("zerodowntime run[", StringComparison.Ordinal) && l.Contains(": FDSTORE ", StringComparison.Ordinal)).ToList();
        Assert.Equal(1 + 5 + upgrades, stores.Count);
        Assert.All(stores, l => Assert.EndsWith(", 1 in all", l, StringComparison.Ordinal));

        Posix.Kill(supervisor, Posix.SIGTERM);
        await run.WaitForOutputLineAsync(l => l.Contains("no child left: exiting with code 0", StringComparison.Ordinal), "the supervisor's exit");
        Assert.Equal(0, await run.WaitForExitAsync(TimeSpan.FromSeconds(30)));
    }

    /// <summary>
    /// --max-restarts 1: the first kill -9 is a restart, the second is one too many. The supervisor closes the sockets it
    /// kept and exits 8, and a client is refused at once instead of waiting in a queue that nobody serves.
    /// </summary>
    [Fact]
    public async Task Run_RestartLimitReached_ExitsEight_PortRefusesAtOnce()
    {
        using var scope = new TestScope();
        var config = scope.Config() with
        {
            Launcher = [ZeroDowntimeTool.DotnetPath(), ZeroDowntimeTool.DllPath, "run", "--max-restarts", "1", "--restart-window", "60s", "--"],
        };
        await using var run = SampleApp.Start("run", config, output);
        await run.WaitForEventAsync(Events.ListenerStored);
        int first = await PidAsync(scope);
        Posix.Kill(first, Posix.SIGKILL);
        int second = await PidAsync(scope);
        Assert.NotEqual(first, second);
        await run.WaitForEventCountAsync(Events.ListenerStored, 2);

        Posix.Kill(second, Posix.SIGKILL);
        await run.WaitForOutputLineAsync(l => l.Contains("giving up: 1 restart(s) within 60 s", StringComparison.Ordinal), "the supervisor giving up");
        Assert.Equal(8, await run.WaitForExitAsync(TimeSpan.FromSeconds(30)));

        using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        var refused = Stopwatch.StartNew();
        var ex = await Assert.ThrowsAsync<SocketException>(() => probe.ConnectAsync(IPAddress.Loopback, scope.Port));
        Assert.Equal(SocketError.ConnectionRefused, ex.SocketErrorCode);
        output.WriteLine($"refused after {refused.Elapsed.TotalMilliseconds:0.0} ms");
    }

    private static async Task<int> PidAsync(TestScope scope)
    {
        // A client of its own per request: a new connection, never a pooled one to a process that may be gone.
        using var client = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
        return int.Parse(await client.GetStringAsync(new Uri(scope.BaseUri, "/pid")), CultureInfo.InvariantCulture);
    }

    private static string PidText(int innerPid) => innerPid.ToString(CultureInfo.InvariantCulture);

    /// <summary>The pid, as this test sees it, of the supervisor's descendant whose pid in the namespace is <paramref name="inner"/>.</summary>
    private static int HostPid(int supervisor, int inner)
    {
        var pending = new Stack<int>([supervisor]);
        while (pending.TryPop(out int pid))
        {
            foreach (var (child, _) in ProcessWatch.ChildrenOf(pid))
            {
                if (ProcessWatch.InnerPid(child) == inner)
                {
                    return child;
                }

                pending.Push(child);
            }
        }

        throw new InvalidOperationException($"no descendant of pid {supervisor} is pid {inner} in its namespace");
    }

    /// <summary>
    /// Waits for the <paramref name="count"/>-th line of the supervisor containing <paramref name="text"/>; with
    /// <paramref name="reaped"/>, a line that says the process <paramref name="text"/> names was reaped.
    /// </summary>
    private static Task<string> WaitForSupervisorLineAsync(SampleApp run, string text, int count, bool reaped = false)
    {
        int seen = 0;
        return run.WaitForOutputLineAsync(
            l => l.Contains("zerodowntime run[", StringComparison.Ordinal)
                && (reaped ? (l.Contains($"reaped {text}:", StringComparison.Ordinal) || l.Contains($"main {text} exited", StringComparison.Ordinal)) : l.Contains(text, StringComparison.Ordinal))
                && ++seen >= count,
            $"'{text}' ({count}. time)", TimeSpan.FromSeconds(60));
    }
}
