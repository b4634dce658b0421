using System.Runtime.InteropServices;
using ZeroDowntime.Hosting.Interop;

namespace ZeroDowntime.Hosting.Handoff;

/// <summary>
/// Start-up checks of the handoff socket's location: whoever can replace the socket file, or any directory on the way
/// to it, can hand this process a listener of their own, take ours, or (both sides check the peer's uid) block every
/// later handoff. So, as OpenSSH's <c>StrictModes</c> judges the path to <c>authorized_keys</c>:
/// <list type="bullet">
/// <item>every directory from the root to the socket's own must belong to this user or root, and no other user may write
/// it, unless it has the sticky bit (as <c>/tmp</c>: then only an entry's owner may remove or rename it, and the entries
/// on the way are ours or root's);</item>
/// <item>every symlink on the way must belong to this user or root (it sits in such a directory), and what it points to
/// is judged the same way, from the root;</item>
/// <item>missing directories are created 0700 one at a time with <c>mkdir(2)</c>, which never follows a symlink planted
/// at the name (it fails with <c>EEXIST</c>), and each is judged as it is found after that step; so whatever another
/// user put there between a check and a creation is seen by the check that follows, and once the walk is done no other
/// user can change any of it;</item>
/// <item>an existing socket path must be a socket of this user.</item>
/// </list>
/// Anything else fails the start with exit code 78 (<see cref="ZeroDowntimeExitCodes.InvalidConfiguration"/>) and a message
/// that names the path and why.
/// </summary>
internal static class SocketPathGuard
{
    private const int GroupOrOtherWrite = 0b000_010_010; // 0022
    private const int Sticky = 0b001_000_000_000;        // 01000
    private const uint PrivateDirectory = 0b111_000_000; // 0700
    private const int MaxSymlinks = 40;                  // as the kernel's ELOOP limit

    public static void EnsureSafe(string socketPath) => EnsureSafe(socketPath, null);

    /// <summary>
    /// As <see cref="EnsureSafe(string)"/>; <paramref name="beforeCreate"/> is a test seam that runs with a missing
    /// directory's path just before this process creates it (the instant another user could plant something there).
    /// </summary>
    internal static void EnsureSafe(string socketPath, Action<string>? beforeCreate)
    {
        if (!OperatingSystem.IsLinux())
        {
            throw new PlatformNotSupportedException();
        }

        uint me = Libc.geteuid();
        string directory = Path.GetDirectoryName(socketPath) ?? "/";
        int hops = 0;
        WalkDirectories(directory, me, socketPath, beforeCreate, ref hops);

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

    /// <summary>
    /// Walks <paramref name="path"/> from the root as the kernel resolves it (a symlink replaced by its target, <c>..</c>
    /// taken from the directory reached so far, never from the text), creating what is missing and judging every
    /// component by <c>lstat</c>.
    /// </summary>
    private static void WalkDirectories(string path, uint me, string socketPath, Action<string>? beforeCreate, ref int hops)
    {
        string[] parts = path.Split('/', StringSplitOptions.RemoveEmptyEntries);
        string resolved = "/";
        JudgeDirectory(resolved, Libc.TryStat(resolved) ?? throw Invalid(socketPath, "/ cannot be read"), me, socketPath);
        for (int i = 0; i < parts.Length; i++)
        {
            if (parts[i] == ".")
            {
                continue;
            }

            if (parts[i] == "..")
            {
                // `resolved` holds no symlink (each was replaced by its target), so its parent is the kernel's "..".
                resolved = Path.GetDirectoryName(resolved) ?? "/";
                continue;
            }

            string next = resolved == "/" ? "/" + parts[i] : resolved + "/" + parts[i];
            var entry = Libc.TryStat(next) ?? Create(next, socketPath, beforeCreate);
            switch (entry.Mode & Libc.S_IFMT)
            {
                case Libc.S_IFDIR:
                    JudgeDirectory(next, entry, me, socketPath);
                    resolved = next;
                    break;
                case Libc.S_IFLNK:
                    if (++hops > MaxSymlinks)
                    {
                        throw Invalid(socketPath, $"more than {MaxSymlinks} symlinks on the way to {path}");
                    }

                    if (entry.Uid != me && entry.Uid != 0)
                    {
                        throw Unsafe(socketPath, $"{next} is a symlink that belongs to uid {entry.Uid}, not to this user (uid {me}) or root: its owner could point it elsewhere at any time");
                    }

                    // Its directory (`resolved`) has been judged: no other user can replace the link.
                    string target = ReadLink(next, socketPath);
                    string rest = string.Join('/', parts[(i + 1)..]);
                    string followed = target.StartsWith('/') ? target : resolved + "/" + target;
                    WalkDirectories(rest.Length == 0 ? followed : followed + "/" + rest, me, socketPath, beforeCreate, ref hops);
                    return;
                default:
                    throw Invalid(socketPath, $"{next} is not a directory");
            }
        }
    }

    /// <summary>Creates a missing directory 0700 without following anything at its name, and returns what is there now.</summary>
    private static Libc.StatX Create(string path, string socketPath, Action<string>? beforeCreate)
    {
        beforeCreate?.Invoke(path);
        if (Libc.mkdir(path, PrivateDirectory) != 0)
        {
            // EEXIST: something appeared at the name since the lstat. It is judged below like anything found there.
            int error = Marshal.GetLastPInvokeError();
            if (error != Libc.EEXIST)
            {
                // A read-only root filesystem (a hardened container), or a parent this user may not write: say what to do.
                throw Invalid(socketPath, $"its directory {path} cannot be created: {Marshal.GetPInvokeErrorMessage(error)} (errno {error}); point ZeroDowntime:SocketPath at a directory this user can write, such as a tmpfs (/run/<app>/ from systemd's RuntimeDirectory=, or a volume mounted there in a container)");
            }
        }

        return Libc.TryStat(path) ?? throw Invalid(socketPath, $"its directory {path} vanished right after it was created");
    }

    /// <summary>A directory on the way: this user's or root's, and writable by nobody else unless sticky.</summary>
    private static void JudgeDirectory(string path, Libc.StatX directory, uint me, string socketPath)
    {
        if (directory.Uid != me && directory.Uid != 0)
        {
            throw Unsafe(socketPath, $"the directory {path} belongs to uid {directory.Uid}, not to this user (uid {me}) or root: its owner could replace what is in it at any time");
        }

        if ((directory.Mode & GroupOrOtherWrite) != 0 && (directory.Mode & Sticky) == 0)
        {
            throw Unsafe(socketPath, $"the directory {path} (mode {Convert.ToString(directory.Mode & 0xFFF, 8)}) can be written by other users and has no sticky bit, so anyone could replace what is in it");
        }
    }

    private static string ReadLink(string path, string socketPath)
    {
        try
        {
            return new FileInfo(path).LinkTarget ?? throw Invalid(socketPath, $"the symlink {path} cannot be read");
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw Invalid(socketPath, $"the symlink {path} cannot be read: {ex.Message}");
        }
    }

    private static ZeroDowntimeStartupException Unsafe(string socketPath, string why) =>
        new(ZeroDowntimeExitCodes.InvalidConfiguration, $"ZeroDowntime:SocketPath '{socketPath}' is unsafe: {why}.");

    private static ZeroDowntimeStartupException Invalid(string socketPath, string why) =>
        new(ZeroDowntimeExitCodes.InvalidConfiguration, $"ZeroDowntime:SocketPath '{socketPath}' cannot be used: {why}.");
}
