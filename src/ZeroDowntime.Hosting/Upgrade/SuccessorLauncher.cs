using System.Diagnostics;
using System.Text;
using ZeroDowntime.Hosting.Interop;

namespace ZeroDowntime.Hosting.Upgrade;

/// <summary>
/// Starts this process's successor (an upgrade on a signal or on <c>zerodowntime upgrade</c>): the configured command
/// through <c>/bin/sh -c</c>, or else this process's own argv (<c>/proc/self/cmdline</c>) in the same environment. The
/// working directory is the path this process was started in as the shell named it: <c>getcwd</c>, the process path
/// and the content root are resolved to the old release's directory, and only <c>$PWD</c> (when it named the same
/// directory at start) still says <c>/srv/app/current</c>, which now leads to the new release. The successor inherits
/// stdout and stderr: the journal keeps its lines, and no pipe breaks when this process exits.
/// </summary>
internal sealed class SuccessorLauncher
{
    private readonly ZeroDowntimeUpgradeOptions _options;
    private readonly string? _notifySocket;

    public SuccessorLauncher(ZeroDowntimeUpgradeOptions options, string? notifySocket)
    {
        _options = options;
        _notifySocket = notifySocket;
        WorkingDirectory = string.IsNullOrEmpty(options.WorkingDirectory) ? StartDirectory() : options.WorkingDirectory;
    }

    /// <summary>Where the successor starts, decided at start-up (before any symlink is switched).</summary>
    public string WorkingDirectory { get; }

    /// <summary>Starts the successor; returns it and the command line, as logged.</summary>
    public (Process Process, string CommandLine) Start()
    {
        ProcessStartInfo info;
        if (!string.IsNullOrWhiteSpace(_options.Command))
        {
            info = new ProcessStartInfo("/bin/sh");
            info.ArgumentList.Add("-c");
            info.ArgumentList.Add(_options.Command);
        }
        else
        {
            string[] argv = OwnCommandLine();
            info = new ProcessStartInfo(Program(argv[0], WorkingDirectory));
            foreach (string argument in argv.AsSpan(1))
            {
                info.ArgumentList.Add(argument);
            }
        }

        info.UseShellExecute = false;
        info.WorkingDirectory = WorkingDirectory;
        info.Environment["PWD"] = WorkingDirectory;

        // The runtime may unset NOTIFY_SOCKET once read: the successor tells systemd itself that it is the main pid.
        if (_notifySocket is not null)
        {
            info.Environment["NOTIFY_SOCKET"] = _notifySocket;
        }

        var process = Process.Start(info) ?? throw new InvalidOperationException($"{info.FileName} did not start.");
        string commandLine = string.Join(' ', new[] { info.FileName }.Concat(info.ArgumentList).Select(Quote));
        return (process, commandLine);
    }

    internal static string[] OwnCommandLine()
    {
        byte[] raw = File.ReadAllBytes("/proc/self/cmdline");
        var argv = Encoding.UTF8.GetString(raw).Split('\0');
        return argv.Length > 1 && argv[^1].Length == 0 ? argv[..^1] : argv;
    }

    /// <summary>A relative program path ("./WebApi") is resolved against the new working directory, by name.</summary>
    internal static string Program(string argv0, string workingDirectory) =>
        argv0.Contains('/', StringComparison.Ordinal) && !Path.IsPathRooted(argv0)
            ? Path.GetFullPath(argv0, workingDirectory)
            : argv0;

    private static string StartDirectory()
    {
        string current = Directory.GetCurrentDirectory();
        string? pwd = Environment.GetEnvironmentVariable("PWD");
        if (string.IsNullOrEmpty(pwd) || !Path.IsPathRooted(pwd)
            || Libc.TryStat(pwd, followSymlinks: true) is not { } named || Libc.TryStat(current, followSymlinks: true) is not { } real)
        {
            return current;
        }

        return named.Inode == real.Inode && named.DevMajor == real.DevMajor && named.DevMinor == real.DevMinor ? pwd : current;
    }

    private static string Quote(string argument) =>
        argument.Length > 0 && argument.All(c => char.IsAsciiLetterOrDigit(c) || c is '/' or '.' or '-' or '_' or '=' or ':' or ',')
            ? argument
            : "'" + argument.Replace("'", "'\\''", StringComparison.Ordinal) + "'";
}
