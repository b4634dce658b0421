using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using ZeroDowntime.Hosting.Systemd;

namespace ZeroDowntime.Hosting.Listeners;

/// <summary>What kind of endpoint a <see cref="ListenerKey"/> names.</summary>
internal enum ListenerTransport
{
    /// <summary>A TCP endpoint: <see cref="ListenerKey.Tcp"/> is the address and port as configured.</summary>
    Tcp,

    /// <summary>A Unix domain socket at an absolute path (<see cref="ListenerKey.UnixPath"/>).</summary>
    Unix,

    /// <summary>
    /// A key this build does not understand, received from another build. It is kept as text (so it never matches an
    /// endpoint of ours and is closed as unused) rather than failing the whole handoff.
    /// </summary>
    Unrecognized,
}

/// <summary>
/// The identity of a listener across versions: the endpoint as the app configures it, not as the kernel bound
/// it. So <c>127.0.0.1:0</c> keeps its key (and its port) from one version to the next, <c>localhost</c> is two
/// keys (127.0.0.1 and ::1), <c>*</c> is one (the dual-mode [::]), and a Unix socket is its absolute path. The same
/// TCP endpoint configured twice is told apart by <see cref="Occurrence"/>, its order of binding.
/// </summary>
/// <remarks>
/// The key travels as text (<c>ListenerDescriptor.Key</c> in the Welcome and Status frames), and every build, older
/// and newer, must read what another wrote: <see cref="ToString"/> and <see cref="Parse"/> are exactly the forms of
/// the string keys that came before this type, <c>tcp:127.0.0.1:80</c>, <c>tcp:[::1]:80</c>, <c>unix:/abs/path</c>,
/// and a <c>#n</c> suffix (n ≥ 2) for a repeated TCP endpoint.
/// </remarks>
internal sealed record ListenerKey
{
    private const string TcpPrefix = "tcp:";
    private const string UnixPrefix = "unix:";

    private readonly string _text;

    private ListenerKey(ListenerTransport transport, IPEndPoint? tcp, string? unixPath, int occurrence, string text)
    {
        Transport = transport;
        Tcp = tcp;
        UnixPath = unixPath;
        Occurrence = occurrence;
        _text = text;
    }

    public ListenerTransport Transport { get; }

    /// <summary>The configured address and port of a TCP key (port 0 stays 0); null otherwise.</summary>
    public IPEndPoint? Tcp { get; }

    /// <summary>The absolute path of a Unix key; null otherwise. The registry deletes this file, never a parsed string.</summary>
    public string? UnixPath { get; }

    /// <summary>1 for the first listener with this endpoint, n for the n-th (the wire's <c>#n</c>).</summary>
    public int Occurrence { get; }

    /// <summary>
    /// The key of an endpoint Kestrel asks for, or null when it cannot be handed over (an abstract or unnamed Unix
    /// socket, anything else). A file handle (Kestrel's <c>ListenHandle</c>, <c>UseSystemd()</c>) has the key of its bound address.
    /// </summary>
    public static ListenerKey? For(EndPoint endPoint) => endPoint switch
    {
        IPEndPoint ip => ForTcp(new IPEndPoint(ip.Address, ip.Port), occurrence: 1),
        UnixDomainSocketEndPoint unix when unix.ToString() is { Length: > 0 } path && path[0] != '\0' && path[0] != '@'
            => ForUnix(Path.GetFullPath(path)),
        // Kestrel's ListenHandle and UseSystemd(): the socket behind the handle is handed over like any other, under
        // the key of the address it is bound to.
        Microsoft.AspNetCore.Connections.FileHandleEndPoint handle
            when SocketActivation.ListeningStreamSocketAddress(checked((int)handle.FileHandle)) is { } bound and not Microsoft.AspNetCore.Connections.FileHandleEndPoint
            => For(bound),
        _ => null,
    };

    /// <summary>
    /// Reads a key written by any build. Never throws: a form this build does not know is kept as
    /// <see cref="ListenerTransport.Unrecognized"/>, and formats back to the same text.
    /// </summary>
    public static ListenerKey Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (TryParseTcp(text, out var tcp))
        {
            return tcp;
        }

