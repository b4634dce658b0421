using System.Net;
using System.Net.Sockets;
using System.Text;
using Xunit.Abstractions;
using ZeroDowntime.Hosting.FunctionalTests.Infrastructure;
using ZeroDowntime.Hosting.Tests.Infrastructure;
using static ZeroDowntime.Hosting.FunctionalTests.Infrastructure.HandoffSteps;

namespace ZeroDowntime.Hosting.FunctionalTests;

/// <summary>The core promise, between real processes of the sample app: handoffs under load lose nothing.</summary>
public sealed class HandoffTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ThreeHandoffsInARow_UnderContinuousLoad_NoRequestFails(bool keepAlive)
    {
        using var scope = new TestScope();
        var config = scope.Config();
        var current = await StartFirstAsync("v1", config, output);
        var all = new List<SampleApp> { current };
        try
        {
            await using var load = HttpLoad.Start(scope.BaseUri, workers: 8, newConnectionPerRequest: !keepAlive);

            // SocketsHttpHandler retries an idempotent request that a closing keep-alive connection lost, so it
            // cannot see the race between a request on the wire and an idle close. Raw keep-alive clients can:
            // every request that was sent and got no full response counts as failed.
            await using var raw = keepAlive ? RawKeepAliveLoad.Start(scope.Port, workers: 8) : null;
            await load.WaitForMoreSuccessesAsync(200);
            if (raw is not null)
            {
                await raw.WaitForMoreSuccessesAsync(200);
            }

            for (int version = 2; version <= 4; version++)
            {
                var (successor, oldExit) = await HandOverAsync(current, $"v{version}", config, output);
                all.Add(successor);
                Assert.Equal(0, oldExit);
                current = successor;
                await load.WaitForMoreSuccessesAsync(200);
                if (raw is not null)
                {
                    await raw.WaitForMoreSuccessesAsync(200);
                }
            }

            await load.StopAsync();
            output.WriteLine($"load ({(keepAlive ? "keep-alive" : "new connection per request")}): {load}");
            load.AssertNoFailures();
            Assert.Equal(4, load.ResponsesByBody.Count);
            if (raw is not null)
            {
                await raw.StopAsync();
                output.WriteLine($"raw keep-alive load: {raw}");
                Assert.True(raw.Failed == 0, $"{raw.Failed} raw keep-alive requests failed: {string.Join(Environment.NewLine, raw.Failures)}");
                Assert.Equal(4, raw.ResponsesByBody.Count);

                // Each of the three old processes sent each of the 8 connections away with Connection: close.
                Assert.True(raw.ClosedByServer >= 3 * 8, $"only {raw.ClosedByServer} responses said Connection: close");
            }

            using var client = new HttpClient();
            Assert.Equal(current.Pid.ToString(System.Globalization.CultureInfo.InvariantCulture), await client.GetStringAsync(new Uri(scope.BaseUri, "/pid")));
        }
        finally
        {
            foreach (var app in all)
            {
                await app.DisposeAsync();
            }
        }
    }

    [Fact]
    public async Task Succession_ThirdVersionTakesOverWhileFirstStillDrains_FirstNeverResumes()
    {
        using var scope = new TestScope();
        var config = scope.Config();
        await using var v1 = await StartFirstAsync("v1", config, output);

        // A long request keeps v1 draining long after v2 has handed over to v3 and exited.
        using var slow = new HttpClient { Timeout = TimeSpan.FromSeconds(60) };
        var held = slow.GetAsync(new Uri(scope.BaseUri, "/delay/20000"));
        await Until.TrueAsync(() => TcpTable.CountEstablished(scope.Port) >= 1, "the long request's connection");
        using (var probe = new HttpClient())
        {
            // FIFO accept queue, v1 the only acceptor: once this is answered, v1 runs the long request.
            Assert.Equal(v1.Pid.ToString(System.Globalization.CultureInfo.InvariantCulture), await probe.GetStringAsync(new Uri(scope.BaseUri, "/pid")));
        }

        await using var load = HttpLoad.Start(scope.BaseUri, workers: 4, newConnectionPerRequest: true);
        await load.WaitForMoreSuccessesAsync(100);

        await using var v2 = SampleApp.Start("v2", config, output);
        await v2.WaitForEventAsync(Events.Committed);
        await v2.WaitForEventAsync(Events.ServingHandoffSocket);
        Assert.False(v1.HasExited, "v1 should still be draining its long request");

        var (v3, v2Exit) = await HandOverAsync(v2, "v3", config, output);
        await using var _ = v3;
        Assert.Equal(0, v2Exit);

        // v2 is gone and v1 still drains: v1 must take v2's exit for what it was (Stopping), not a crash.
        int v1Lines = v1.LineCount;
        Assert.False(v1.HasExited, "v1 must still be draining when v2 has exited (the long request runs 20 s)");
        Assert.False(held.IsCompleted, "the long request must still be running on v1 when v2 has exited");
        await load.WaitForMoreSuccessesAsync(200);

        var response = await held;
        Assert.Equal(System.Net.HttpStatusCode.OK, response.StatusCode);
        Assert.Contains($"pid {v1.Pid:D7}", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        Assert.Equal(0, await v1.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        var afterV2 = v1.Entries.Skip(v1Lines).ToList();
        Assert.DoesNotContain(v1.Entries, l => l.Is(Events.SuccessorLost));
        Assert.DoesNotContain(afterV2, l => l.Is(Events.Accepting) || l.Is(Events.ServingHandoffSocket));
        Assert.Equal(1, v1.CountEvent(Events.ServingHandoffSocket));
        Assert.Contains(afterV2, l => l.Is(Events.DrainCompleted) && l.Contains("(0 connection(s) aborted", StringComparison.Ordinal));

        await load.WaitForMoreSuccessesAsync(100);
        await load.StopAsync();
        output.WriteLine($"load: {load}");
        load.AssertNoFailures();
        using var client = new HttpClient();
        Assert.Equal(v3.Pid.ToString(System.Globalization.CultureInfo.InvariantCulture), await client.GetStringAsync(new Uri(scope.BaseUri, "/pid")));
    }

    [Fact]
    public async Task LongRequestsInFlight_DuringHandoff_AllComplete()
    {
        using var scope = new TestScope();
        var config = scope.Config();
        await using var v1 = await StartFirstAsync("v1", config, output);
        using var client = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };

        // Twenty requests that the old process accepts, then a handoff while they run.
        var inFlight = Enumerable.Range(0, 20)
            .Select(_ => client.GetAsync(new Uri(scope.BaseUri, "/delay/3000")))
            .ToArray();
        await WaitUntilAsync(() => CountEstablished(scope.Port) >= 20, "20 connections established");

        // v1 is the only process accepting and the kernel's queue is FIFO: once a later connection is answered,
        // all twenty were accepted by v1 and are running there.
        using (var probe = new HttpClient())
        {
            Assert.Equal(v1.Pid.ToString(System.Globalization.CultureInfo.InvariantCulture), await probe.GetStringAsync(new Uri(scope.BaseUri, "/pid")));
        }

        var (v2, oldExit) = await HandOverAsync(v1, "v2", config, output);
        await using var _ = v2;
        var responses = await Task.WhenAll(inFlight);
        Assert.All(responses, r => Assert.Equal(HttpStatusCode.OK, r.StatusCode));
        var bodies = await Task.WhenAll(responses.Select(r => r.Content.ReadAsStringAsync()));
        Assert.All(bodies, b => Assert.Contains($"pid {v1.Pid:D7}", b, StringComparison.Ordinal));
        Assert.Equal(0, oldExit);
    }

    [Fact]
    public async Task AfterOldProcessExits_NewConnectionsCloseInOrder_NeverReset()
    {
        using var scope = new TestScope();
        var config = scope.Config();
        await using var v1 = await StartFirstAsync("v1", config, output);

        // The old process accepted connections (so its listener had pending accepts) before handing over.
        await using (var warmup = HttpLoad.Start(scope.BaseUri, workers: 4, newConnectionPerRequest: true))
        {
            await warmup.WaitForMoreSuccessesAsync(100);
        }

        var (v2, oldExit) = await HandOverAsync(v1, "v2", config, output);
        await using var _ = v2;
        Assert.Equal(0, oldExit);

        int orderly = 0;
        var problems = new List<string>();
        byte[] request = Encoding.ASCII.GetBytes("GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        for (int i = 0; i < 1000; i++)
        {
            using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                await socket.ConnectAsync(IPAddress.Loopback, scope.Port);
                await socket.SendAsync(request);
                var received = new MemoryStream();
                var buffer = new byte[4096];
                int read;
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
                while ((read = await socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token)) > 0)
                {
                    received.Write(buffer, 0, read);
                }

                // read == 0: the server's FIN, an orderly close. A reset would have thrown instead.
                string text = Encoding.ASCII.GetString(received.ToArray());
                if (text.StartsWith("HTTP/1.1 200", StringComparison.Ordinal) && text.Contains($"pid {v2.Pid:D7}", StringComparison.Ordinal))
                {
                    orderly++;
                }
                else
                {
                    problems.Add($"#{i}: unexpected response '{text[..Math.Min(text.Length, 80)]}'");
                }
            }
            catch (Exception ex) when (ex is SocketException or OperationCanceledException)
            {
                problems.Add($"#{i}: {Posix.Describe(ex)}");
            }
        }

        output.WriteLine($"{orderly} of 1000 connections answered 200 and closed with FIN");
        Assert.True(problems.Count == 0, string.Join(Environment.NewLine, problems.Take(20)));
        Assert.Equal(1000, orderly);
    }

    [Fact]
    public async Task SuccessorThatFailsStartup_ExitsNonZero_OldKeepsServing()
    {
        using var scope = new TestScope();
        var config = scope.Config();
        await using var v1 = await StartFirstAsync("v1", config, output);
        await using var load = HttpLoad.Start(scope.BaseUri, workers: 4, newConnectionPerRequest: true);
        await load.WaitForMoreSuccessesAsync(100);

        await using var broken = SampleApp.Start("v2-broken", config.With("Sample__FailStartup", "true"), output);
        int brokenExit = await broken.WaitForExitAsync();
        await v1.WaitForEventAsync(Events.SuccessorFailed);
        await load.WaitForMoreSuccessesAsync(200);

        // The old process still accepts successors afterwards.
        var (v3, oldExit) = await HandOverAsync(v1, "v3", config, output);
        await using var _ = v3;
        await load.WaitForMoreSuccessesAsync(100);
        await load.StopAsync();

        output.WriteLine($"broken successor exit code {brokenExit}; load: {load}");
        Assert.NotEqual(0, brokenExit);
        Assert.False(v1.Entries.Any(l => l.Is(Events.SuccessorReady) && l.Contains($"pid {broken.Pid}", StringComparison.Ordinal)),
            "the old process must never have committed to the broken successor");
        Assert.Contains(v1.Lines, l => l.Contains("Start-up failed on purpose", StringComparison.Ordinal));
        load.AssertNoFailures();
        Assert.Equal(0, oldExit);
    }

    [Fact]
    public async Task StaleSocketFile_AfterKill9_DoesNotBlockNextStart()
    {
        using var scope = new TestScope();
        var config = scope.Config();
        var v1 = await StartFirstAsync("v1", config, output);
        v1.Signal(Posix.SIGKILL);
        await v1.WaitForExitAsync();
        await v1.DisposeAsync();
        Assert.True(File.Exists(scope.SocketPath), "kill -9 leaves the socket file behind");

        await using var v2 = SampleApp.Start("v2", config, output);
        await v2.WaitForEventAsync(Events.StaleSocket);
        await v2.WaitForEventAsync(Events.ServingHandoffSocket);
        using var client = new HttpClient();
        Assert.Equal(v2.Pid.ToString(System.Globalization.CultureInfo.InvariantCulture), await client.GetStringAsync(new Uri(scope.BaseUri, "/pid")));
    }

    [Fact]
    public async Task UnixSocketEndpoint_SurvivesHandoff_FileIncluded()
    {
        using var scope = new TestScope();
        string unixPath = Path.Combine(scope.Directory, "kestrel.sock");
        var config = scope.Config() with { Arguments = ["--urls", $"http://127.0.0.1:{scope.Port};http://unix:{unixPath}"] };
        await using var v1 = await StartFirstAsync("v1", config, output);
        Assert.Equal(v1.Pid, await GetPidOverUnixSocketAsync(unixPath));

        var (v2, oldExit) = await HandOverAsync(v1, "v2", config, output);
        await using var _ = v2;
        Assert.Equal(0, oldExit);
        Assert.True(File.Exists(unixPath), "the old process must not delete the Unix socket file its successor serves");
        Assert.Contains(v2.Entries, l => l.Is(Events.ListenerInherited) && l.Contains("unix:" + unixPath, StringComparison.Ordinal));
        for (int i = 0; i < 20; i++)
        {
            Assert.Equal(v2.Pid, await GetPidOverUnixSocketAsync(unixPath));
        }
    }

    private static async Task<int> GetPidOverUnixSocketAsync(string path)
    {
        using var handler = new SocketsHttpHandler
        {
            ConnectCallback = async (_, ct) =>
            {
                var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), ct);
                return new NetworkStream(socket, ownsSocket: true);
            },
        };
        using var client = new HttpClient(handler);
        return int.Parse(await client.GetStringAsync(new Uri("http://localhost/pid")), System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>Server-side TCP sockets of the port in any state but LISTEN (0A) and TIME_WAIT (06).</summary>
    internal static int CountConnections(int port)
    {
        string hexPort = ":" + port.ToString("X4", System.Globalization.CultureInfo.InvariantCulture);
        return File.ReadLines("/proc/net/tcp").Skip(1)
            .Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .Count(f => f.Length > 3 && f[1].EndsWith(hexPort, StringComparison.Ordinal) && f[3] is not "0A" and not "06");
    }

    private static int CountEstablished(int port)
    {
        // /proc/net/tcp lists sockets with hex ports; state 01 is ESTABLISHED. Server side: local port == port.
        string hexPort = ":" + port.ToString("X4", System.Globalization.CultureInfo.InvariantCulture);
        return File.ReadLines("/proc/net/tcp").Skip(1)
            .Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .Count(f => f.Length > 3 && f[1].EndsWith(hexPort, StringComparison.Ordinal) && f[3] == "01");
    }

    private static async Task WaitUntilAsync(Func<bool> condition, string description)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(20));
        var limit = System.Diagnostics.Stopwatch.StartNew();
        while (!condition())
        {
            if (limit.Elapsed > TimeSpan.FromSeconds(20))
            {
                throw new TimeoutException("Timed out waiting for " + description);
            }

            await timer.WaitForNextTickAsync();
        }
    }

    // Item 1: a 99-byte SocketPath passed validation, but the temporary name (+17 bytes) did not fit sun_path: the
    // handoff socket was never served and nothing was logged; the next version then died on EADDRINUSE.
    [Fact]
    public async Task SocketPathOf99Bytes_IsServed_AndSuccessorTakesOver()
    {
        using var scope = new TestScope();
        string directory = Path.Combine(scope.Directory, new string('d', 99 - scope.Directory.Length - 1 - "handoff.sock".Length - 1));
        Directory.CreateDirectory(directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        string socketPath = Path.Combine(directory, "handoff.sock");
        Assert.Equal(99, socketPath.Length);
        var config = scope.Config() with { SocketPath = socketPath };

        var v1 = await StartFirstAsync("v1", config, output);
        await using var load = HttpLoad.Start(scope.BaseUri, workers: 4, newConnectionPerRequest: true);
        await load.WaitForMoreSuccessesAsync(100);
        var (v2, oldExit) = await HandOverAsync(v1, "v2", config, output);
        await using var _ = v2;
        await v1.DisposeAsync();
        await load.WaitForMoreSuccessesAsync(100);
        await load.StopAsync();

        output.WriteLine($"load: {load}");
        load.AssertNoFailures();
        Assert.Equal(0, oldExit);
        Assert.True(File.Exists(socketPath));
    }
}
