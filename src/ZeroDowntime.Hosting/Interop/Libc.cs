using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace ZeroDowntime.Hosting.Interop;

/// <summary>
/// The few libc calls that .NET has no managed API for (fd passing: dotnet/runtime#932) or that must not go
/// through an owning <see cref="System.Net.Sockets.Socket"/> because the socket is shared with another process.
/// Layouts are glibc's, identical on x64 and arm64.
/// </summary>
internal static unsafe partial class Libc
{
    private const string LibraryName = "libc";

    public const int SOL_SOCKET = 1;
    public const int SCM_RIGHTS = 1;
    public const int SO_PEERCRED = 17;
    public const int MSG_DONTWAIT = 0x40;
    public const int MSG_NOSIGNAL = 0x4000;
    public const int MSG_CTRUNC = 0x8;
    public const int MSG_CMSG_CLOEXEC = 0x40000000;

    public const int ESRCH = 3;
    public const int EINTR = 4;
    public const int ECHILD = 10;
    public const int EAGAIN = 11;

    public const int AT_FDCWD = -100;
    public const int AT_SYMLINK_NOFOLLOW = 0x100;
    public const uint STATX_BASIC_STATS = 0x7ff;

    public const int S_IFMT = 0xF000;
    public const int S_IFSOCK = 0xC000;
    public const int S_IFDIR = 0x4000;
    public const int S_IFLNK = 0xA000;
    public const int S_IFREG = 0x8000;

    [StructLayout(LayoutKind.Sequential)]
    public struct IoVec
    {
        public void* Base;
        public nuint Length;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct MsgHdr
    {
        public void* Name;
        public uint NameLength;
        public IoVec* Iov;
        public nuint IovLength;
        public void* Control;
        public nuint ControlLength;
        public int Flags;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct CmsgHdr
    {
        public nuint Length;
        public int Level;
        public int Type;
    }

    /// <summary>The fields of <c>struct statx</c> (256 bytes, same layout on every architecture) that we read.</summary>
    [StructLayout(LayoutKind.Explicit, Size = 256)]
    public struct StatX
    {
        [FieldOffset(0)] public uint Mask;
        [FieldOffset(20)] public uint Uid;
        [FieldOffset(24)] public uint Gid;
        [FieldOffset(28)] public ushort Mode;
        [FieldOffset(32)] public ulong Inode;
        [FieldOffset(40)] public ulong Size;
        [FieldOffset(136)] public uint DevMajor;
        [FieldOffset(140)] public uint DevMinor;
    }

    public static int CmsgAlign(int length) => (length + 7) & ~7;

    public static int CmsgSpace(int dataLength) => CmsgAlign(dataLength) + sizeof(CmsgHdr);

    public static int CmsgLen(int dataLength) => sizeof(CmsgHdr) + dataLength;

    // The socket is passed as its SafeHandle, which the marshaller references for the length of the call: a
    // concurrent Dispose then defers the close(2) until the call returns, so the number can never be reused by another
    // file mid-call (a frame written into an unrelated socket), and a disposed socket throws ObjectDisposedException.
    [LibraryImport(LibraryName, SetLastError = true)]
    public static partial nint sendmsg(SafeSocketHandle socket, MsgHdr* message, int flags);

    [LibraryImport(LibraryName, SetLastError = true)]
    public static partial nint recvmsg(SafeSocketHandle socket, MsgHdr* message, int flags);

    [LibraryImport(LibraryName, SetLastError = true)]
    public static partial int close(int fd);

    [LibraryImport(LibraryName)]
    public static partial uint geteuid();

    public const int PRIO_PROCESS = 0;

    /// <summary>The calling thread's id: on Linux, <see cref="setpriority"/> with it changes that one thread's nice value.</summary>
    [LibraryImport(LibraryName)]
    public static partial int gettid();

    [LibraryImport(LibraryName, SetLastError = true)]
    public static partial int setpriority(int which, int who, int priority);

    [LibraryImport(LibraryName, SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int statx(int dirFd, string path, int flags, uint mask, StatX* buffer);

    [LibraryImport(LibraryName, SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int rename(string oldPath, string newPath);

    [LibraryImport(LibraryName, SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int chmod(string path, uint mode);

    public const int AF_UNIX = 1;
    public const int SOCK_STREAM = 1;
    public const int SOCK_CLOEXEC = 0x80000;
    public const int O_CLOEXEC = 0x80000;

    [LibraryImport(LibraryName, SetLastError = true)]
    public static partial int socket(int domain, int type, int protocol);

    [LibraryImport(LibraryName, SetLastError = true)]
    public static partial int dup3(int oldFd, int newFd, int flags);

    [LibraryImport(LibraryName, SetLastError = true)]
    public static partial int fcntl(int fd, int command, int argument);

    /// <summary>
    /// On a listening socket, <c>SHUT_RD</c> stops it listening for every process that holds it (TCP: the kernel then
    /// refuses; Unix: connect gets ECONNREFUSED) and resets what waits in its queue. Only for a listener that nobody
    /// will ever serve.
    /// </summary>
    [LibraryImport(LibraryName, SetLastError = true)]
    public static partial int shutdown(int fd, int how);

    public const int SHUT_RDWR = 2;

    public const int F_GETFD = 1;

    /// <summary>Returns <c>statx</c> of <paramref name="path"/> (not following a final symlink unless asked), or null when it does not exist.</summary>
    public static StatX? TryStat(string path, bool followSymlinks = false)
    {
        StatX result;
        if (statx(AT_FDCWD, path, followSymlinks ? 0 : AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, &result) != 0)
        {
            return null;
        }

        return result;
    }
}
