using System.Net;
using System.Net.Sockets;

namespace ZeroDowntime.Hosting.Tests.Infrastructure;

/// <summary>
/// Ports for the tests' servers, chosen below the kernel's ephemeral range. Binding port 0 and closing it hands out
/// an ephemeral port, and the load tools open tens of thousands of client connections whose source ports come from
/// that very range: between the check and the server's bind, one of them (or its TIME_WAIT) can take the port.
/// Below the range no client connection ever gets one. Unique within a run (a counter), started at a random point
/// so that concurrent runs on one machine rarely meet, and each one checked free on 127.0.0.1 and ::1.
/// </summary>
internal static class Ports
{
    private const int Lowest = 20000;
    private static readonly int s_highest = EphemeralStart() - 1;
    private static int s_next = Lowest + Random.Shared.Next(Math.Max(1, s_highest - Lowest));

    public static int Next()
    {
        for (int attempt = 0; attempt < 1000; attempt++)
        {
            int port = Lowest + (Interlocked.Increment(ref s_next) - Lowest) % (s_highest - Lowest + 1);
            if (IsFree(IPAddress.Loopback, port) && IsFree(IPAddress.IPv6Loopback, port))
            {
                return port;
            }
        }

        throw new InvalidOperationException($"No free port in {Lowest}-{s_highest}.");
    }

    private static bool IsFree(IPAddress address, int port)
    {
        try
        {
            using var socket = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            socket.Bind(new IPEndPoint(address, port));
            return true;
        }
        catch (SocketException ex) when (ex.SocketErrorCode is SocketError.AddressAlreadyInUse or SocketError.AddressNotAvailable or SocketError.AccessDenied)
        {
            return ex.SocketErrorCode == SocketError.AddressNotAvailable && address.Equals(IPAddress.IPv6Loopback); // no IPv6: fine
        }
    }

    private static int EphemeralStart()
    {
        try
        {
            string[] range = File.ReadAllText("/proc/sys/net/ipv4/ip_local_port_range").Split((char[])['\t', ' ', '\n'], StringSplitOptions.RemoveEmptyEntries);
            int start = int.Parse(range[0], System.Globalization.CultureInfo.InvariantCulture);
            return start > Lowest + 1000 ? start : 32768;
        }
        catch (Exception ex) when (ex is IOException or FormatException or UnauthorizedAccessException)
        {
            return 32768;
        }
    }
}