        // A Unix path is everything after the prefix, '#' included: one path can be bound only once, so no Unix key
        // ever carried an occurrence suffix, and "/run/app#2.sock" is a legal file name.
        if (text.StartsWith(UnixPrefix, StringComparison.Ordinal) && text.Length > UnixPrefix.Length && text[UnixPrefix.Length] == '/')
        {
            return ForUnix(text[UnixPrefix.Length..]);
        }

        return new ListenerKey(ListenerTransport.Unrecognized, null, null, 1, text);
    }

    /// <summary>The same endpoint, bound for the <paramref name="occurrence"/>-th time in this configuration.</summary>
    public ListenerKey WithOccurrence(int occurrence)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(occurrence, 1);
        return Transport == ListenerTransport.Tcp
            ? ForTcp(Tcp!, occurrence)
            : throw new InvalidOperationException($"Only a TCP endpoint can be configured more than once, not {this}.");
    }

    /// <summary>The wire form (see the type's remarks). Also the form in log lines.</summary>
    public override string ToString() => _text;

    public bool Equals(ListenerKey? other) => other is not null && string.Equals(_text, other._text, StringComparison.Ordinal);

    public override int GetHashCode() => StringComparer.Ordinal.GetHashCode(_text);

    /// <summary>How a bound endpoint is shown in logs and in the Welcome frame's second field (informational only).</summary>
    public static string Describe(EndPoint endPoint) => endPoint switch
    {
        IPEndPoint ip => ip.AddressFamily == AddressFamily.InterNetworkV6 ? $"[{ip.Address}]:{ip.Port}" : $"{ip.Address}:{ip.Port}",
        UnixDomainSocketEndPoint unix => "unix:" + unix,
        _ => endPoint.ToString() ?? endPoint.GetType().Name,
    };

    private static ListenerKey ForTcp(IPEndPoint endPoint, int occurrence)
    {
        string address = endPoint.AddressFamily == AddressFamily.InterNetworkV6 ? $"[{endPoint.Address}]" : endPoint.Address.ToString();
        string text = string.Create(CultureInfo.InvariantCulture, $"{TcpPrefix}{address}:{endPoint.Port}");
        if (occurrence > 1)
        {
            text = string.Create(CultureInfo.InvariantCulture, $"{text}#{occurrence}");
        }

        return new ListenerKey(ListenerTransport.Tcp, endPoint, null, occurrence, text);
    }

    private static ListenerKey ForUnix(string absolutePath) =>
        new(ListenerTransport.Unix, null, absolutePath, 1, UnixPrefix + absolutePath);

    /// <summary>
    /// <c>tcp:</c> address <c>:</c> port [<c>#</c> n]. Accepted only when it formats back to the very same text, so that
    /// a key read from the wire and the key of our own endpoint are equal exactly when the strings were.
    /// </summary>
    private static bool TryParseTcp(string text, [NotNullWhen(true)] out ListenerKey? key)
    {
        key = null;
        if (!text.StartsWith(TcpPrefix, StringComparison.Ordinal))
        {
            return false;
        }

        var rest = text.AsSpan(TcpPrefix.Length);
        int occurrence = 1;
        int hash = rest.LastIndexOf('#');
        if (hash >= 0)
        {
            if (!int.TryParse(rest[(hash + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out occurrence) || occurrence < 2)
            {
                return false;
            }

            rest = rest[..hash];
        }

        int colon = rest.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(rest[(colon + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out int port) || port > IPEndPoint.MaxPort)
        {
            return false;
        }

        var host = rest[..colon];
        if (host.Length > 2 && host[0] == '[' && host[^1] == ']')
        {
            host = host[1..^1];
        }

        if (!IPAddress.TryParse(host, out var address))
        {
            return false;
        }

        var parsed = ForTcp(new IPEndPoint(address, port), occurrence);
        if (!string.Equals(parsed._text, text, StringComparison.Ordinal))
        {
            return false;
        }

        key = parsed;
        return true;
    }
}
