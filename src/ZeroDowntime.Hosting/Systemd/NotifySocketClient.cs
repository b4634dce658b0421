using System.Net.Sockets;
using System.Text;

namespace ZeroDowntime.Hosting.Systemd;

/// <summary>
/// A client of systemd's <c>NOTIFY_SOCKET</c> (sd_notify(3)); named apart from Microsoft.Extensions.Hosting.Systemd's
/// public <c>SystemdNotifier</c>, which it does not replace. It tells systemd which process is the service's main
/// process: a successor started by <c>ExecReload=</c> is not detected by Microsoft.Extensions.Hosting.Systemd (its
/// parent is not systemd), so after the commit it says <c>MAINPID=&lt;its pid&gt;</c> and <c>READY=1</c> itself;
/// the unit needs <c>Type=notify</c> and <c>NotifyAccess=all</c>. Without <c>NOTIFY_SOCKET</c> nothing is sent.
/// </summary>
internal sealed class NotifySocketClient
{
    private readonly string? _socketPath;

    public NotifySocketClient()
        : this(Environment.GetEnvironmentVariable("NOTIFY_SOCKET"))
    {
    }

    /// <summary>A client of the given socket (the test seam: tests listen on a datagram socket of their own).</summary>
    internal NotifySocketClient(string? socketPath) => _socketPath = string.IsNullOrEmpty(socketPath) ? null : socketPath;

    /// <summary>The <c>NOTIFY_SOCKET</c> this process was given (read at start: a successor it starts gets it too).</summary>
    public string? SocketPath => _socketPath;

    /// <summary>This process serves (first start, after the commit, or again after a lost successor).</summary>
    public void MainProcess(string status) =>
        Notify($"MAINPID={Environment.ProcessId}\nREADY=1\nSTATUS={status}");

    public void Status(string status) => Notify($"STATUS={status}");

    /// <summary>An upgrade begins (sd_notify(3), <c>Type=notify-reload</c>): RELOADING=1 with the monotonic time.</summary>
    public void Reloading() =>
        Notify($"RELOADING=1\nMONOTONIC_USEC={MonotonicMicroseconds()}\nSTATUS=Upgrading: starting the successor");

    /// <summary>An upgrade ended without a new main process: this one is ready again.</summary>
    public void Ready(string status) => Notify($"READY=1\nSTATUS={status}");

    /// <summary>CLOCK_MONOTONIC in microseconds, which is what <see cref="System.Diagnostics.Stopwatch"/> reads on Linux.</summary>
    private static long MonotonicMicroseconds() =>
        (long)(System.Diagnostics.Stopwatch.GetTimestamp() * (1_000_000.0 / System.Diagnostics.Stopwatch.Frequency));

    private void Notify(string state)
    {
        if (_socketPath is null)
        {
            return;
        }

        // An abstract socket is written with a leading '@' in the variable and a leading NUL on the wire.
        string path = _socketPath[0] == '@' ? "\0" + _socketPath[1..] : _socketPath;
        try
        {
            using var socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
            socket.Connect(new UnixDomainSocketEndPoint(path));
            socket.Send(Encoding.UTF8.GetBytes(state));
        }
        catch (SocketException)
        {
            // systemd went away or the unit does not listen: notifications are best effort by design.
        }
    }
}
