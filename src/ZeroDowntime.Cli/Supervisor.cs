using System.Collections;
using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using ZeroDowntime.Cli.Interop;
using ZeroDowntime.Hosting.Interop;

namespace ZeroDowntime.Cli;

/// <summary>
/// <c>zerodowntime run -- COMMAND</c>: a process with a stable pid above an app whose main process changes at every
/// handoff. It becomes a child subreaper (orphans, such as a successor whose predecessor exited, become its children),
/// gives the app a NOTIFY_SOCKET of its own and follows the <c>MAINPID=</c> the library sends there, forwards
/// SIGTERM/SIGINT/SIGQUIT to the current main process and SIGHUP (and SIGUSR2) as they are, so the app's upgrade
/// signal upgrades, and SIGUSR1, the app's rollback signal (whose default action would end the supervisor), reaps every child (waitid on any child), and exits with the exit code of the last main process once
/// no child is left. It keeps the listening sockets the app stores with it (<c>FDSTORE=1</c>, <see cref="ListenerStore"/>):
/// when the main process exits and no process of the app is left (a crash, not a handoff or a requested stop), it
/// starts the command again after a short back-off with those sockets as <c>LISTEN_FDS</c>, so clients wait in the
/// kernel's queue instead of being refused; past <see cref="RestartPolicy.MaxRestarts"/> within
/// <see cref="RestartPolicy.Window"/> it closes them and gives up (<see cref="ExitCodes.RestartLimit"/>). Under systemd (its own NOTIFY_SOCKET set) it forwards what the app
/// says with MAINPID= set to its own pid, so the unit's main pid stays the supervisor. The main process is a
/// <see cref="ProcessIdentity"/> (pid and start time), never a bare pid: pids are reused, soon in a small PID namespace.
/// </summary>
internal sealed class Supervisor : IDisposable
{
    private static readonly int[] ForwardedSignals = [Libc.SIGTERM, Libc.SIGINT, Libc.SIGQUIT, Libc.SIGHUP, Libc.SIGUSR1, Libc.SIGUSR2];
    private readonly Lock _lock = new();
    private readonly TextWriter _log;
    private readonly int _self = Posix.ProcessId;
    private readonly string? _upstreamNotifySocket;
    private readonly DirectoryInfo _directory;
    private readonly Socket _notify;
    private readonly string _notifyPath;
    private readonly List<PosixSignalRegistration> _signals = [];
    private readonly byte[] _buffer = new byte[4096];
    private readonly List<int> _receivedFds = [];
    private readonly RestartPolicy _policy;
    private readonly ListenerStore _store = new();
    private readonly List<long> _restarts = [];
    private readonly ManualResetEventSlim _stopRequested = new();
    private string[] _command = [];
    private readonly List<string> _environment = [];

    // The current main process, or the last one once it has exited (for the log). Guarded by _lock, as is every
    // datagram read from _notify, so that a datagram and the exit of the process it names are handled in order.
    private ProcessIdentity? _main;
    private bool _mainExited;
    private int? _lastMainExitCode;
    private int _stopSignal;
    private bool _stopping;

    private Supervisor(TextWriter log, RestartPolicy policy)
    {
        _log = log;
        _policy = policy;
        _upstreamNotifySocket = Environment.GetEnvironmentVariable("NOTIFY_SOCKET") is { Length: > 0 } upstream ? upstream : null;

        // A private 0700 directory (mkdtemp), so only this user (and root) can tell the supervisor who is main.
        _directory = Directory.CreateTempSubdirectory("zerodowntime-run-");
        _notifyPath = Path.Combine(_directory.FullName, "notify.sock");
        _notify = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        _notify.Bind(new UnixDomainSocketEndPoint(_notifyPath));
    }

    public static int Run(string[] command, TextWriter log) => Run(command, RestartPolicy.Default, log);

    public static int Run(string[] command, RestartPolicy policy, TextWriter log)
    {
        using var supervisor = new Supervisor(log, policy);
        return supervisor.Run(command);
    }

