using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Net.WebSockets;
using System.Text;
using Microsoft.AspNetCore.SignalR.Client;
using Xunit.Abstractions;
using ZeroDowntime.Hosting.FunctionalTests.Infrastructure;
using ZeroDowntime.Hosting.Tests.Infrastructure;
using static ZeroDowntime.Hosting.FunctionalTests.Infrastructure.HandoffSteps;

namespace ZeroDowntime.Hosting.FunctionalTests;

/// <summary>
/// Long-lived connections across handoffs (issue 23), with real clients against the sample's <c>/hub</c>, <c>/ws</c>
/// and <c>/sse</c>: the drain closes them so that their clients move to the successor at once, and each old process
/// exits seconds after its handoff instead of at DrainTimeout (30 s, the default, in these tests).
/// </summary>
public sealed class LongLivedConnectionTests(ITestOutputHelper output)
{
    private const int Clients = 50;

    /// <summary>An old process must be gone this long after the commit at most (DrainTimeout is 30 s).</summary>
    private static readonly TimeSpan FewSeconds = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task SignalR_50ClientsThroughThreeHandoffs_EachOnTheNewestPid_OnlyReconnects_EveryEchoAnswered_OldExitsInSeconds()
    {
        using var scope = new TestScope();
        var config = scope.Config();
        var generations = new List<SampleApp> { await StartFirstAsync("v1", config, output) };
        var clients = new List<EchoHubClient>();
        using var limit = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        try
        {
            var hub = new Uri(scope.BaseUri, "/hub");
            clients.AddRange(await Task.WhenAll(Enumerable.Range(1, Clients).Select(i => EchoHubClient.ConnectAsync(hub, $"c{i}", limit.Token))));
            await AllAnswerAsync(clients, generations[0], limit.Token);

            for (int handoff = 1; handoff <= 3; handoff++)
            {
                var old = generations[^1];
                var next = SampleApp.Start($"v{handoff + 1}", config, output);
                generations.Add(next);
                await next.WaitForEventAsync(Events.Committed);
                var committed = Stopwatch.StartNew();
                Assert.Equal(0, await old.WaitForExitAsync(TimeSpan.FromSeconds(60)));
                var lived = committed.Elapsed;
                output.WriteLine($"handoff {handoff}: {old.Name} exited {lived.TotalMilliseconds:0} ms after the commit; {old.Entries.Last(l => l.Is(Events.DrainCompleted)).Text}");
                Assert.True(lived < FewSeconds, $"{old.Name} lived {lived} after its handoff (DrainTimeout 30 s)");
                Assert.Contains(old.Entries, l => l.Is(Events.SignalRClosing));
                Assert.Contains("(0 connection(s) aborted", old.Entries.Last(l => l.Is(Events.DrainCompleted)).Text, StringComparison.Ordinal);
                await AllAnswerAsync(clients, next, limit.Token);
            }
        }
        finally
        {
            await Task.WhenAll(clients.Select(c => c.DisposeAsync().AsTask()));
            foreach (var client in clients)
            {
                output.WriteLine(client.ToString());
            }

            foreach (var generation in generations)
            {
                await generation.DisposeAsync();
            }
        }

        var reasons = clients.SelectMany(c => c.ReconnectReasons).GroupBy(r => r).Select(g => $"{g.Count()} x {g.Key}");
        output.WriteLine($"{Clients} clients: sent {clients.Sum(c => c.Sent)}, answered {clients.Sum(c => c.Answered)}, sent again after a reconnect {clients.Sum(c => c.LostInReconnect)}, reconnects {clients.Sum(c => c.Reconnected)}; reasons: {string.Join("; ", reasons)}");
        Assert.Empty(clients.SelectMany(c => c.Failures));
        Assert.All(clients, c => Assert.Equal(3, c.Reconnected));

        // Every message was answered, those in flight at a close after being sent again (at most one per handoff: the
        // client sends one at a time).
        Assert.All(clients, c => Assert.Equal(c.Sent, c.Answered));
        Assert.All(clients, c => Assert.InRange(c.LostInReconnect, 0, 6));
        // The only reasons: SignalR's reconnect (without an error), an echo in flight that the close cancelled, or one that
        // the client began just as the connection left the Connected state (never sent).
        Assert.All(clients.SelectMany(c => c.ReconnectReasons), r => Assert.True(
            r == "(no error)"
            || r.StartsWith("echo lost in the reconnect: TaskCanceledException", StringComparison.Ordinal)
            || r.StartsWith("echo lost in the reconnect: InvalidOperationException: The 'InvokeCoreAsync' method cannot be called if the connection is not active", StringComparison.Ordinal), r));
    }

