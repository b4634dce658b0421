using System.Collections.Concurrent;
using System.Globalization;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Xunit.Abstractions;
using ZeroDowntime.Hosting.FunctionalTests.Infrastructure;
using ZeroDowntime.Hosting.Protocol;
using ZeroDowntime.Hosting.Tests.Infrastructure;
using static ZeroDowntime.Hosting.FunctionalTests.Infrastructure.HandoffSteps;

namespace ZeroDowntime.Hosting.FunctionalTests;

/// <summary>
/// The successor's own ends (its exit codes, a frozen or lost peer on either side) and the app-facing lifetime, each
/// against a real process or a hand-driven peer on the handoff socket.
/// </summary>
public sealed class SuccessorSideTests(ITestOutputHelper output)
{
    [Fact]
    public async Task VersionRefusedByPredecessor_SuccessorExits76_NamingBothVersions()
    {
        using var scope = new TestScope();
        await using var fake = FakePredecessor.Start(scope.SocketPath, (_, channel) =>
        {
            channel.Send(new RefusedMessage(RefusalReason.VersionMismatch, 7, "protocol version mismatch: this process speaks v7, the successor speaks v1"));
            return Task.CompletedTask;
        });
        await using var v2 = SampleApp.Start("v2", scope.Config(), output);
        Assert.Equal(ZeroDowntimeExitCodes.ProtocolVersionMismatch, await v2.WaitForExitAsync());
        Assert.Contains(v2.Entries, l => l.Is(Events.ProtocolVersionMismatch) && l.Contains("v7", StringComparison.Ordinal) && l.Contains($"v{HandoffProtocol.Version}", StringComparison.Ordinal));
        Assert.DoesNotContain(v2.Entries, l => l.Is(Events.ListenerBound));
    }

    [Fact]
    public async Task AlreadyHandedOver_EveryTime_SuccessorRetriesTwentyTimesThenExits75()
    {
        using var scope = new TestScope();
        await using var fake = FakePredecessor.Start(scope.SocketPath, (_, channel) =>
        {
            channel.Send(new RefusedMessage(RefusalReason.AlreadyHandedOver, HandoffProtocol.Version, "pid 1 has already handed over and is draining"));
            return Task.CompletedTask;
        });
        await using var v2 = SampleApp.Start("v2", scope.Config(), output);
        Assert.Equal(ZeroDowntimeExitCodes.RefusedByPredecessor, await v2.WaitForExitAsync(TimeSpan.FromSeconds(60)));
        output.WriteLine($"{fake.Connections} greetings before giving up");
        Assert.Equal(20, fake.Greetings.Count);
        Assert.Contains(v2.Lines, l => l.Contains("kept saying it had handed over", StringComparison.Ordinal));
        Assert.DoesNotContain(v2.Entries, l => l.Is(Events.ListenerBound));
    }

    [Fact]
    public async Task AlreadyHandedOver_ThenPathFree_SuccessorRetriesAndStarts()
    {
        using var scope = new TestScope();
        var thirdRefusal = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var fake = FakePredecessor.Start(scope.SocketPath, (n, channel) =>
        {
            channel.Send(new RefusedMessage(RefusalReason.AlreadyHandedOver, HandoffProtocol.Version, "already handed over"));
            if (n == 3)
            {
                thirdRefusal.TrySetResult();
            }

            return Task.CompletedTask;
        });
        await using var v2 = SampleApp.Start("v2", scope.Config(), output);
        try
        {
            await thirdRefusal.Task.WaitAsync(TimeSpan.FromSeconds(30));
        }
        finally
        {
            await fake.DisposeAsync(); // removes the socket file: the next try finds no running process
        }

        await v2.WaitForEventAsync(Events.NoPredecessor);
        await v2.WaitForEventAsync(Events.ServingHandoffSocket);
        output.WriteLine($"{fake.Greetings.Count} refused greetings before the path was free");
        Assert.InRange(fake.Greetings.Count, 3, 19);
        using var client = new HttpClient();
        Assert.Equal(v2.Pid.ToString(CultureInfo.InvariantCulture), await client.GetStringAsync(new Uri(scope.BaseUri, "/pid")));
    }