    private int Run(string[] command)
    {
        int error = Posix.BecomeSubreaper();
        if (error != 0)
        {
            Log($"cannot become a child subreaper ({Posix.ErrorText(error)}): orphaned children will not be reaped here");
        }

        foreach (int signal in ForwardedSignals)
        {
            _signals.Add(PosixSignalRegistration.Create((PosixSignal)signal, context =>
            {
                context.Cancel = true;
                Forward(signal);
            }));
        }

        _command = command;
        foreach (DictionaryEntry variable in Environment.GetEnvironmentVariables())
        {
            // The supervisor's own socket activation and fd store are not the app's: it gets its own below.
            if ((string)variable.Key is not ("NOTIFY_SOCKET" or "LISTEN_PID" or "LISTEN_FDS" or "LISTEN_FDNAMES" or "FDSTORE"))
            {
                _environment.Add($"{variable.Key}={variable.Value}");
            }
        }

        _environment.Add("NOTIFY_SOCKET=" + _notifyPath);
        _environment.Add(string.Create(CultureInfo.InvariantCulture, $"FDSTORE={ListenerStore.Capacity}"));
        var receiver = new Thread(Receive) { IsBackground = true, Name = "zerodowntime run: notify" };
        receiver.Start();

        int pid;
        lock (_lock)
        {
            (pid, error) = StartLocked([], "");
        }

        if (pid <= 0)
        {
            Log($"cannot start {command[0]}: {Posix.ErrorText(error)}");
            StopReceiving(receiver);
            return ExitCodes.CannotStart;
        }

        Log($"started pid {pid}: {string.Join(' ', command)} (NOTIFY_SOCKET={_notifyPath})");
        int pendingStop;
        lock (_lock)
        {
            pendingStop = _stopSignal;
        }

        if (pendingStop != 0)
        {
            Forward(pendingStop);
        }

        int exitCode = Reap();
        StopReceiving(receiver);
        lock (_lock)
        {
            _store.CloseAll();
        }

        Log($"no child left: exiting with code {exitCode}");
        return exitCode;
    }

    /// <summary>
    /// Every child until ECHILD: the app's and orphans re-parented here. A child that has exited stays a zombie until
    /// the datagrams already queued are handled (a MAINPID= that it sent before it exited names it, not a later holder
    /// of its pid), then it is reaped; it is the main process only if it is the very process that was followed.
    /// </summary>
    private int Reap()
    {
        while (true)
        {
            var (pid, errno) = Posix.WaitForExitedChild();
            if (pid < 0)
            {
                if (errno == Libc.EINTR)
                {
                    continue;
                }

                lock (_lock)
                {
                    if (errno != Libc.ECHILD)
                    {
                        Log($"waitid failed: {Posix.ErrorText(errno)}");
                        return _lastMainExitCode ?? ExitCodes.CannotStart;
                    }
                }

                if (RestartOrExit() is { } exitCode)
                {
                    return exitCode;
                }

                continue;
            }

            lock (_lock)
            {
                bool known = ProcessIdentity.TryRead(pid, out var exited, out _, out _);
                HandleQueuedDatagrams();
                if (Posix.Reap(pid) is not { } status)
                {
                    continue; // Not this supervisor's to reap after all (nothing else should reap here): the next one.
                }

                // Without /proc (no identity), the pid is all there is; a zombie's pid is still its own.
                bool isMain = !_mainExited && _main is { } main && main.Pid == pid && (!known || main.StartTime == 0 || main == exited);
                if (isMain)
                {
                    _mainExited = true;
                    _lastMainExitCode = Posix.ExitCode(status);
                    Log($"main pid {pid} {Posix.Describe(status)}");
                }
                else
                {
                    Log($"reaped pid {pid}: it {Posix.Describe(status)}");
                }
            }
        }
    }

