using System.Diagnostics;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using ZeroDowntime.Hosting.Logging;
using ZeroDowntime.Hosting.Protocol;

namespace ZeroDowntime.Hosting.Lifecycle;

/// <summary>
/// The running process starts its own successor (on <c>ZeroDowntime:Upgrade:Signal</c> or <c>zerodowntime upgrade</c>),
/// one at a time, and learns how the handoff with it ends; and answers <c>zerodowntime status</c>.
/// </summary>
internal sealed partial class HandoffCoordinator
{
    private readonly Lock _upgradeLock = new();
    private SuccessorLauncher? _launcher;
    private UpgradeRun? _upgrade;
    private PosixSignalRegistration? _upgradeSignal;

    /// <summary>When this process began to serve (first start, commit, or serving again), Unix ms.</summary>
    private long _servingSinceUnixMilliseconds;

    /// <summary>The successor of the handoff in progress (0 when none).</summary>
    private int _successorPid;

    private const int SIGUSR2 = 12;

    private void InstallUpgradeTrigger()
    {
        _launcher = new SuccessorLauncher(_options.Upgrade, _systemd.SocketPath);
        var signal = _options.Upgrade.Signal switch
        {
            ZeroDowntimeUpgradeSignal.SigHup => PosixSignal.SIGHUP,
            ZeroDowntimeUpgradeSignal.SigUsr2 => (PosixSignal)SIGUSR2,
            _ => (PosixSignal?)null,
        };

        // SIGHUP ends a .NET process by default; a closed terminal or an operator's "kill -HUP" must not take the
        // server down with no successor. When it is not the upgrade signal it is logged and ignored.
        _hangup = PosixSignalRegistration.Create(PosixSignal.SIGHUP, context =>
        {
            context.Cancel = true;
            if (signal == PosixSignal.SIGHUP)
            {
                OnUpgradeSignal("SIGHUP");
            }
            else
            {
                _logger.HangupIgnored();
            }
        });

        if (signal == (PosixSignal)SIGUSR2)
        {
            _upgradeSignal = PosixSignalRegistration.Create((PosixSignal)SIGUSR2, context =>
            {
                context.Cancel = true;
                OnUpgradeSignal("SIGUSR2");
            });
        }
    }

    private void OnUpgradeSignal(string signal)
    {
        // sd_notify(3), Type=notify-reload: say that a reload runs, with the monotonic time, and READY=1 when it ended.
        _systemd.Reloading();
        var run = StartUpgrade(signal, out _);
        if (run is null)
        {
            _systemd.Ready("Upgrade refused; serving");
            return;
        }

        run.FromSignal = true;
    }

    /// <summary>Starts the successor unless an upgrade or handoff runs, or this process no longer serves alone.</summary>
    private UpgradeRun? StartUpgrade(string trigger, out string refusal)
    {
        lock (_upgradeLock)
        {
            refusal = _upgrade is { } running ? $"an upgrade ({running.Trigger}, successor pid {running.Pid}) is still running"
                : CurrentRole != Role.Owner ? $"pid {Environment.ProcessId} is {(CurrentRole == Role.ShuttingDown ? "shutting down" : "not the sole server (it has handed over, or is still taking over)")}"
                : Volatile.Read(ref _handoffInProgress) != 0 ? $"a handoff to pid {_successorPid} is in progress"
                : "";
            if (refusal.Length > 0)
            {
                _logger.UpgradeRefused(trigger, refusal);
                return null;
            }

            Process process;
            string commandLine;
            try
            {
                (process, commandLine) = _launcher!.Start();
            }
            catch (Exception ex) when (ex is System.ComponentModel.Win32Exception or InvalidOperationException or IOException)
            {
                refusal = $"the successor could not be started: {ex.Message}";
                _logger.UpgradeRefused(trigger, refusal);
                return null;
            }

            var run = new UpgradeRun(process, trigger, _time.GetTimestamp());
            _upgrade = run;
            _logger.UpgradeStarted(trigger, run.Pid, commandLine, _launcher.WorkingDirectory);
            _ = BackgroundWork.Start("exit watch of the upgrade's successor", () => WatchUpgradeExitAsync(run), _logger);
            return run;
        }
    }

    /// <summary>A successor that exits before its handoff ended (it failed to start, or never connected) ends the upgrade.</summary>
    private async Task WatchUpgradeExitAsync(UpgradeRun run)
    {
        await run.Process.WaitForExitAsync(CancellationToken.None);
        run.ExitCode = run.Process.ExitCode;

        // A successor that got as far as its handoff said why it failed there (its Failed frame is read by the
        // handoff, which may come a moment after the exit is seen): that reason, not the bare exit, is the answer.
        if (Volatile.Read(ref _successorPid) == run.Pid)
        {
            await Task.WhenAny(run.Result.Task, Task.Delay(ReadTimeout, _time, CancellationToken.None));
        }

        await FinishUpgradeAsync(run, UpgradeOutcome.Failed, $"it exited with code {run.ExitCode} before its handoff ended");
    }

