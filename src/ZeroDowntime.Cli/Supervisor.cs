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
/// signal upgrades, reaps every child with waitpid(-1), and exits with the exit code of the last main process once no
/// child is left. It holds no listening socket. Under systemd (its own NOTIFY_SOCKET set) it forwards what the app
/// says with MAINPID= set to its own pid, so the unit's main pid stays the supervisor.
/// </summary>
internal sealed class Supervisor : IDisposable
{
    private static readonly int[] ForwardedSignals = [Posix.SIGTERM, Posix.SIGINT, Posix.SIGQUIT, Posix.SIGHUP, Posix.SIGUSR2];
    private readonly Lock _lock = new();
    private readonly TextWriter _log;
    private readonly int _self = Posix.ProcessId;
    private readonly HashSet<int> _reaped = [];
    private readonly string? _upstreamNotifySocket;
    private readonly DirectoryInfo _directory;
    private readonly Socket _notify;
    private readonly string _notifyPath;
    private readonly List<PosixSignalRegistration> _signals = [];
    private int _mainPid;
    private bool _mainAlive;
    private int? _lastMainExitCode;
    private int _stopSignal;

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
        using var stopReceiving = new CancellationTokenSource();
        var receiver = Task.Run(() => ReceiveAsync(stopReceiving.Token));

        int pid;
        lock (_lock)
        {
            (pid, error) = Posix.Spawn(command, environment);
            if (pid > 0)
            {
                _mainPid = pid;
                _mainAlive = true;
            }
        }

        if (pid <= 0)
        {
            Log($"cannot start {command[0]}: {Posix.ErrorText(error)}");
            stopReceiving.Cancel();
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
        stopReceiving.Cancel();
        try
        {
            receiver.Wait(TimeSpan.FromSeconds(2));
        }
        catch (AggregateException)
        {
        }

        Log($"no child left: exiting with code {exitCode}");
        return exitCode;
    }

    /// <summary>waitpid(-1) until ECHILD: every child, the app's and orphans re-parented here.</summary>
    private int Reap()
    {
        while (true)
        {
            var (pid, status, errno) = Posix.WaitAny();
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
                        Log($"waitpid failed: {Posix.ErrorText(errno)}");
                    }

                    return _lastMainExitCode ?? ExitCodes.CannotStart;
                }
            }

            lock (_lock)
            {
                _reaped.Add(pid);
                if (pid == _mainPid)
                {
                    _mainAlive = false;
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
        List<int> targets;
        lock (_lock)
        {
            if (signal is Posix.SIGTERM or Posix.SIGINT or Posix.SIGQUIT)
            {
                _stopSignal = signal;
            }

            if (_mainPid == 0)
            {
                return; // Sent on as soon as the child exists.
            }

            targets = _mainAlive ? [_mainPid] : [];
        }

        if (targets.Count == 0 || Posix.Kill(targets[0], signal) == Posix.ESRCH)
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

    private async Task ReceiveAsync(CancellationToken cancellationToken)
    {
        var buffer = new byte[4096];
        while (!cancellationToken.IsCancellationRequested)
        {
            int read;
            try
            {
                read = await _notify.ReceiveAsync(buffer, SocketFlags.None, cancellationToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            catch (SocketException ex)
            {
                Log($"notify socket: {ex.Message}");
                return;
            }

            string message = Encoding.UTF8.GetString(buffer, 0, read);
            OnNotify(message);
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

            int stop;
            lock (_lock)
            {
                if (_reaped.Contains(pid) || pid == _mainPid)
                {
                    continue;
                }

                if (!Posix.IsDescendant(pid))
                {
                    // As systemd refuses a MAINPID= outside the unit: only a process below the supervisor can be main,
                    // and the rest of such a datagram is not passed on either.
                    Log($"ignored MAINPID={pid}: not a descendant of this supervisor");
                    return;
                }

                int previous = _mainPid;
                _mainPid = pid;
                _mainAlive = true;
                stop = _stopSignal;
                Log($"main pid is now {pid} (was {previous})");
            }

            if (stop != 0)
            {
                // Stopping, and a successor took over meanwhile: it stops too.
                Forward(stop);
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