    /// <summary>
    /// No child is left. Without kept sockets, or when a stop was asked for, the supervisor exits as it always did, with
    /// the last main process's code. Else the app crashed (or exited) with no successor: it is started again with the
    /// kept sockets, after a back-off that doubles with each restart in the window, unless the restart limit is reached
    /// (the sockets are closed then, so that clients are refused instead of waiting for nobody). Null: started again.
    /// </summary>
    private int? RestartOrExit()
    {
        TimeSpan delay;
        int restart;
        lock (_lock)
        {
            int exitCode = _lastMainExitCode ?? ExitCodes.CannotStart;
            if (_stopSignal != 0 || _store.Count == 0)
            {
                return exitCode;
            }

            long now = Stopwatch.GetTimestamp();
            _restarts.RemoveAll(started => Stopwatch.GetElapsedTime(started, now) > _policy.Window);
            if (_restarts.Count >= _policy.MaxRestarts)
            {
                Log($"giving up: {_restarts.Count} restart(s) within {_policy.Window.TotalSeconds:0.###} s already (--max-restarts {_policy.MaxRestarts}, --restart-window {_policy.Window.TotalSeconds:0.###}s); closed the {_store.Count} kept socket(s), so clients are refused from now");
                _store.CloseAll();
                return ExitCodes.RestartLimit;
            }

            restart = _restarts.Count + 1;
            delay = RestartPolicy.Backoff(_restarts.Count);
            Log($"the main process exited and no process of the app is left: restarting in {delay.TotalMilliseconds:0} ms with {_store.Count} kept socket(s) as LISTEN_FDS (restart {restart} of at most {_policy.MaxRestarts} within {_policy.Window.TotalSeconds:0.###} s)");
        }

        if (_stopRequested.Wait(delay))
        {
            lock (_lock)
            {
                return _lastMainExitCode ?? ExitCodes.CannotStart;
            }
        }

        lock (_lock)
        {
            if (_stopSignal != 0)
            {
                return _lastMainExitCode ?? ExitCodes.CannotStart;
            }

            _restarts.Add(Stopwatch.GetTimestamp());
            var (fds, names) = _store.ForRestart();
            var (pid, error) = StartLocked(fds, names);
            if (pid <= 0)
            {
                Log($"cannot start /bin/sh to restart {_command[0]}: {Posix.ErrorText(error)}; closed the kept sockets");
                _store.CloseAll();
                return ExitCodes.CannotStart;
            }

            Log($"restarted as pid {pid} with LISTEN_FDS={fds.Count} LISTEN_FDNAMES={names} (restart {restart})");
            return null;
        }
    }

    /// <summary>
    /// Starts the command; with kept sockets they are its descriptors 3, 4, ... and LISTEN_FDS, LISTEN_FDNAMES and
    /// LISTEN_PID say so. LISTEN_PID must be the app's own pid, known only once it runs: /bin/sh sets it to its own
    /// ($$) and execs the command, which keeps the pid. Under the lock; the child becomes the main process.
    /// </summary>
    private (int Pid, int Errno) StartLocked(IReadOnlyList<int> fds, string names)
    {
        IReadOnlyList<string> argv = _command;
        var environment = _environment;
        if (fds.Count > 0)
        {
            argv = ["/bin/sh", "-c", "LISTEN_PID=$$; export LISTEN_PID; exec \"$@\"", "zerodowntime-run", .. _command];
            environment = [.. _environment, string.Create(CultureInfo.InvariantCulture, $"LISTEN_FDS={fds.Count}"), "LISTEN_FDNAMES=" + names];
        }

        var (pid, error) = Posix.Spawn(argv, environment, fds);
        if (pid > 0)
        {
            // Not reaped before Reap() runs, so this is the child even if it has exited already.
            _main = ProcessIdentity.TryRead(pid, out var identity, out _, out _) ? identity : new ProcessIdentity(pid, 0);
            _mainExited = false;
        }

        return (pid, error);
    }

