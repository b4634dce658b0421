using System.Diagnostics.Metrics;
using System.Net.Sockets;
using ZeroDowntime.Hosting.Diagnostics;
using ZeroDowntime.Hosting.Handoff;
using ZeroDowntime.Hosting.Interop;
using ZeroDowntime.Hosting.Protocol;
using ZeroDowntime.Hosting.Tests.Infrastructure;
using ZeroDowntime.Hosting.Upgrade;

namespace ZeroDowntime.Hosting.Tests.Unit;

/// <summary>
/// The upgrade's deadline, in process: the real coordinator serving a real handoff socket on a fake clock, asked by
/// <c>zerodowntime upgrade</c>'s client, and real successors started by the real launcher through
/// <c>Upgrade:Command</c> (<c>sleep</c>, <c>exit</c>, or a small Python program that greets when the test says so):
/// stopping a child needs a real process, and its greeting is recognised by the kernel's pid of the connection.
/// </summary>
public sealed class UpgradeRunnerTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(10);

    /// <summary>A HandoffTimeout that no other timer of an idle coordinator has.</summary>
    private static readonly TimeSpan HandoffTimeout = TimeSpan.FromSeconds(17);

    [Fact]
    public async Task Upgrade_SuccessorNeverGreets_StoppedAtHandoffTimeout_FailsWithTheReason_SlotIsFreeForTheNext()
    {
        await using var process = new InProcessCoordinator(handoffTimeout: HandoffTimeout);
        process.Options.Upgrade.Command = "exec sleep 3600";
        await process.StartAloneAsync();

        // This process's meter only (other test classes run hosts meanwhile); the outcome is counted once, where the upgrade ends.
        var upgrades = new System.Collections.Concurrent.ConcurrentQueue<(string? Unit, string? Outcome)>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == ZeroDowntimeMetrics.MeterName && instrument.Name == "zerodowntime.upgrades" && ReferenceEquals(instrument.Meter.Scope, process.MeterFactory))
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((instrument, _, tags, _) =>
            upgrades.Enqueue((instrument.Unit, tags.ToArray().FirstOrDefault(t => t.Key == ZeroDowntimeMetrics.OutcomeTag).Value as string)));
        listener.Start();

        var started = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
        var upgrade = HandoffControlClient.UpgradeAsync(process.SocketPath, Bound, started.SetResult);
        using var child = new Child(await started.Task.WaitAsync(Bound));
        int pid = child.Pid;
        Assert.True(IsAlive(pid), "the successor runs");

        // The deadline is measured from the launch on the process's clock: one tick before it, nothing happens.
        process.Time.Advance(HandoffTimeout - TimeSpan.FromMilliseconds(1));
        Assert.True(IsAlive(pid), "stopped before its HandoffTimeout");
        process.Time.Advance(TimeSpan.FromMilliseconds(1));

        var result = await upgrade;
        Assert.Equal(UpgradeOutcome.Failed, result.Outcome);
        Assert.Equal(pid, result.SuccessorPid);
        Assert.Contains($"the successor pid {pid} did not greet within HandoffTimeout ({HandoffTimeout}); stopped it", result.Reason, StringComparison.Ordinal);
        Assert.Equal(128 + Posix.SIGTERM, result.ExitCode);
        Assert.False(Directory.Exists($"/proc/{pid}"), "the child is gone and reaped (no zombie)");
        Assert.Single(process.Logger.Named("UpgradeSuccessorNotGreeting"));
        Assert.Empty(process.Logger.Named("UpgradeSuccessorKilled"));
        var failed = Assert.Single(process.Logger.Named("UpgradeFailed"));
        Assert.Contains("did not greet", failed.Message, StringComparison.Ordinal);
        Assert.Equal(ProcessRole.Owner, process.Coordinator.Role);
        Assert.Contains(("{upgrade}", "failed"), upgrades);

        // The slot is free: the next upgrade starts (and ends: this child exits at once).
        process.Options.Upgrade.Command = "exit 0";
        var next = await HandoffControlClient.UpgradeAsync(process.SocketPath, Bound);
        Assert.NotEqual(UpgradeOutcome.Refused, next.Outcome);
        Assert.NotEqual(pid, next.SuccessorPid);
    }

    [Fact]
    public async Task Upgrade_SuccessorIgnoresSigterm_KilledAfterTheGrace_FailsWithTheReason()
    {
        await using var process = new InProcessCoordinator(handoffTimeout: HandoffTimeout);

        // An ignored signal stays ignored across exec: the pid that was started is sleep itself, deaf to SIGTERM.
        process.Options.Upgrade.Command = "trap '' TERM; exec sleep 3600";
        await process.StartAloneAsync();

        var started = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
        var upgrade = HandoffControlClient.UpgradeAsync(process.SocketPath, Bound, started.SetResult);
        using var child = new Child(await started.Task.WaitAsync(Bound));
        int pid = child.Pid;
        await Until.TrueAsync(() => IgnoresSigterm(pid), "the child's shell to ignore SIGTERM and exec sleep");
        process.Time.Advance(HandoffTimeout);
        await process.Logger.WaitForAsync(e => e.EventId.Name == "UpgradeSuccessorNotGreeting", Bound);

        await process.Time.WaitForTimerAsync(UpgradeRunner.StopGrace, Bound);
        Assert.True(IsAlive(pid), "SIGTERM is ignored: the child runs until the grace is over");
        Assert.False(upgrade.IsCompleted, "the upgrade ends once the child is gone");
        process.Time.Advance(UpgradeRunner.StopGrace);

        var result = await upgrade;
        Assert.Equal(UpgradeOutcome.Failed, result.Outcome);
        Assert.Contains($"the successor pid {pid} did not greet within HandoffTimeout", result.Reason, StringComparison.Ordinal);
        Assert.Equal(128 + Posix.SIGKILL, result.ExitCode);
        Assert.False(Directory.Exists($"/proc/{pid}"), "the child is gone and reaped (no zombie)");
        Assert.Single(process.Logger.Named("UpgradeSuccessorKilled"));
        Assert.Equal(ProcessRole.Owner, process.Coordinator.Role);
    }

    [Fact]
    public async Task Upgrade_SuccessorExitsBeforeGreeting_FailsWithItsExitCode_NothingIsStopped()
    {
        await using var process = new InProcessCoordinator(handoffTimeout: HandoffTimeout);
        process.Options.Upgrade.Command = "exit 3";
        await process.StartAloneAsync();

        var result = await HandoffControlClient.UpgradeAsync(process.SocketPath, Bound);

        Assert.Equal(UpgradeOutcome.Failed, result.Outcome);
        Assert.Equal(3, result.ExitCode);
        Assert.Contains("exited with code 3 before its handoff ended", result.Reason, StringComparison.Ordinal);
        process.Time.Advance(HandoffTimeout);
        Assert.Empty(process.Logger.Named("UpgradeSuccessorNotGreeting"));

        var next = await HandoffControlClient.UpgradeAsync(process.SocketPath, Bound);
        Assert.Equal(UpgradeOutcome.Failed, next.Outcome);
        Assert.NotEqual(result.SuccessorPid, next.SuccessorPid);
    }

    /// <summary>
    /// A child that greeted before the upgrade's deadline belongs to its handoff session, whose own HandoffTimeout
    /// runs from the greeting: the upgrade's deadline passes without touching it, and the handoff commits.
    /// </summary>
    [Fact]
    public async Task Upgrade_SuccessorGreetsInTime_NotStoppedAtTheUpgradeDeadline_CommitsLater()
    {
        await using var process = new InProcessCoordinator(handoffTimeout: HandoffTimeout);
        using var relay = new GreetingRelay();
        process.Options.Upgrade.Command = relay.Command(process.SocketPath);
        await process.StartAloneAsync();
        var started = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
        var upgrade = HandoffControlClient.UpgradeAsync(process.SocketPath, TimeSpan.FromSeconds(30), started.SetResult);
        using var child = new Child(await started.Task.WaitAsync(Bound));
        int pid = child.Pid;

        // Half the timeout passes before the child connects and greets: the upgrade's deadline (from the launch)
        // then comes before the session's (from the greeting).
        await relay.AcceptAsync();
        process.Time.Advance(HandoffTimeout / 2);
        using var successor = await relay.ConnectAsync();
        successor.Send(new HelloMessage(HandoffProtocol.Version, pid, process.Options.ApplicationId!));
        Assert.IsType<WelcomeMessage>(await successor.ReadAsync(Bound, CancellationToken.None));
        Assert.Equal(ProcessRole.HandingOver, process.Coordinator.Role);

        process.Time.Advance(HandoffTimeout / 2);
        Assert.True(IsAlive(pid), "a child that greeted is governed by its handoff session");
        Assert.Empty(process.Logger.Named("UpgradeSuccessorNotGreeting"));
        Assert.False(upgrade.IsCompleted);

        successor.Send(new ReadyMessage());
        Assert.IsType<CommittedMessage>(await successor.ReadAsync(Bound, CancellationToken.None));
        var result = await upgrade;
        Assert.Equal(UpgradeOutcome.Committed, result.Outcome);
        Assert.Equal(pid, result.SuccessorPid);
        Assert.True(IsAlive(pid));
    }

    /// <summary>A successor started by the process under test: killed when the test ends, whatever the outcome.</summary>
    private sealed record Child(int Pid) : IDisposable
    {
        public void Dispose()
        {
            if (IsAlive(Pid))
            {
                Posix.Kill(Pid, Posix.SIGKILL);
            }
        }
    }

    /// <summary>True once the process runs <c>sleep</c> (the shell has exec'd) with SIGTERM ignored (SigIgn bit 15).</summary>
    private static bool IgnoresSigterm(int pid)
    {
        try
        {
            string? ignored = File.ReadLines($"/proc/{pid}/status").FirstOrDefault(l => l.StartsWith("SigIgn:", StringComparison.Ordinal));
            return File.ReadAllText($"/proc/{pid}/comm").Trim() == "sleep" && ignored is not null
                && (ulong.Parse(ignored["SigIgn:".Length..].Trim(), System.Globalization.NumberStyles.HexNumber, System.Globalization.CultureInfo.InvariantCulture) & (1UL << (Posix.SIGTERM - 1))) != 0;
        }
        catch (IOException)
        {
            return false;
        }
    }

    private static bool IsAlive(int pid)
    {
        try
        {
            string stat = File.ReadAllText($"/proc/{pid}/stat");
            return stat[stat.LastIndexOf(')') + 2] is not ('Z' or 'X');
        }
        catch (IOException)
        {
            return false;
        }
    }

    /// <summary>
    /// A successor that the test speaks for: a Python child connects to the handoff socket when the test says so and
    /// passes the connection to the test (SCM_RIGHTS), so that the running process sees the child's pid on it.
    /// </summary>
    private sealed class GreetingRelay : IDisposable
    {
        private const string Script = """
            import socket, sys, time
            test = socket.socket(socket.AF_UNIX); test.connect(sys.argv[1])
            test.recv(1)
            handoff = socket.socket(socket.AF_UNIX); handoff.connect(sys.argv[2])
            socket.send_fds(test, [b"x"], [handoff.fileno()])
            time.sleep(3600)
            """;

        private readonly string _directory = Directory.CreateTempSubdirectory("zd-relay-").FullName;
        private readonly Socket _listener = new(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        private Socket? _child;

        public GreetingRelay()
        {
            File.WriteAllText(Path.Combine(_directory, "greet.py"), Script);
            _listener.Bind(new UnixDomainSocketEndPoint(Path.Combine(_directory, "test.sock")));
            _listener.Listen(1);
        }

        public string Command(string handoffSocket) =>
            $"exec /usr/bin/python3 '{Path.Combine(_directory, "greet.py")}' '{Path.Combine(_directory, "test.sock")}' '{handoffSocket}'";

        /// <summary>Waits until the child has started and called in.</summary>
        public async Task AcceptAsync()
        {
            using var cts = new CancellationTokenSource(Bound);
            _child = await _listener.AcceptAsync(cts.Token);
        }

        /// <summary>Lets the child connect to the handoff socket and returns its connection.</summary>
        public async Task<HandoffChannel> ConnectAsync()
        {
            var child = _child ?? throw new InvalidOperationException("AcceptAsync first");
            child.Send([1]);
            using var cts = new CancellationTokenSource(Bound);
            await child.ReceiveAsync(new byte[1], SocketFlags.Peek, cts.Token);
            var fds = new List<int>();
            var buffer = new byte[1];
            Assert.Equal(ReceiveStatus.Data, FdPassing.Receive(child, buffer, fds).Status);
            int fd = Assert.Single(fds);
            return new HandoffChannel(new Socket(new SafeSocketHandle(fd, ownsHandle: true)));
        }

        public void Dispose()
        {
            _child?.Dispose();
            _listener.Dispose();
            Directory.Delete(_directory, recursive: true);
        }
    }
}
