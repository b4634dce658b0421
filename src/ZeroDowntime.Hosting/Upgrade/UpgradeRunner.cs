using System.Diagnostics;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using ZeroDowntime.Hosting.Diagnostics;
using ZeroDowntime.Hosting.Handoff;
using ZeroDowntime.Hosting.Interop;
using ZeroDowntime.Hosting.Logging;
using ZeroDowntime.Hosting.Protocol;
using ZeroDowntime.Hosting.Systemd;

namespace ZeroDowntime.Hosting.Upgrade;

/// <summary>
/// The running process starts its own successor (on <c>ZeroDowntime:Upgrade:Signal</c> or <c>zerodowntime upgrade</c>),
/// one at a time, and learns from the handoff session how it ends. An upgrade ends at the latest at
/// <c>HandoffTimeout</c> after the launch: a successor that has not greeted by then is stopped (SIGTERM, SIGKILL after
/// <see cref="StopGrace"/>); one that greeted is its handoff session's, whose own <c>HandoffTimeout</c> runs from the
/// greeting.
/// </summary>
internal sealed class UpgradeRunner : ISuccessorSessionObserver, IDisposable
{
    /// <summary>How long a successor that never greeted has between SIGTERM and SIGKILL.</summary>
    internal static readonly TimeSpan StopGrace = TimeSpan.FromSeconds(5);

    private readonly HandoffProcess _process;
    private readonly ZeroDowntimeOptions _options;
    private readonly NotifySocketClient _notifySocket;
    private readonly ZeroDowntimeMetrics _metrics;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly SuccessorLauncher _launcher;
    private readonly Lock _lock = new();
    private UpgradeRun? _upgrade;
    private UpgradeRun? _committed;
    private PosixSignalRegistration? _hangup;
    private PosixSignalRegistration? _upgradeSignal;

    public UpgradeRunner(HandoffProcess process, ZeroDowntimeOptions options, NotifySocketClient notifySocket, ZeroDowntimeMetrics metrics, ILogger logger, TimeProvider time)
    {
        _process = process;
        _options = options;
        _notifySocket = notifySocket;
        _metrics = metrics;
        _logger = logger;
        _time = time;
        _launcher = new SuccessorLauncher(options.Upgrade, notifySocket.SocketPath);
    }

    public void InstallSignals()
    {
        var signal = _options.Upgrade.Signal switch
        {
            ZeroDowntimeUpgradeSignal.SigHup => PosixSignal.SIGHUP,
            ZeroDowntimeUpgradeSignal.SigUsr2 => (PosixSignal)Libc.SIGUSR2,
            _ => (PosixSignal?)null,
        };

        // SIGHUP ends a .NET process by default; a closed terminal or an operator's "kill -HUP" must not take the
        // server down with no successor. When it is not the upgrade signal it is logged and ignored.
        _hangup = PosixSignalRegistration.Create(PosixSignal.SIGHUP, context =>
        {
            context.Cancel = true;
            if (signal == PosixSignal.SIGHUP)
            {
                OnSignal("SIGHUP");
            }
            else
            {
                _logger.HangupIgnored();
            }
        });

        if (signal == (PosixSignal)Libc.SIGUSR2)
        {
            _upgradeSignal = PosixSignalRegistration.Create((PosixSignal)Libc.SIGUSR2, context =>
            {
                context.Cancel = true;
                OnSignal("SIGUSR2");
            });
        }

        // Started with the upgrade signal ignored (nohup, or a parent that ignores it): the registration above is then
        // never called, and a "kill -HUP" would upgrade nothing, without a word. Say so once, at start.
        if (signal is { } upgradeSignal)
        {
            int number = upgradeSignal == PosixSignal.SIGHUP ? Libc.SIGHUP : Libc.SIGUSR2;
            if (Libc.IsSignalIgnored(number))
            {
                _logger.UpgradeSignalIgnoredFromStart(number == Libc.SIGHUP ? "SIGHUP" : "SIGUSR2");
            }
        }
    }

    public void Dispose()
    {
        _hangup?.Dispose();
        _upgradeSignal?.Dispose();
        lock (_lock)
        {
            _upgrade?.Deadline?.Dispose();
        }
    }