    private void Forward(int signal)
    {
        lock (_lock)
        {
            if (signal is Libc.SIGTERM or Libc.SIGINT or Libc.SIGQUIT)
            {
                _stopSignal = signal;
                _stopRequested.Set();
                if (_store.Count > 0)
                {
                    // A stop the operator asked for ends everything, as without the store: the app's shutdown closes
                    // its own copies so that the kernel refuses new clients, and the supervisor's must not keep the
                    // queue open meanwhile.
                    Log($"stopping: closed the {_store.Count} kept socket(s)");
                    _store.CloseAll();
                }
            }

            if (_main is null)
            {
                return; // Sent on as soon as the child exists.
            }

            ForwardLocked(signal);
        }
    }

    /// <summary>
    /// To the main process if it still runs (the very process, checked by start time: its pid may have a new owner),
    /// else to every direct child. Under the lock, so a direct child cannot be reaped, and its pid reused, meanwhile.
    /// </summary>
    private void ForwardLocked(int signal)
    {
        List<int> targets;
        if (!_mainExited && _main is { } main && (main.StartTime == 0 || main.IsRunning()) && Posix.Kill(main.Pid, signal) != Libc.ESRCH)
        {
            targets = [main.Pid];
        }
        else
        {
            // The main process has exited and its successor has not said MAINPID= yet: every direct child gets it.
            targets = Posix.DirectChildren();
            foreach (int child in targets)
            {
                Posix.Kill(child, signal);
            }
        }

        Log($"signal {signal} forwarded to pid {string.Join(", ", targets)}");
    }

    /// <summary>
    /// Waits (poll) until a datagram is queued and handles the queue under the lock: datagrams are taken from the
    /// socket only under the lock, so that <see cref="Reap"/> can handle the queue before it reaps a child.
    /// </summary>
    private void Receive()
    {
        while (true)
        {
            try
            {
                _notify.Poll(-1, SelectMode.SelectRead);
            }
            catch (SocketException ex)
            {
                Log($"notify socket: {ex.Message}");
                return;
            }

            lock (_lock)
            {
                if (_stopping)
                {
                    return;
                }

                HandleQueuedDatagrams();
            }
        }
    }

    /// <summary>Ends <see cref="Receive"/>: a socket shut down for reading is readable at once, and stays so.</summary>
    private void StopReceiving(Thread receiver)
    {
        lock (_lock)
        {
            _stopping = true;
        }

        _notify.Shutdown(SocketShutdown.Receive);
        receiver.Join(TimeSpan.FromSeconds(2));
    }

    /// <summary>Takes every datagram queued now and handles it, in order. Under the lock.</summary>
    private void HandleQueuedDatagrams()
    {
        while (!_stopping && _notify.Poll(0, SelectMode.SelectRead))
        {
            ReceiveResult received;
            try
            {
                // recvmsg: the datagram and any descriptors that came with it (FDSTORE=1), close-on-exec.
                received = FdPassing.Receive(_notify, _buffer, _receivedFds);
            }
            catch (System.ComponentModel.Win32Exception ex)
            {
                Log($"notify socket: {ex.Message}");
                return;
            }

            if (received.Status == ReceiveStatus.WouldBlock)
            {
                continue;
            }

            if (received.Status != ReceiveStatus.Data)
            {
                Log($"ignored a datagram: {received.Status}");
                FdPassing.CloseAll(_receivedFds);
                continue;
            }

            OnNotify(Encoding.UTF8.GetString(_buffer, 0, received.Length), _receivedFds);
        }
    }

