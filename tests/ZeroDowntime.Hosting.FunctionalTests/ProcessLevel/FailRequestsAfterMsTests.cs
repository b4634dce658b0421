using System.Globalization;
using System.Net;
using System.Text;
using Xunit.Abstractions;
using ZeroDowntime.Hosting.FunctionalTests.Infrastructure;
using ZeroDowntime.Hosting.Tests.Infrastructure;
using static ZeroDowntime.Hosting.FunctionalTests.Infrastructure.HandoffSteps;

namespace ZeroDowntime.Hosting.FunctionalTests;

/// <summary>
/// The sample's key <c>Sample:FailRequestsAfterMs</c> (its contract, README; issue 20's release that breaks after its
/// commit): N ms after the process took over, <c>GET /</c> answers 500 with a body as long as the 200 one (52 bytes),
/// warm-up requests apart; every other endpoint answers as before; only the process started with the key fails.
/// </summary>
public sealed class FailRequestsAfterMsTests(ITestOutputHelper output)
{
    [Fact]
    public async Task FirstStart_With300Ms_RootAnswers200Then500Of52Bytes_PidStays200_AbCountsNon2xxNotFailed()
    {
        using var scope = new TestScope();
        // The first request is sent before the process accepts: connected as soon as the port is bound, its bytes wait
        // in the kernel until the process accepts, which it does only after it took over, so it is answered at once
        // then, however slow this test's own client is.
        await using var app = SampleApp.Start("v1", scope.Config("--Sample:FailRequestsAfterMs=300"), output);
        using var early = await ConnectWhenBoundAsync(scope.Port, app);
        var first = await early.GetAsync("/", TimeSpan.FromSeconds(30));
        output.WriteLine($"first answer at {DateTimeOffset.UtcNow:HH:mm:ss.fff}: {first.Status} {first.Body.TrimEnd()}");
        Assert.Equal("300", (await app.WaitForEventAsync(SampleEvents.FailRequestsPlanned))["Ms"]);
        Assert.Equal(200, first.Status);

        // Then one client, one request at a time (its answers in a total order), until some 500s came.
        await using var answers = RootAnswers.Start(scope.BaseUri);
        var failing = await app.WaitForEventAsync(SampleEvents.FailingRequests);
        Assert.Equal("FirstStart", failing["Reason"]);
        await answers.WaitForAsync(a => a.Status == 500, "a 500 on /");
        await answers.WaitForMoreAsync(20);
        await answers.StopAsync();
        output.WriteLine($"/: {answers}");

        var all = answers.Answers;
        Assert.True(answers.Failed == 0, $"{answers.Failed} requests failed: {string.Join(Environment.NewLine, answers.Failures)}");
        AssertBodies([new RootAnswers.Answer(DateTimeOffset.MinValue, first.Status, first.Body), .. all], app.Pid);
        int firstFailure = FindFirst500(all);
        output.WriteLine($"{firstFailure} answer(s) 200 after the first, then 500 from {all[firstFailure]}");
        Assert.All(all.Skip(firstFailure), a => Assert.Equal(500, a.Status)); // failing for good

        // Everything else answers as before, and Apache Bench counts the 500s as non-2xx, not as length failures.
        using var client = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        using (var pid = await client.GetAsync(new Uri(scope.BaseUri, "/pid")))
        {
            Assert.Equal(HttpStatusCode.OK, pid.StatusCode);
            Assert.Equal(app.Pid.ToString(CultureInfo.InvariantCulture), await pid.Content.ReadAsStringAsync());
        }

        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync(new Uri(scope.BaseUri, "/health/live"))).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync(new Uri(scope.BaseUri, "/log/7"))).StatusCode);
        var ab = LoadTool.AbResult.Parse(await LoadTool.RunAsync(TimeSpan.FromSeconds(30), "ab", "-r", "-c", "4", "-n", "200", "-s", "30", new Uri(scope.BaseUri, "/").ToString()));
        output.WriteLine($"ab -n 200 on the failing release: {ab}");
        Assert.Equal(new LoadTool.AbResult(200, 0, 0, 0, 0, 0, 200), ab);
        Assert.Single(app.EventsOf(SampleEvents.FailRequestsPlanned));
        Assert.Single(app.EventsOf(SampleEvents.FailingRequests));
    }

    /// <summary>
    /// Only the new release has the key: the old answers 200 to the end of its drain, the new one 200 from its commit
    /// until N ms after it, then 500; its warm-up requests (before the commit) all succeeded.
    /// </summary>
    [Fact]
    public async Task Handoff_OnlyTheNewReleaseHasTheKey_OldAnswers200_NewFailsFromItsCommitPlusN()
    {
        const int afterMs = 1000;
        using var scope = new TestScope();
        await using var v1 = await StartFirstAsync("v1", scope.Config(), output);
        Assert.Empty(v1.EventsOf(SampleEvents.FailRequestsPlanned));
        await using var answers = RootAnswers.Start(scope.BaseUri);
        await answers.WaitForMoreAsync(20);

        var (v2, oldExit) = await HandOverAsync(v1, "v2", scope.Config($"--Sample:FailRequestsAfterMs={afterMs}"), output);
        await using var _ = v2;
        Assert.Equal(0, oldExit);
        var committed = await v2.WaitForEventAsync(Events.Committed);
        var failing = await v2.WaitForEventAsync(SampleEvents.FailingRequests);
        Assert.Equal("PredecessorReleased", failing["Reason"]);
        await answers.WaitForMoreAsync(20);
        await answers.StopAsync();
        output.WriteLine($"/: {answers}");

        var all = answers.Answers;
        Assert.True(answers.Failed == 0, $"{answers.Failed} requests failed: {string.Join(Environment.NewLine, answers.Failures)}");
        AssertBodies(all, v1.Pid, v2.Pid);
        Assert.All(all.Where(a => a.Pid == v1.Pid), a => Assert.Equal(200, a.Status));
        var fromNew = all.Where(a => a.Pid == v2.Pid).ToList();
        int firstFailure = FindFirst500(fromNew);
        Assert.All(fromNew.Skip(firstFailure), a => Assert.Equal(500, a.Status));

        // The takeover (the participants' acquire) comes after the Committed line: the first 500 is at least N ms after it.
        var commitAt = committed.Timestamp ?? throw new InvalidOperationException("Committed has no timestamp: " + committed);
        double sinceCommit = (fromNew[firstFailure].At - commitAt).TotalMilliseconds;
        output.WriteLine($"v2 committed at {commitAt:HH:mm:ss.fff}: {firstFailure} answer(s) 200 from v2, then 500 from {fromNew[firstFailure].At:HH:mm:ss.fff}, " +
            $"{sinceCommit:0} ms after the commit (Sample:FailRequestsAfterMs={afterMs})");
        Assert.True(sinceCommit >= afterMs - 1, $"v2 failed {sinceCommit:0} ms after its commit, before {afterMs} ms");
        Assert.True(firstFailure > 0, $"v2's first answer was already a 500 ({sinceCommit:0} ms after its commit)");

        var warmup = await v2.WaitForEventAsync(Events.WarmupFinished);
        Assert.Equal("0", warmup["Failed"]);
        Assert.Empty(v2.EventsOf(Events.WarmupRequestFailed));
        using var client = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        Assert.Equal(v2.Pid.ToString(CultureInfo.InvariantCulture), await client.GetStringAsync(new Uri(scope.BaseUri, "/pid")));
    }

    /// <summary>Every body is 52 bytes and one of the two documented texts, naming one of <paramref name="pids"/>.</summary>
    private static void AssertBodies(IReadOnlyList<RootAnswers.Answer> all, params int[] pids)
    {
        Assert.NotEmpty(all);
        foreach (var answer in all)
        {
            Assert.Equal(RootAnswers.BodyBytes, Encoding.UTF8.GetByteCount(answer.Body));
            Assert.True(answer.Pid is { } pid && pids.Contains(pid), $"an answer from an unexpected process: {answer}");
            string padded = answer.Pid!.Value.ToString("D7", CultureInfo.InvariantCulture);
            Assert.Equal(answer.Status == 200 ? $"Hello from ZeroDowntime.Hosting sample, pid {padded}\n" : $"Failing on purpose: FailRequestsAfterMs pid {padded}\n", answer.Body);
            Assert.Contains(answer.Status, new[] { 200, 500 });
        }
    }

    /// <summary>A connection to the sample's port, made as soon as the port is bound (refused until then; bounded).</summary>
    private static async Task<RawHttpConnection> ConnectWhenBoundAsync(int port, SampleApp app)
    {
        using var limit = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        using var retry = new PeriodicTimer(TimeSpan.FromMilliseconds(5));
        while (true)
        {
            try
            {
                return await RawHttpConnection.ConnectAsync(port, limit.Token);
            }
            catch (System.Net.Sockets.SocketException ex) when (ex.SocketErrorCode == System.Net.Sockets.SocketError.ConnectionRefused && !app.HasExited)
            {
                await retry.WaitForNextTickAsync(limit.Token);
            }
        }
    }

    private static int FindFirst500(IReadOnlyList<RootAnswers.Answer> answers)
    {
        int first = answers.ToList().FindIndex(a => a.Status == 500);
        Assert.True(first >= 0, $"no 500 among {answers.Count} answers");
        return first;
    }
}
