using System.Collections;
using System.Globalization;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;

namespace ZeroDowntime.Cli;

/// <summary>
/// <c>zerodowntime run -- COMMAND</c>: a process with a stable pid above an app whose main process changes at every
/// handoff. It becomes a child subreaper (orphans, such as a successor whose predecessor exited, become its children),
/// gives the app a NOTIFY_SOCKET of its own and follows the <c>MAINPID=</c> the library sends there, forwards
/// SIGTERM/SIGINT/SIGQUIT to the current main process and SIGHUP (and SIGUSR2) as they are, so the app's upgrade
/// signal upgrades, reaps every child (waitid on any child), and exits with the exit code of the last main process once
/// no child is left. It holds no listening socket. Under systemd (its own NOTIFY_SOCKET set) it forwards what the app
/// says with MAINPID= set to its own pid, so the unit's main pid stays the supervisor. The main process is a
/// <see cref="ProcessIdentity"/> (pid and start time), never a bare pid: pids are reused, soon in a small PID namespace.
/// </summary>
internal sealed class Supervisor : IDisposable
{
    private static readonly int[] ForwardedSignals = [Posix.SIGTERM, Posix.SIGINT, Posix.SIGQUIT, Posix.SIGHUP, Posix.SIGUSR2];
    private readonly Lock _lock = new();
    private readonly TextWriter _log;
    private readonly int _self = Posix.ProcessId;
    private readonly string? _upstreamNotifySocket;
    private readonly DirectoryInfo _directory;
    private readonly Socket _notify;
    private readonly string _notifyPath;
    private readonly List<PosixSignalRegistration> _signals = [];
    private readonly byte[] _buffer = new byte[4096];

    // The current main process, or the last one once it has exited (for the log). Guarded by _lock, as is every
    // datagram read from _notify, so that a datagram and the exit of the process it names are handled in order.
    private ProcessIdentity? _main;
    private bool _mainExited;
    private int? _lastMainExitCode;
    private int _stopSignal;
    private bool _stopping;

    private Supervisor(TextWriter log)
    {
        _log = log;
        _upstreamNotifySocket = Environment.GetEnvironmentVariable("NOTIFY_SOCKET") is { Length: > 0 } upstream ? upstream : null;

        // A private 0700 directory (mkdtemp), so only this user (and root) can tell the supervisor who is main.
        _directory = Directory.CreateTempSubdirectory("zerodowntime-run-");
        _notifyPath = Path.Combine(_directory.FullName, "notify.sock");
        _notify = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        _notify.Bind(new UnixDomainSocketEndPoint(_notifyPath));
    }

    public static int Run(string[] command, TextWriter log)
    {
        using var supervisor = new Supervisor(log);
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

        var environment = new List<string>();
        foreach (DictionaryEntry variable in Environment.GetEnvironmentVariables())
        {
            if ((string)variable.Key != "NOTIFY_SOCKET")
            {
                environment.Add($"{variable.Key}={variable.Value}");
            }
        }

        environment.Add("NOTIFY_SOCKET=" + _notifyPath);
        var receiver = new Thread(Receive) { IsBackground = true, Name = "zerodowntime run: notify" };
        receiver.Start();

        int pid;
        lock (_lock)
        {
            (pid, error) = Posix.Spawn(command, environment);
            if (pid > 0)
            {
                // Not reaped before Reap() below runs, so this is the child even if it has exited already.
                _main = ProcessIdentity.TryRead(pid, out var identity, out _, out _) ? identity : new ProcessIdentity(pid, 0);
            }
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
                if (errno == Posix.EINTR)
                {
                    continue;
                }

                lock (_lock)
                {
                    if (errno != Posix.ECHILD)
                    {
                        Log($"waitid failed: {Posix.ErrorText(errno)}");
                    }

                    return _lastMainExitCode ?? ExitCodes.CannotStart;
                }
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

    private void Forward(int signal)
    {
        lock (_lock)
        {
            if (signal is Posix.SIGTERM or Posix.SIGINT or Posix.SIGQUIT)
            {
                _stopSignal = signal;
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
        if (!_mainExited && _main is { } main && (main.StartTime == 0 || main.IsRunning()) && Posix.Kill(main.Pid, signal) != Posix.ESRCH)
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
            int read;
            try
            {
                read = _notify.Receive(_buffer);
            }
            catch (SocketException ex) when (ex.SocketErrorCode == SocketError.MessageSize)
            {
                Log($"ignored a datagram longer than {_buffer.Length} bytes");
                continue;
            }
            catch (SocketException ex)
            {
                Log($"notify socket: {ex.Message}");
                return;
            }

            OnNotify(Encoding.UTF8.GetString(_buffer, 0, read));
        }
    }

    private void OnNotify(string message)
    {
        var lines = message.Split('\n', StringSplitOptions.RemoveEmptyEntries);
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
        if (_upstreamNotifySocket is null)
        {
            return;
        }

        var text = new StringBuilder();
        foreach (string line in lines)
        {
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
        try
        {
            _directory.Delete(recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