    [Fact]
    public async Task WebSockets_50Clients_Handoff_EachClosedWith1001NotReset_ReconnectLandsOnTheNewProcess()
    {
        using var scope = new TestScope();
        var config = scope.Config();
        await using var v1 = await StartFirstAsync("v1", config, output);
        var uri = new Uri($"ws://127.0.0.1:{scope.Port}/ws");
        using var limit = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var sockets = await Task.WhenAll(Enumerable.Range(1, Clients).Select(async i =>
        {
            var socket = new ClientWebSocket();
            await socket.ConnectAsync(uri, limit.Token);
            Assert.Equal($"hello {i}", await EchoAsync(socket, $"hello {i}", limit.Token));
            return socket;
        }));

        // Every client waits in a receive, as an application does; the drain's close frame must end each receive.
        var closes = sockets.Select(socket => ReceiveCloseAsync(socket, limit.Token)).ToArray();
        await using var v2 = SampleApp.Start("v2", config, output);
        await v2.WaitForEventAsync(Events.Committed);
        var committed = Stopwatch.StartNew();
        var statuses = await Task.WhenAll(closes);
        var closedIn = committed.Elapsed;
        Assert.Equal(0, await v1.WaitForExitAsync(TimeSpan.FromSeconds(60)));
        var lived = committed.Elapsed;
        output.WriteLine($"{Clients} WebSockets: closes {string.Join(", ", statuses.GroupBy(s => s).Select(g => $"{g.Count()} x {g.Key}"))} within {closedIn.TotalMilliseconds:0} ms of the commit; v1 exited after {lived.TotalMilliseconds:0} ms; {v1.Entries.Single(l => l.Is(Events.LongLivedClosing)).Text}");
        Assert.All(statuses, s => Assert.Equal("EndpointUnavailable", s));
        Assert.True(lived < FewSeconds, $"v1 lived {lived} after its handoff (DrainTimeout 30 s)");
        Assert.Contains("(0 connection(s) aborted", v1.Entries.Single(l => l.Is(Events.DrainCompleted)).Text, StringComparison.Ordinal);
        foreach (var socket in sockets)
        {
            socket.Dispose();
        }

        // Reconnecting clients land on v2, the only process left.
        var again = await Task.WhenAll(Enumerable.Range(1, Clients).Select(async i =>
        {
            using var socket = new ClientWebSocket();
            await socket.ConnectAsync(uri, limit.Token);
            string echo = await EchoAsync(socket, $"again {i}", limit.Token);
            await socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "done", limit.Token);
            return echo == $"again {i}";
        }));
        Assert.All(again, Assert.True);
        Assert.True(v1.HasExited);
    }

    [Fact]
    public async Task EventStream_Handoff_EndsCleanly_ReconnectWithLastEventId_NoGapAndServedByTheNewProcess()
    {
        using var scope = new TestScope();
        var config = scope.Config();
        await using var v1 = await StartFirstAsync("v1", config, output);
        using var client = new HttpClient { BaseAddress = scope.BaseUri, Timeout = Timeout.InfiniteTimeSpan };
        using var limit = new CancellationTokenSource(TimeSpan.FromSeconds(60));

        var ids = new List<long>();
        var pids = new List<string>();
        var first = await ReadEventsAsync(client, null, ids, pids, untilCount: 3, limit.Token);
        Assert.Null(first.Ended); // stopped reading by itself after 3 events
        var stream = ReadEventsAsync(client, ids[^1].ToString(CultureInfo.InvariantCulture), ids, pids, untilCount: int.MaxValue, limit.Token);
        await Until.TrueAsync(() => ids.Count >= 5, "two more events");

        await using var v2 = SampleApp.Start("v2", config, output);
        var ended = await stream;
        output.WriteLine($"the stream from v1 ended: {ended.Ended}");
        Assert.Equal("end of stream", ended.Ended);
        long lastFromV1 = ids[^1];
        Assert.Equal(0, await v1.WaitForExitAsync(TimeSpan.FromSeconds(60)));

        var resumed = await ReadEventsAsync(client, lastFromV1.ToString(CultureInfo.InvariantCulture), ids, pids, untilCount: ids.Count + 3, limit.Token);
        output.WriteLine($"ids {string.Join(",", ids)}; pids {string.Join(",", pids.Distinct())}");
        Assert.Equal(Enumerable.Range(1, ids.Count).Select(i => (long)i), ids);
        Assert.Equal($"pid {v2.Pid}", pids[^1]);
        Assert.Equal($"pid {v1.Pid}", pids[0]);
        Assert.Contains(v1.Entries, l => l.Is(Events.LongLivedClosing));
        Assert.Contains("(0 connection(s) aborted", v1.Entries.Single(l => l.Is(Events.DrainCompleted)).Text, StringComparison.Ordinal);
    }

    /// <summary>With the default turned off the app owns its WebSockets: the drain leaves them open until DrainTimeout aborts them.</summary>
    [Fact]
    public async Task CloseLongLivedConnectionsOff_WebSocketLeftOpen_AbortedAtDrainTimeout()
    {
        using var scope = new TestScope();
        var config = scope.Config()
            .With("ZeroDowntime__CloseLongLivedConnections", "false")
            .With("ZeroDowntime__DrainTimeout", "00:00:03")
            .With("ZeroDowntime__IdleConnectionGracePeriod", "00:00:01");
        await using var v1 = await StartFirstAsync("v1", config, output);
        using var limit = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        using var socket = new ClientWebSocket();
        await socket.ConnectAsync(new Uri($"ws://127.0.0.1:{scope.Port}/ws"), limit.Token);
        Assert.Equal("hello", await EchoAsync(socket, "hello", limit.Token));
        var close = ReceiveCloseAsync(socket, limit.Token);

        await using var v2 = SampleApp.Start("v2", config, output);
        await v2.WaitForEventAsync(Events.Committed);
        var committed = Stopwatch.StartNew();
        string status = await close;
        var endedAt = committed.Elapsed;
        Assert.Equal(0, await v1.WaitForExitAsync(TimeSpan.FromSeconds(60)));
        output.WriteLine($"with the option off the WebSocket ended {endedAt.TotalMilliseconds:0} ms after the commit: {status}");
        Assert.StartsWith("error", status, StringComparison.Ordinal);
        Assert.True(endedAt > TimeSpan.FromSeconds(2.5), $"the WebSocket ended {endedAt} after the commit, before DrainTimeout (3 s)");
        Assert.DoesNotContain(v1.Entries, l => l.Is(Events.LongLivedClosing));
        Assert.Contains("(1 connection(s) aborted", v1.Entries.Single(l => l.Is(Events.DrainCompleted)).Text, StringComparison.Ordinal);
    }

    /// <summary>Waits until every client is served by <paramref name="newest"/> and has had three more echoes answered there.</summary>
    private static async Task AllAnswerAsync(IReadOnlyList<EchoHubClient> clients, SampleApp newest, CancellationToken cancellationToken)
    {
        await Task.WhenAll(clients.Select(async client =>
        {
            while (client.State != HubConnectionState.Connected || await PidOrZeroAsync(client, cancellationToken) != newest.Pid)
            {
                await Task.Delay(50, cancellationToken);
            }
        }));
        var answered = clients.Select(c => c.Answered).ToArray();
        await Until.TrueAsync(() => clients.Select((c, i) => c.Answered >= answered[i] + 3).All(b => b), $"three more echoes from each client on {newest.Name}");
    }

    private static async Task<int> PidOrZeroAsync(EchoHubClient client, CancellationToken cancellationToken)
    {
        try
        {
            return await client.PidAsync(cancellationToken);
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            return 0; // the connection is between two processes
        }
    }

    internal static async Task<string> EchoAsync(ClientWebSocket socket, string message, CancellationToken cancellationToken)
    {
        await socket.SendAsync(Encoding.UTF8.GetBytes(message), WebSocketMessageType.Text, endOfMessage: true, cancellationToken);
        var buffer = new byte[4096];
        var received = await socket.ReceiveAsync(buffer.AsMemory(), cancellationToken);
        Assert.True(received.EndOfMessage);
        return Encoding.UTF8.GetString(buffer, 0, received.Count);
    }

    /// <summary>Receives until the server closes; answers its close frame as a browser does. "error: ..." for a reset.</summary>
    internal static async Task<string> ReceiveCloseAsync(ClientWebSocket socket, CancellationToken cancellationToken)
    {
        var buffer = new byte[4096];
        try
        {
            while (true)
            {
                var received = await socket.ReceiveAsync(buffer.AsMemory(), cancellationToken);
                if (received.MessageType == WebSocketMessageType.Close)
                {
                    await socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "bye", cancellationToken);
                    return socket.CloseStatus?.ToString() ?? "no status";
                }
            }
        }
        catch (WebSocketException ex)
        {
            return $"error: {ex.WebSocketErrorCode} {ex.Message}";
        }
    }

    /// <summary>
    /// Reads <c>/sse?ms=100</c> (with <c>Last-Event-ID</c> when given) until <paramref name="untilCount"/> events are in
    /// <paramref name="ids"/> or the stream ends; Ended is null when it stopped by itself, "end of stream" for a clean
    /// end, or the error.
    /// </summary>
    private static async Task<(string? Ended, int Read)> ReadEventsAsync(HttpClient client, string? lastEventId, List<long> ids, List<string> pids, int untilCount, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "/sse?ms=100");
        request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("text/event-stream"));
        if (lastEventId is not null)
        {
            request.Headers.Add("Last-Event-ID", lastEventId);
        }

        using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
        response.EnsureSuccessStatusCode();
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cancellationToken));
        int read = 0;
        try
        {
            while (ids.Count < untilCount)
            {
                string? line = await reader.ReadLineAsync(cancellationToken);
                if (line is null)
                {
                    return ("end of stream", read);
                }

                if (line.StartsWith("id: ", StringComparison.Ordinal))
                {
                    lock (ids)
                    {
                        ids.Add(long.Parse(line.AsSpan(4), CultureInfo.InvariantCulture));
                    }

                    read++;
                }
                else if (line.StartsWith("data: ", StringComparison.Ordinal))
                {
                    pids.Add(line[6..]);
                }
            }

            return (null, read);
        }
        catch (Exception ex) when (ex is IOException or HttpRequestException)
        {
            return ($"error: {ex.GetType().Name}: {ex.Message}", read);
        }
    }
}
