using System.Diagnostics;
using System.Net.WebSockets;
using Xunit.Abstractions;
using ZeroDowntime.Hosting.FunctionalTests.Infrastructure;
using ZeroDowntime.Hosting.Tests.Infrastructure;
using static ZeroDowntime.Hosting.FunctionalTests.Infrastructure.HandoffSteps;

namespace ZeroDowntime.Hosting.FunctionalTests;

/// <summary>
/// <c>ZeroDowntime:MaxDrainingGenerations</c> (issue 23 item 2) with the real sample: every generation holds a WebSocket
/// that the drain leaves open (<c>CloseLongLivedConnections=false</c>, <c>DrainTimeout</c> 60 s), so without the bound
/// every old generation would live a minute. With a bound of 2, the handoff that makes a third generation drain ends
/// the oldest one's drain at once (its WebSocket aborted, the process gone), the others drain on, and
/// <c>zerodowntime status --json</c> lists the draining generations with their open connections.
/// </summary>
public sealed class DrainingGenerationLimitTests(ITestOutputHelper output)
{
    private static readonly TimeSpan DrainTimeout = TimeSpan.FromSeconds(60);

    /// <summary>An ended drain is over in milliseconds; this leaves room for a loaded machine, far below DrainTimeout.</summary>
    private static readonly TimeSpan AtOnce = TimeSpan.FromSeconds(8);

    [Fact]
    public async Task MaxTwo_ThirdAndFourthHandoff_EachEndsTheOldestDrainAtOnce_OthersDrainOn_StatusListsThem()
    {
        using var scope = new TestScope();
        var config = scope.Config()
            .With("ZeroDowntime__MaxDrainingGenerations", "2")
            .With("ZeroDowntime__CloseLongLivedConnections", "false")
            .With("ZeroDowntime__DrainTimeout", "00:01:00");
        using var limit = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        var uri = new Uri($"ws://127.0.0.1:{scope.Port}/ws");
        var generations = new List<SampleApp>();
        var sockets = new List<ClientWebSocket>();
        var closes = new List<Task<string>>();
        try
        {
            generations.Add(await StartFirstAsync("v1", config, output));
            await HoldWebSocketAsync();

            // Two handoffs: v1 and v2 drain beside v3, the bound; nobody's drain ends.
            for (int version = 2; version <= 3; version++)
            {
                await HandOverAsync($"v{version}");
                await HoldWebSocketAsync();
            }

            Assert.All(generations, g => Assert.False(g.HasExited, $"{g.Name} exited"));
            Assert.All(closes, c => Assert.False(c.IsCompleted, "a WebSocket of a draining generation ended"));
            await AssertDrainingAsync(generations[0], generations[1]);

            // Third handoff: v1, v2 and v3 would drain, one more than the bound: v1 (the oldest) ends its drain at once.
            // Fourth: v2 is then the oldest of three, and ends in turn. v3 drains on with its WebSocket.
            for (int version = 4; version <= 5; version++)
            {
                var committed = await HandOverAsync($"v{version}");
                var oldest = generations[version - 4];
                Assert.Equal(0, await oldest.WaitForExitAsync(AtOnce + TimeSpan.FromSeconds(2)));
                var lived = committed.Elapsed;
                string ended = await closes[version - 4].WaitAsync(limit.Token);
                output.WriteLine($"handoff {version - 1}: {oldest.Name} exited {lived.TotalMilliseconds:0} ms after v{version}'s commit; its WebSocket: {ended}; {oldest.Entries.Single(l => l.Is(Events.DrainingGenerationsExceeded)).Text} / {oldest.Entries.Single(l => l.Is(Events.DrainEndedByLimit)).Text}");
                Assert.True(lived < AtOnce, $"{oldest.Name} lived {lived} after the handoff that exceeded the bound (DrainTimeout {DrainTimeout})");
                Assert.StartsWith("error", ended, StringComparison.Ordinal); // aborted, no close frame
                Assert.Contains("1 connection(s) aborted", oldest.Entries.Single(l => l.Is(Events.DrainEndedByLimit)).Text, StringComparison.Ordinal);
                Assert.DoesNotContain(oldest.Entries, l => l.Is(Events.DrainCompleted));
                Assert.False(File.Exists($"{scope.SocketPath}.draining.{oldest.Pid}"), $"{oldest.Name} left its state file behind");

                var drainingOn = generations.Skip(version - 3).SkipLast(1).ToArray();
                Assert.All(drainingOn, g => Assert.False(g.HasExited, $"{g.Name} exited, though within the bound"));
                await AssertDrainingAsync(drainingOn);
                await HoldWebSocketAsync();
            }

            // The ones within the bound still serve their WebSockets.
            for (int i = 2; i < sockets.Count; i++)
            {
                Assert.False(closes[i].IsCompleted, $"the WebSocket of v{i + 1} ended");
            }
        }
        finally
        {
            foreach (var socket in sockets)
            {
                socket.Abort();
                socket.Dispose();
            }

            foreach (var generation in generations)
            {
                await generation.DisposeAsync();
            }
        }

        async Task HoldWebSocketAsync()
        {
            // Only the newest generation accepts (the old one closed its gate before the commit): this socket is its own.
            var socket = new ClientWebSocket();
            sockets.Add(socket);
            await socket.ConnectAsync(uri, limit.Token);
            Assert.Equal("hello", await LongLivedConnectionTests.EchoAsync(socket, "hello", limit.Token));
            closes.Add(LongLivedConnectionTests.ReceiveCloseAsync(socket, limit.Token));
        }

        async Task<Stopwatch> HandOverAsync(string name)
        {
            var next = SampleApp.Start(name, config, output);
            generations.Add(next);
            await next.WaitForEventAsync(Events.Committed);
            var committed = Stopwatch.StartNew();
            await next.WaitForEventAsync(Events.ServingHandoffSocket);
            return committed;
        }

        async Task AssertDrainingAsync(params SampleApp[] draining)
        {
            // Each draining process writes its state file at the start of its drain: wait (bounded) until all are there.
            var expected = draining.Select(g => g.Pid).ToArray();
            await Until.TrueAsync(() => expected.All(pid => File.Exists($"{scope.SocketPath}.draining.{pid}")),
                $"the state files of pids {string.Join(", ", expected)}");
            var status = (await ZeroDowntimeTool.RunAsync(output, TimeSpan.FromSeconds(30), "status", "--socket", scope.SocketPath, "--json")).Json;
            Assert.Equal(expected, status.GetProperty("drainingGenerations").EnumerateArray().Select(g => g.GetProperty("pid").GetInt32()));
            output.WriteLine($"status: {status}");
            Assert.Equal(generations[^1].Pid, status.GetProperty("pid").GetInt32());
            Assert.Equal(generations.Count, status.GetProperty("generation").GetInt64());
            foreach (var generation in status.GetProperty("drainingGenerations").EnumerateArray())
            {
                int pid = generation.GetProperty("pid").GetInt32();
                Assert.Equal(generations.FindIndex(g => g.Pid == pid) + 1, generation.GetProperty("generation").GetInt64());
                Assert.Equal(1, generation.GetProperty("openConnections").GetInt32()); // its WebSocket
            }
        }
    }
}
