using ZeroDowntime.Hosting.Interop;

namespace ZeroDowntime.Hosting.Lifecycle;

/// <summary>
/// Start-up checks of the handoff socket's location: whoever can replace the socket file can hand this process
/// a listener of their own or take ours. The directory is created 0700 when missing; a directory that other
/// users can write without the sticky bit, or a path owned by another user, is refused.
/// </summary>
internal static class SocketPathGuard
{
    private const int GroupOrOtherWrite = 0b000_010_010; // 0022
    private const int Sticky = 0b001_000_000_000;        // 01000

    public static void EnsureSafe(string socketPath)
    {
        if (!OperatingSystem.IsLinux())
        {
            throw new PlatformNotSupportedException();
        }

        uint me = Libc.geteuid();
        string directory = Path.GetDirectoryName(socketPath) ?? "/";
        if (Libc.TryStat(directory) is null)
        {
            Directory.CreateDirectory(directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }

        // The directory may be reached through a symlink (/var/run -> /run): judge what it points to.
        var dir = Libc.TryStat(directory, followSymlinks: true) ?? throw Unsafe(socketPath, $"its directory {directory} could not be created");
        if ((dir.Mode & Libc.S_IFMT) != Libc.S_IFDIR)
        {
            throw Unsafe(socketPath, $"{directory} is not a directory");
        }

        if (dir.Uid != me && dir.Uid != 0)
        {
            throw Unsafe(socketPath, $"its directory {directory} belongs to uid {dir.Uid}, not to this user (uid {me}) or root");
        }

        if ((dir.Mode & GroupOrOtherWrite) != 0 && (dir.Mode & Sticky) == 0)
        {
            throw Unsafe(socketPath, $"its directory {directory} (mode {Convert.ToString(dir.Mode & 0xFFF, 8)}) can be written by other users and has no sticky bit, so anyone could replace the socket");
        }

        if (Libc.TryStat(socketPath) is { } file)
        {
            if ((file.Mode & Libc.S_IFMT) != Libc.S_IFSOCK)
            {
                throw Unsafe(socketPath, "it exists and is not a socket");
            }

            if (file.Uid != me)
            {
                throw Unsafe(socketPath, $"it belongs to uid {file.Uid}, not to this user (uid {me})");
            }
        }
    }

    private static ZeroDowntimeStartupException Unsafe(string socketPath, string why) =>
        new(ZeroDowntimeExitCodes.InvalidConfiguration, $"ZeroDowntime:SocketPath '{socketPath}' is unsafe: {why}.");
}