    private UpgradeRun? UpgradeOf(int pid)
    {
        lock (_upgradeLock)
        {
            return _upgrade is { } run && run.Pid == pid ? run : null;
        }
    }

    /// <summary>
    /// Ends the upgrade of <paramref name="run"/> once (the first outcome wins). A successor that did not commit is given
    /// a moment to exit, so that its exit code is part of the answer.
    /// </summary>
    private async Task FinishUpgradeAsync(UpgradeRun? run, UpgradeOutcome outcome, string reason)
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
            using var wait = new CancellationTokenSource(ReadTimeout);
            try
            {
                await run.Process.WaitForExitAsync(wait.Token);
            }
            catch (OperationCanceledException)
            {
            }
        }

        int exitCode = run.Process.HasExited ? run.Process.ExitCode : -1;
        var result = new UpgradeResultMessage(outcome, run.Pid, exitCode, HandoffProtocol.FitText(reason), run.ReadyMilliseconds, run.CommittedMilliseconds);
        if (!run.Result.TrySetResult(result))
        {
            return;
        }

        lock (_upgradeLock)
        {
            if (_upgrade == run)
            {
                _upgrade = null;
            }
        }

        if (outcome == UpgradeOutcome.Committed)
        {
            _logger.UpgradeCommitted(run.Pid, run.Trigger, run.ReadyMilliseconds, run.CommittedMilliseconds);
        }
        else
        {
            _logger.UpgradeFailed(run.Pid, run.Trigger, outcome.ToString(), exitCode, reason);
            if (run.FromSignal)
            {
                _systemd.Ready($"Upgrade failed ({reason}); serving");
            }
        }
    }

    /// <summary>Milestones of the upgrade's successor, from when it was started.</summary>
    private void UpgradeMilestone(int pid, bool committed)
    {
        if (UpgradeOf(pid) is not { } run)
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

    /// <summary><c>zerodowntime upgrade</c>: start the successor, say its pid, and answer how the upgrade ended.</summary>
    private async Task AnswerUpgradeRequestAsync(HandoffChannel channel, int clientPid)
    {
        var run = StartUpgrade($"zerodowntime upgrade (pid {clientPid})", out string refusal);
        if (run is null)
        {
            channel.TrySend(new UpgradeResultMessage(UpgradeOutcome.Refused, 0, -1, HandoffProtocol.FitText(refusal), -1, -1));
            return;
        }

        channel.TrySend(new UpgradeStartedMessage(run.Pid));
        channel.TrySend(await run.Result.Task);
    }

    /// <summary><c>zerodowntime status</c>: who serves, since when, in which state, on which listeners.</summary>
    private StatusMessage Status()
    {
        var state = CurrentRole switch
        {
            Role.HandedOver => ServingState.Draining,
            Role.ShuttingDown => ServingState.ShuttingDown,
            _ when Volatile.Read(ref _handoffInProgress) != 0 => ServingState.HandingOver,
            _ => ServingState.Serving,
        };
        var listeners = _registry.ActiveListeners().Select(l => new ListenerDescriptor(l.Key, l.Description)).ToArray();
        return new StatusMessage(Environment.ProcessId, _options.ApplicationId!, _metrics.Generation, _firstStartUnixMilliseconds,
            Interlocked.Read(ref _servingSinceUnixMilliseconds), state, listeners,
            _predecessorWatch.IsCompleted ? 0 : _predecessorPid, state == ServingState.HandingOver ? _successorPid : 0);
    }

    private void ServingFromNow() => Interlocked.Exchange(ref _servingSinceUnixMilliseconds, _time.GetUtcNow().ToUnixTimeMilliseconds());

    /// <summary>One upgrade: the successor this process started, and how it ends.</summary>
    private sealed class UpgradeRun(Process process, string trigger, long startedAt)
    {
        public Process Process { get; } = process;

        public int Pid { get; } = process.Id;

        public string Trigger { get; } = trigger;

        public long StartedAt { get; } = startedAt;

        public bool FromSignal { get; set; }

        /// <summary>The outcome and reason first reported (the result may wait for the exit code).</summary>
        public (UpgradeOutcome Outcome, string Reason)? Ending { get; set; }

        public int ExitCode { get; set; } = -1;

        public long ReadyMilliseconds { get; set; } = -1;

        public long CommittedMilliseconds { get; set; } = -1;

        public TaskCompletionSource<UpgradeResultMessage> Result { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