    [Fact]
    public async Task FrozenPredecessor_SuccessorExits77AfterHandoffTimeoutPlus5s_NeverSaysReady()
    {
        using var scope = new TestScope();
        string notifyPath = Path.Combine(scope.Directory, "notify.sock");
        using var systemd = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        systemd.Bind(new UnixDomainSocketEndPoint(notifyPath));
        var datagrams = new ConcurrentQueue<string>();
        using var stopReceiving = new CancellationTokenSource();
        var receiver = ReceiveAsync(systemd, datagrams, stopReceiving.Token);

        var config = scope.Config().With("NOTIFY_SOCKET", notifyPath);
        await using var v1 = await StartFirstAsync("v1", config, output);

        // v1 sends the listeners, then freezes before it can read v2's Ready.
        await using var v2 = SampleApp.Start("v2", config.With("ZeroDowntime__HandoffTimeout", "00:00:03").WithFaultPause("after-receive"), output);
        await v2.WaitForEventAsync(Events.FaultInjectionPause);
        v1.Signal(Posix.SIGSTOP);
        try
        {
            v2.Signal(Posix.SIGCONT);
            var ready = await v2.WaitForEventAsync(Events.SentReady);
            Assert.Equal(ZeroDowntimeExitCodes.HandoffAbandoned, await v2.WaitForExitAsync(TimeSpan.FromSeconds(40)));
            string abandoned = v2.Entries.First(l => l.Is(Events.HandoffAbandoned));
            var waited = Stamp(abandoned) - Stamp(ready);
            output.WriteLine($"v2 gave up {waited.TotalMilliseconds:0} ms after its Ready (HandoffTimeout 3 s + 5 s)");
            Assert.True(waited >= TimeSpan.FromSeconds(7.9), $"v2 gave up after {waited}, before HandoffTimeout + 5 s");
            Assert.Contains("did not answer within", abandoned, StringComparison.Ordinal);

            // v2 never became the main process: it said READY=1 never.
            await FlushAsync(notifyPath, datagrams);
            Assert.DoesNotContain(datagrams, d => d.Contains($"MAINPID={v2.Pid}", StringComparison.Ordinal));
        }
        finally
        {
            v1.Signal(Posix.SIGCONT);
            await stopReceiving.CancelAsync();
            await receiver;
        }
    }

    [Fact]
    public async Task SuccessorKilledAfterCommit_OldSeesEndWithoutStopping_RevokesAndServesAgain()
    {
        using var scope = new TestScope();
        var config = scope.Config().With("ZeroDowntime__IdleConnectionGracePeriod", "00:00:20");
        await using var v1 = await StartFirstAsync("v1", config, output);
        using var idle = new HttpClient();
        Assert.Equal(v1.Pid.ToString(CultureInfo.InvariantCulture), await idle.GetStringAsync(new Uri(scope.BaseUri, "/pid")));

        await using var v2 = SampleApp.Start("v2", config, output);
        await v2.WaitForEventAsync(Events.ServingHandoffSocket);
        v2.Signal(Posix.SIGKILL);
        await v2.WaitForExitAsync();

        var lost = await v1.WaitForEventAsync(Events.SuccessorLost, TimeSpan.FromSeconds(10));
        Assert.Contains("closed the handoff connection without stopping in order", lost, StringComparison.Ordinal);
        await v1.WaitForEventCountAsync(Events.ServingHandoffSocket, 2);
        await using (var load = HttpLoad.Start(scope.BaseUri, workers: 4, newConnectionPerRequest: true))
        {
            await load.WaitForMoreSuccessesAsync(100);
            await load.StopAsync();
            load.AssertNoFailures();
            Assert.Equal([$"Hello from ZeroDowntime.Hosting sample, pid {v1.Pid:D7}\n"], load.ResponsesByBody.Keys);
        }

        // The grace period that counts is v1's (20 s): close the idle connection so that v1's next drain is short.
        idle.Dispose();
        var (v3, oldExit) = await HandOverAsync(v1, "v3", config, output);
        await using var _ = v3;
        Assert.Equal(0, oldExit);
    }