    /// <summary><c>zerodowntime upgrade</c>: start the successor, say its pid, and answer how the upgrade ended.</summary>
    public async Task AnswerRequestAsync(HandoffChannel channel, int clientPid)
    {
        var run = Start($"zerodowntime upgrade (pid {clientPid})", fromSignal: false, out string refusal);
        if (run is null)
        {
            channel.TrySend(new UpgradeResultMessage(UpgradeOutcome.Refused, 0, -1, HandoffProtocol.FitText(refusal), -1, -1));
            return;
        }

        channel.TrySend(new UpgradeStartedMessage(run.Pid));
        var result = await run.Result.Task;
        if (!channel.TrySend(result) || result.Outcome != UpgradeOutcome.Committed)
        {
            return;
        }

        // Then the probation: whether this process stands by (or None), and how it ended. An earlier tool has closed the
        // connection after the result and never reads these; the first send that fails ends the answer.
        while (await run.ProbationUpdates.Reader.WaitToReadAsync())
        {
            while (run.ProbationUpdates.Reader.TryRead(out var update))
            {
                if (!channel.TrySend(update) || update.Progress != ProbationProgress.Started)
                {
                    return;
                }
            }
        }
    }

    public void ProbationChanged(int pid, ProbationUpdateMessage update)
    {
        UpgradeRun? run;
        lock (_lock)
        {
            run = _committed is { } committed && committed.Pid == pid ? committed : null;
        }

        if (run is null)
        {
            return;
        }

        run.ProbationUpdates.Writer.TryWrite(update);
        if (update.Progress != ProbationProgress.Started)
        {
            run.ProbationUpdates.Writer.TryComplete();
        }
    }

    public void SuccessorReady(int pid) => Milestone(pid, committed: false);

    public Task SessionEndedAsync(int pid, UpgradeOutcome outcome, string reason)
    {
        if (outcome == UpgradeOutcome.Committed)
        {
            Milestone(pid, committed: true);
        }

        return FinishAsync(Of(pid), outcome, reason);
    }

    /// <summary>Milestones of the upgrade's successor, from when it was started.</summary>
    private void Milestone(int pid, bool committed)
    {
        if (Of(pid) is not { } run)
        {
            return;
        }

        long elapsed = (long)_time.GetElapsedTime(run.StartedAt).TotalMilliseconds;
        if (committed)
        {
            run.CommittedMilliseconds = elapsed;
        }
        else
        {
            run.ReadyMilliseconds = elapsed;
        }
    }

    private void OnSignal(string signal)
    {
        // sd_notify(3), Type=notify-reload: say that a reload runs, with the monotonic time, and READY=1 when it ended.
        _notifySocket.Reloading();
        if (Start(signal, fromSignal: true, out _) is null)
        {
            _notifySocket.Ready("Upgrade refused; serving");
        }
    }

    /// <summary>Starts the successor unless an upgrade or handoff runs, or this process no longer serves alone.</summary>
    private UpgradeRun? Start(string trigger, bool fromSignal, out string refusal)
    {
        lock (_lock)
        {
            var role = _process.Role;
            refusal = _upgrade is { } running ? $"an upgrade ({running.Trigger}, successor pid {running.Pid}) is still running"
                : role == ProcessRole.HandingOver ? $"a handoff to pid {_process.LatestSession?.SuccessorPid} is in progress"
                : role == ProcessRole.ShuttingDown ? $"pid {Environment.ProcessId} is shutting down"
                : role != ProcessRole.Owner ? $"pid {Environment.ProcessId} is not the sole server (it has handed over, or is still taking over)"
                : "";
            if (refusal.Length > 0)
            {
                _logger.UpgradeRefused(trigger, refusal);
                _metrics.Upgrade(HandoffTags.Refused);
                return null;
            }

            Process process;
            string commandLine;
            try
            {
                (process, commandLine) = _launcher.Start();
            }
            catch (Exception ex) when (ex is System.ComponentModel.Win32Exception or InvalidOperationException or IOException)
            {
                refusal = $"the successor could not be started: {ex.Message}";
                _logger.UpgradeRefused(trigger, refusal);
                _metrics.Upgrade(HandoffTags.Refused);
                return null;
            }

            // FromSignal is set before anything can end the run: a successor that fails at once still gets READY=1.
            var run = new UpgradeRun(process, trigger, _time.GetTimestamp(), _process.LatestSession) { FromSignal = fromSignal };
            _upgrade = run;
            _logger.UpgradeStarted(trigger, run.Pid, commandLine, _launcher.WorkingDirectory);

            // Measured on the process's clock from the launch: the README promises that an upgrade ends at the
            // process's HandoffTimeout, and a child that never greets would otherwise hold the slot for good.
            run.Deadline = _time.CreateTimer(_ => OnDeadline(run), null, _options.HandoffTimeout, Timeout.InfiniteTimeSpan);
            _ = BackgroundWork.Start("exit watch of the upgrade's successor", () => WatchExitAsync(run), _logger);
            return run;
        }
    }

