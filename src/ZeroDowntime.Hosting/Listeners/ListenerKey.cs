using System.Net;
using System.Net.Sockets;

namespace ZeroDowntime.Hosting.Listeners;

/// <summary>
/// The identity of a listener across versions: the endpoint as the app configures it, not as the kernel bound
/// it. So <c>127.0.0.1:0</c> keeps its key (and its port) from one version to the next, <c>localhost</c> is two
/// keys (127.0.0.1 and ::1), <c>*</c> is one (the dual-mode [::]), and a Unix socket is its absolute path.
/// </summary>
internal static class ListenerKey
{
    public static string? For(EndPoint endPoint) => endPoint switch
    {
        IPEndPoint ip => ip.AddressFamily == AddressFamily.InterNetworkV6
            ? $"tcp:[{ip.Address}]:{ip.Port}"
            : $"tcp:{ip.Address}:{ip.Port}",
        UnixDomainSocketEndPoint unix when unix.ToString() is { Length: > 0 } path && path[0] != '\0' && path[0] != '@'
            => "unix:" + Path.GetFullPath(path),
        _ => null,
    };

    /// <summary>The path of a Unix endpoint, absolute (relative paths resolve against the current directory).</summary>
    public static string UnixPath(UnixDomainSocketEndPoint endPoint) => Path.GetFullPath(endPoint.ToString());

    public static string Describe(EndPoint endPoint) => endPoint switch
    {
        IPEndPoint ip => ip.AddressFamily == AddressFamily.InterNetworkV6 ? $"[{ip.Address}]:{ip.Port}" : $"{ip.Address}:{ip.Port}",
        UnixDomainSocketEndPoint unix => "unix:" + unix,
        _ => endPoint.ToString() ?? endPoint.GetType().Name,
    };
}