    [Fact]
    public async Task CommittedSuccessorGivenSigterm_SaysStopping_OldKeepsDrainingAndExitsZero()
    {
        using var scope = new TestScope();
        var config = scope.Config().With("ZeroDowntime__IdleConnectionGracePeriod", "00:00:08");
        await using var v1 = await StartFirstAsync("v1", config, output);
        using var idle = new HttpClient();
        Assert.Equal(v1.Pid.ToString(CultureInfo.InvariantCulture), await idle.GetStringAsync(new Uri(scope.BaseUri, "/pid")));

        await using var v2 = SampleApp.Start("v2", config, output);
        await v2.WaitForEventAsync(Events.ServingHandoffSocket);
        int v1Lines = v1.LineCount;
        v2.Signal(Posix.SIGTERM);
        Assert.Equal(0, await v2.WaitForExitAsync());
        Assert.False(v1.HasExited, "v1 drains its idle connection for 8 s");

        Assert.Equal(0, await v1.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        var after = v1.Entries.Skip(v1Lines).ToList();
        Assert.DoesNotContain(v1.Entries, l => l.Is(Events.SuccessorLost));
        Assert.DoesNotContain(after, l => l.Is(Events.Accepting) || l.Is(Events.ServingHandoffSocket));
        Assert.Contains(after, l => l.Is(Events.DrainCompleted));
    }

    [Fact]
    public async Task ZeroDowntimeLifetime_RealHandoff_DrainingCancelledWithHasHandedOverTrue()
    {
        using var scope = new TestScope();
        await using var v1 = InProcessHost.Create(scope.SocketPath, scope.Port, output, "v1");
        await v1.App.StartAsync();
        var lifetime = v1.App.Services.GetRequiredService<IZeroDowntimeLifetime>();
        var atDrain = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
        using var registration = lifetime.Draining.Register(() => atDrain.TrySetResult(lifetime.HasHandedOver));
        var stopping = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var stoppingRegistration = v1.App.Lifetime.ApplicationStopping.Register(() => stopping.TrySetResult());
        await v1.WaitForEventAsync(Events.ServingHandoffSocket);
        Assert.False(lifetime.HasHandedOver);
        Assert.False(lifetime.Draining.IsCancellationRequested);

        await using var v2 = SampleApp.Start("v2", scope.Config(), output);
        await v2.WaitForEventAsync(Events.Committed);
        Assert.True(await atDrain.Task.WaitAsync(TimeSpan.FromSeconds(30)), "HasHandedOver must be true when Draining is cancelled");
        Assert.True(lifetime.HasHandedOver);

        // The drain ends (no connection) and the library stops the host.
        await stopping.Task.WaitAsync(TimeSpan.FromSeconds(30));
        await v1.App.StopAsync();
        Assert.True(lifetime.HasHandedOver);
        Assert.True(lifetime.Draining.IsCancellationRequested);
        await v2.WaitForEventAsync(Events.PredecessorExited);
    }

    private static TimeSpan Stamp(string line) =>
        TimeSpan.ParseExact(line[..12], @"hh\:mm\:ss\.fff", CultureInfo.InvariantCulture);

    private static async Task ReceiveAsync(Socket socket, ConcurrentQueue<string> datagrams, CancellationToken stop)
    {
        var buffer = new byte[4096];
        try
        {
            while (true)
            {
                int read = await socket.ReceiveAsync(buffer, SocketFlags.None, stop);
                datagrams.Enqueue(Encoding.UTF8.GetString(buffer, 0, read));
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    private static async Task FlushAsync(string notifyPath, ConcurrentQueue<string> datagrams)
    {
        string sentinel = $"TEST-SENTINEL {Guid.NewGuid():N}";
        using (var socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified))
        {
            socket.Connect(new UnixDomainSocketEndPoint(notifyPath));
            socket.Send(Encoding.UTF8.GetBytes(sentinel));
        }

        await Until.TrueAsync(() => datagrams.Contains(sentinel), "the sentinel datagram");
    }

    // Item 8: a successor stopped between Ready and Committed must tell its predecessor at once, from the host's
    // stopping step, not from the process-exit hook after the whole host shutdown: meanwhile nobody would accept.
    [Fact]
    public async Task SuccessorStoppedBetweenReadyAndCommitted_TellsPredecessorAtOnce_OldServesAgain()
    {
        using var scope = new TestScope();
        var config = scope.Config();
        await using var v1 = await StartFirstAsync("v1", config, output);
        using var client = new HttpClient { Timeout = TimeSpan.FromMinutes(1) };
        var v1Request = client.GetStringAsync(new Uri(scope.BaseUri, "/delay/20000")); // keeps v1 draining
        await v1.WaitForEventAsync(Events.FirstConnectionAccepted);
        await using var v2 = SampleApp.Start("v2", config.WithFaultPause("after-ready"), output);
        await v2.WaitForEventAsync(Events.FaultInjectionPause);
        await v1.WaitForEventAsync(Events.DrainStarted); // v1 has closed its gate and sent Committed

        // A request that only v2 can take now. (Should v2's Kestrel close that connection before it has read the
        // request, HttpClient retries it on a new one, which v1 answers once it serves again: either way it succeeds.)
        var inFlight = client.GetStringAsync(new Uri(scope.BaseUri, "/delay/3000"));
        await v2.WaitForEventAsync(Events.FirstConnectionAccepted);

        v2.Signal(Posix.SIGTERM);
        var lost = await v1.WaitForEventAsync(Events.SuccessorLost);
        Assert.Contains("before the commit", lost, StringComparison.Ordinal); // from v2's stopping step, not its exit
        Assert.Equal(v1.Pid.ToString(CultureInfo.InvariantCulture), await client.GetStringAsync(new Uri(scope.BaseUri, "/pid")));
        Assert.Contains("delayed 3000 ms", await inFlight, StringComparison.Ordinal);

        await v2.WaitForExitAsync();
        Assert.DoesNotContain(v2.Entries, l => l.Is(Events.Committed));
        Assert.Contains("delayed 20000 ms", await v1Request, StringComparison.Ordinal);
        Assert.False(v1.HasExited);
    }
}
