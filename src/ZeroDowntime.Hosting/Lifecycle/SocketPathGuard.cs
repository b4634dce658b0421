using ZeroDowntime.Hosting.Interop;

namespace ZeroDowntime.Hosting.Lifecycle;

/// <summary>
/// Start-up checks of the handoff socket's location: whoever can replace the socket file can hand this process
/// a listener of their own or take ours. The directory is created 0700 when missing; a directory that other
/// users can write without the sticky bit, or a path owned by another user, is refused. Every symlink on the way
/// (in any ancestor, and in what links point to) must belong to this user or root and sit in a directory that no
/// other user can write, or a sticky one (where only the link's owner may replace it): a link another user owns, or
/// can replace, could be retargeted by them at any later deploy.
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
        EnsureSymlinksSafe(directory, me, socketPath, hops: 0);
        if (Libc.TryStat(directory) is null)
        {
            try
            {
                Directory.CreateDirectory(directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                // A read-only root filesystem (a hardened container), or a parent this user may not write: say so (exit 78).
                throw Unsafe(socketPath, $"its directory {directory} cannot be created ({ex.Message}); point ZeroDowntime:SocketPath at a directory this user can write, such as a tmpfs (/run/<app>/ from systemd's RuntimeDirectory=, or a volume mounted there in a container)");
            }
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

    /// <summary>Walks <paramref name="path"/> from the root, judging each symlink and following it.</summary>
    private static void EnsureSymlinksSafe(string path, uint me, string socketPath, int hops)
    {
        string[] parts = Path.GetFullPath(path).Split('/', StringSplitOptions.RemoveEmptyEntries);
        string resolved = "/";
        for (int i = 0; i < parts.Length; i++)
        {
            string next = Path.Combine(resolved, parts[i]);
            if (Libc.TryStat(next) is not { } entry)
            {
                return; // created below, 0700, by this process
            }

            if ((entry.Mode & Libc.S_IFMT) != Libc.S_IFLNK)
            {
                resolved = next;
                continue;
            }

            if (++hops > 40)
            {
                throw Unsafe(socketPath, $"more than 40 symlinks on the way to {path}");
            }

            if (entry.Uid != me && entry.Uid != 0)
            {
                throw Unsafe(socketPath, $"{next} is a symlink that belongs to uid {entry.Uid}, not to this user (uid {me}) or root: its owner could point it elsewhere at any time");
            }

            if (Libc.TryStat(resolved, followSymlinks: true) is { } parent
                && (parent.Mode & GroupOrOtherWrite) != 0 && (parent.Mode & Sticky) == 0)
            {
                throw Unsafe(socketPath, $"{next} is a symlink in {resolved} (mode {Convert.ToString(parent.Mode & 0xFFF, 8)}), which other users can write and has no sticky bit, so anyone could replace the link");
            }

            string target = new FileInfo(next).LinkTarget ?? throw Unsafe(socketPath, $"the symlink {next} cannot be read");
            string rest = string.Join('/', parts[(i + 1)..]);
            string followed = Path.GetFullPath(target, resolved);
            EnsureSymlinksSafe(rest.Length == 0 ? followed : Path.Combine(followed, rest), me, socketPath, hops);
            return;
        }
    }

    private static ZeroDowntimeStartupException Unsafe(string socketPath, string why) =>
        new(ZeroDowntimeExitCodes.InvalidConfiguration, $"ZeroDowntime:SocketPath '{socketPath}' is unsafe: {why}.");
}