    /// <summary>A successor that exits before its handoff ended (it failed to start, or never connected) ends the upgrade.</summary>
    private async Task WatchExitAsync(UpgradeRun run)
    {
        await run.Process.WaitForExitAsync(CancellationToken.None);
        run.ExitCode = run.Process.ExitCode;

        // A successor that got as far as its handoff said why it failed there (its Failed frame is read by the
        // handoff, which may come a moment after the exit is seen): that reason, not the bare exit, is the answer.
        if (_process.LatestSession?.SuccessorPid == run.Pid)
        {
            await Task.WhenAny(run.Result.Task, Task.Delay(PredecessorLink.ReadTimeout, _time, CancellationToken.None));
        }

        await FinishAsync(run, UpgradeOutcome.Failed, $"it exited with code {run.ExitCode} before its handoff ended");
    }

    /// <summary>
    /// The upgrade's deadline: a successor that has not greeted by now is stopped and the upgrade fails with that
    /// reason. One that greeted is left to its handoff session (its HandoffTimeout runs from the greeting). A greeting
    /// that crosses this deadline loses: the child is stopped, and its session sees it go and frees the handoff slot.
    /// Runs on the timer's callback (on a fake clock, inside <c>Advance</c>), so the decision and the SIGTERM are
    /// made by the time the clock has moved.
    /// </summary>
    private void OnDeadline(UpgradeRun run)
    {
        var timeout = _options.HandoffTimeout;
        string reason = $"the successor pid {run.Pid} did not greet within HandoffTimeout ({timeout}); stopped it";
        lock (run)
        {
            if (run.Ending is not null || run.Result.Task.IsCompleted || Greeted(run))
            {
                return;
            }

            run.Ending = (UpgradeOutcome.Failed, reason);
        }

        _logger.UpgradeSuccessorNotGreeting(run.Trigger, run.Pid, timeout, StopGrace);
        if (!run.Process.HasExited)
        {
            _ = Libc.kill(run.Pid, Libc.SIGTERM); // ESRCH: it has just exited, which is what was asked
        }

        _ = BackgroundWork.Start("stop of an upgrade's successor that never greeted", () => StopAsync(run, reason), _logger);
    }

    /// <summary>True once a handoff session (begun after the launch) holds the successor's greeting.</summary>
    private bool Greeted(UpgradeRun run) =>
        _process.LatestSession is { } session && session != run.SessionAtLaunch && session.SuccessorPid == run.Pid;

    /// <summary>Gives a stopped successor <see cref="StopGrace"/> to exit, then kills it and what it started.</summary>
    private async Task StopAsync(UpgradeRun run, string reason)
    {
        using (var grace = new CancellationTokenSource(StopGrace, _time))
        {
            try
            {
                await run.Process.WaitForExitAsync(grace.Token);
            }
            catch (OperationCanceledException)
            {
            }
        }

        if (!run.Process.HasExited)
        {
            _logger.UpgradeSuccessorKilled(run.Trigger, run.Pid, StopGrace);
            try
            {
                run.Process.Kill(entireProcessTree: true);
            }
            catch (Exception ex) when (ex is InvalidOperationException or System.ComponentModel.Win32Exception)
            {
                // Gone meanwhile, or not ours to kill: FinishAsync reports what it finds.
            }
        }

        // Waits (bounded) for the exit, so that the answer has the exit code and no zombie is left: Process reaps it.
        await FinishAsync(run, UpgradeOutcome.Failed, reason);
    }

    private UpgradeRun? Of(int pid)
    {
        lock (_lock)
        {
            return _upgrade is { } run && run.Pid == pid ? run : null;
        }
    }

