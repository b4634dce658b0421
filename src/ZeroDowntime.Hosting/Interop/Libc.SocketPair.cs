using System.ComponentModel;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace ZeroDowntime.Hosting.Interop;

/// <summary>
/// <c>socketpair(2)</c>: two connected Unix stream sockets that no other process can reach, for the warm-up connections
/// that this process hands its own Kestrel (.NET has no managed <c>socketpair</c>).
/// </summary>
internal static partial class Libc
{
    [LibraryImport(LibraryName, SetLastError = true)]
    private static partial int socketpair(int domain, int type, int protocol, Span<int> fds);

    /// <summary>Two connected sockets, each owning its descriptor (close-on-exec, as .NET creates every socket).</summary>
    public static (Socket First, Socket Second) SocketPair()
    {
        Span<int> fds = stackalloc int[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0)
        {
            throw new Win32Exception(Marshal.GetLastPInvokeError(), "socketpair(AF_UNIX, SOCK_STREAM) failed");
        }

        return (new Socket(new SafeSocketHandle(fds[0], ownsHandle: true)), new Socket(new SafeSocketHandle(fds[1], ownsHandle: true)));
    }
}