    private void OnNotify(string message, List<int> fds)
    {
        var lines = message.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        if (_store.Handle(lines, fds, accepting: _stopSignal == 0) is { } stored)
        {
            Log(stored);
        }

        foreach (string line in lines)
        {
            if (!line.StartsWith("MAINPID=", StringComparison.Ordinal)
                || !int.TryParse(line.AsSpan(8), NumberStyles.None, CultureInfo.InvariantCulture, out int pid) || pid <= 0)
            {
                continue;
            }

            // The process that has this pid now. An exited child stays a zombie until the datagrams queued before its
            // exit are handled (Reap): so a zombie here is the process that sent this, gone (not followed), and a
            // running process is the one that was meant, even if its pid was used before.
            bool exists = ProcessIdentity.TryRead(pid, out var named, out char state, out _);
            if (exists && named == _main && !_mainExited)
            {
                continue;
            }

            if (!exists || !Posix.IsDescendant(pid))
            {
                // As systemd refuses a MAINPID= outside the unit: only a process below the supervisor can be main,
                // and the rest of such a datagram is not passed on either.
                Log($"ignored MAINPID={pid}: {(exists ? "not a descendant of this supervisor" : "no such process")}");
                return;
            }

            if (state is 'Z' or 'X')
            {
                Log($"ignored MAINPID={pid}: it has exited");
                continue;
            }

            int previous = _main?.Pid ?? 0;
            _main = named;
            _mainExited = false;
            Log($"main pid is now {pid} (was {previous})");
            if (_stopSignal != 0)
            {
                // Stopping, and a successor took over meanwhile: it stops too.
                ForwardLocked(_stopSignal);
            }
        }

        ForwardUpstream(lines);
    }

    /// <summary>Under systemd: what the app says, as said by the supervisor (the unit's main process).</summary>
    private void ForwardUpstream(string[] lines)
    {
        if (_upstreamNotifySocket is null || lines.All(l => l.StartsWith("FDSTORE", StringComparison.Ordinal) || l.StartsWith("FDNAME=", StringComparison.Ordinal)))
        {
            return;
        }

        var text = new StringBuilder();
        foreach (string line in lines)
        {
            if (line.StartsWith("FDSTORE", StringComparison.Ordinal) || line.StartsWith("FDNAME=", StringComparison.Ordinal))
            {
                continue; // the supervisor keeps the app's sockets itself
            }

            text.Append(line.StartsWith("MAINPID=", StringComparison.Ordinal) ? string.Create(CultureInfo.InvariantCulture, $"MAINPID={_self}") : line).Append('\n');
        }

        string path = _upstreamNotifySocket[0] == '@' ? "\0" + _upstreamNotifySocket[1..] : _upstreamNotifySocket;
        try
        {
            using var socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
            socket.Connect(new UnixDomainSocketEndPoint(path));
            socket.Send(Encoding.UTF8.GetBytes(text.ToString()));
        }
        catch (SocketException ex)
        {
            Log($"cannot notify {_upstreamNotifySocket}: {ex.Message}");
        }
    }

    private void Log(string message)
    {
        try
        {
            _log.WriteLine(string.Create(CultureInfo.InvariantCulture, $"zerodowntime run[{_self}]: {message}"));
            _log.Flush();
        }
        catch (IOException)
        {
        }
    }

    public void Dispose()
    {
        foreach (var registration in _signals)
        {
            registration.Dispose();
        }

        _notify.Dispose();
        _store.Dispose();
        _stopRequested.Dispose();
        try
        {
            _directory.Delete(recursive: true);
        }
        catch (IOException)
        {
        }
    }
}

/// <summary>
/// How often <c>zerodowntime run</c> starts a crashed app again: at most <see cref="MaxRestarts"/> restarts within
/// <see cref="Window"/> (<c>--max-restarts</c>, <c>--restart-window</c>; defaults 5 within 60 s). The first restart in
/// the window is at once (clients wait in the queue meanwhile); each later one after a back-off of 100 ms doubled for
/// every restart already in the window, at most 3.2 s, so that an app that crashes at start does not spin.
/// </summary>
internal sealed record RestartPolicy(int MaxRestarts, TimeSpan Window)
{
    public static readonly RestartPolicy Default = new(5, TimeSpan.FromSeconds(60));

    private static readonly TimeSpan FirstBackoff = TimeSpan.FromMilliseconds(100);
    private static readonly TimeSpan LongestBackoff = TimeSpan.FromMilliseconds(3200);

    public static TimeSpan Backoff(int restartsInWindow) => restartsInWindow switch
    {
        <= 0 => TimeSpan.Zero,
        >= 6 => LongestBackoff,
        _ => TimeSpan.FromTicks(Math.Min(FirstBackoff.Ticks << (restartsInWindow - 1), LongestBackoff.Ticks)),
    };
}