    /// <summary>
    /// Ends the upgrade of <paramref name="run"/> once (the first outcome wins). A successor that did not commit is given
    /// a moment to exit, so that its exit code is part of the answer.
    /// </summary>
    private async Task FinishAsync(UpgradeRun? run, UpgradeOutcome outcome, string reason)
    {
        if (run is null || run.Result.Task.IsCompleted)
        {
            return;
        }

        // The first to know why wins: the handoff's own outcome (with the successor's reason) over the bare exit.
        lock (run)
        {
            run.Ending ??= (outcome, reason);
            (outcome, reason) = run.Ending.Value;
        }

        if (outcome != UpgradeOutcome.Committed && !run.Process.HasExited)
        {
            using var wait = new CancellationTokenSource(PredecessorLink.ReadTimeout, _time);
            try
            {
                await run.Process.WaitForExitAsync(wait.Token);
            }
            catch (OperationCanceledException)
            {
            }
        }

        if (!run.TryFinish())
        {
            return;
        }

        // Everything this process does about the end comes before the answer: whoever hears it (zerodowntime upgrade,
        // then systemd or a script) finds the slot free, the line logged and the outcome counted.
        int exitCode = run.Process.HasExited ? run.Process.ExitCode : -1;
        run.Deadline?.Dispose();
        lock (_lock)
        {
            if (_upgrade == run)
            {
                _upgrade = null;
            }

            if (outcome == UpgradeOutcome.Committed)
            {
                _committed = run;
            }
        }

        _metrics.Upgrade(outcome switch
        {
            UpgradeOutcome.Committed => HandoffTags.Committed,
            UpgradeOutcome.Abandoned => HandoffTags.Abandoned,
            UpgradeOutcome.Refused => HandoffTags.Refused,
            _ => HandoffTags.Failed,
        });
        if (outcome == UpgradeOutcome.Committed)
        {
            _logger.UpgradeCommitted(run.Pid, run.Trigger, run.ReadyMilliseconds, run.CommittedMilliseconds);
        }
        else
        {
            // The service manager first, then the line: whoever reads the line (an operator, a test) finds systemd told
            // already (READY=1 after the RELOADING=1 of a signalled upgrade).
            if (run.FromSignal)
            {
                _notifySocket.Ready($"Upgrade failed ({reason}); serving");
            }

            _logger.UpgradeFailed(run.Pid, run.Trigger, outcome.ToString(), exitCode, reason);
        }

        run.Result.SetResult(new UpgradeResultMessage(outcome, run.Pid, exitCode, HandoffProtocol.FitText(reason), run.ReadyMilliseconds, run.CommittedMilliseconds));
    }

    /// <summary>One upgrade: the successor this process started, and how it ends.</summary>
    private sealed class UpgradeRun(Process process, string trigger, long startedAt, SuccessorSession? sessionAtLaunch)
    {
        public Process Process { get; } = process;

        public int Pid { get; } = process.Id;

        public string Trigger { get; } = trigger;

        public long StartedAt { get; } = startedAt;

        /// <summary>The latest handoff session when it was started: a greeting begins a newer one.</summary>
        public SuccessorSession? SessionAtLaunch { get; } = sessionAtLaunch;

        public bool FromSignal { get; init; }

        /// <summary>Fires at HandoffTimeout after the launch (<see cref="OnDeadline"/>); disposed when the run ends.</summary>
        public ITimer? Deadline { get; set; }

        /// <summary>The outcome and reason first reported (the result may wait for the exit code).</summary>
        public (UpgradeOutcome Outcome, string Reason)? Ending { get; set; }

        public int ExitCode { get; set; } = -1;

        public long ReadyMilliseconds { get; set; } = -1;

        public long CommittedMilliseconds { get; set; } = -1;

        public TaskCompletionSource<UpgradeResultMessage> Result { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        /// <summary>After a committed result: the probation's start (or None) and its end, for <c>zerodowntime upgrade --wait-probation</c>.</summary>
        public System.Threading.Channels.Channel<ProbationUpdateMessage> ProbationUpdates { get; } = System.Threading.Channels.Channel.CreateUnbounded<ProbationUpdateMessage>();

        private int _finished;

        /// <summary>True for the one caller that ends this run (several may race: the exit, the session, the deadline).</summary>
        public bool TryFinish() => Interlocked.Exchange(ref _finished, 1) == 0;
    }
}
