using System.Globalization;

namespace ZeroDowntime.Hosting.Tests.Infrastructure;

/// <summary>The server side of a TCP port in /proc/net/tcp (hex ports): connections, queued ones included.</summary>
internal static class TcpTable
{
    /// <summary>ESTABLISHED (01) sockets whose local port is this one: accepted, or completed and still in the accept queue.</summary>
    public static int CountEstablished(int port) => Count(port, state => state == "01");

    /// <summary>TIME_WAIT (06) sockets whose local port is this one: connections the server closed first, i.e. answered.</summary>
    public static int CountTimeWait(int port) => Count(port, state => state == "06");

    private static int Count(int port, Func<string, bool> state)
    {
        string hexPort = ":" + port.ToString("X4", CultureInfo.InvariantCulture);
        return File.ReadLines("/proc/net/tcp").Skip(1)
            .Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .Count(f => f.Length > 3 && f[1].EndsWith(hexPort, StringComparison.Ordinal) && state(f[3]));
    }
}
