using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace ZeroDowntime.Hosting.Interop;

/// <summary>What <see cref="UnixSocketFile.RemoveIfSame"/> did.</summary>
internal enum UnixSocketFileRemoval
{
    /// <summary>The path named the file; now it names nothing.</summary>
    Removed,

    /// <summary>The path named nothing (someone removed the file already).</summary>
    Gone,

    /// <summary>The path names another file (a process that started later bound it): left as it is.</summary>
    Kept,

    /// <summary>
    /// Another file was taken off the path in the instant of a race and could not be put back, because yet another one
    /// took the path meanwhile: it stays under the aside name that the detail gives.
    /// </summary>
    Displaced,

    /// <summary>The file could not be taken off the path (permissions): nothing changed.</summary>
    Failed,
}

/// <summary>
/// Removes a Unix socket file only if the path still names the very file this process bound. By the time a process
/// removes its socket file (a plain shutdown, after its drain), a process that started since may have replaced that file
/// with its own and be serving on it; removing by name would leave that process on an unlinked socket that no client
/// can reach (issue 18 item 2).
/// </summary>
/// <remarks>
/// No system call unlinks a path only if it names a given inode, and comparing first, then unlinking, leaves an
/// instant in which another process can replace the file. So the path's file is compared, then taken off the path by a
/// <c>rename(2)</c> to a fresh random name in the same directory (one atomic step: whatever the path names is what moves),
/// compared again under that name, and only then unlinked. If another process did bind the path in that instant, its file
/// is what moved: it is put back at once with <c>RENAME_NOREPLACE</c>, so its clients could see <c>ENOENT</c> for those
/// microseconds at most, and its socket is never lost for good. Only if a third file took the path in that same instant
/// does the second stay aside (<see cref="UnixSocketFileRemoval.Displaced"/>, logged by the caller): three processes
/// binding one path within microseconds.
/// </remarks>
internal static class UnixSocketFile
{
    /// <summary>A new name in <paramref name="path"/>'s directory: a dot and 10 random hex digits, which nobody can occupy in advance.</summary>
    public static string AsidePathFor(string path) =>
        Path.Combine(Path.GetDirectoryName(path) ?? "/", "." + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(5)));

    /// <summary>
    /// Removes <paramref name="path"/> if it names the file of <paramref name="identity"/> (recorded when this process
    /// bound it); returns what it did and, when it did not remove it for an unexpected reason, why.
    /// </summary>
    /// <param name="path">The socket file's path.</param>
    /// <param name="identity">The file that this process bound at the path.</param>
    /// <param name="afterCheck">Test seam: runs between the comparison and the rename (the instant of the race).</param>
    public static (UnixSocketFileRemoval Outcome, string? Detail) RemoveIfSame(string path, UnixFileIdentity identity, Action? afterCheck = null)
    {
        if (UnixFileIdentity.Of(path) is not { } now)
        {
            return (UnixSocketFileRemoval.Gone, null);
        }

        if (!identity.IsSameFile(now))
        {
            return (UnixSocketFileRemoval.Kept, null);
        }

        afterCheck?.Invoke();
        string aside = AsidePathFor(path);
        if (Libc.renameat2(Libc.AT_FDCWD, path, Libc.AT_FDCWD, aside, Libc.RENAME_NOREPLACE) != 0)
        {
            int error = Marshal.GetLastPInvokeError();

            // A filesystem without RENAME_NOREPLACE says EINVAL: the aside name is new and random, so a plain rename
            // replaces nothing either.
            if (error == Libc.EINVAL && Libc.rename(path, aside) != 0)
            {
                error = Marshal.GetLastPInvokeError();
            }
            else if (error == Libc.EINVAL)
            {
                error = 0;
            }

            if (error == Libc.ENOENT)
            {
                return (UnixSocketFileRemoval.Gone, null);
            }

            if (error != 0)
            {
                return (UnixSocketFileRemoval.Failed, $"rename({path}, {aside}) failed with errno {error}");
            }
        }

        if (UnixFileIdentity.Of(aside) is { } moved && identity.IsSameFile(moved, renamedSince: true))
        {
            return Libc.unlink(aside) == 0
                ? (UnixSocketFileRemoval.Removed, null)
                : (UnixSocketFileRemoval.Failed, $"unlink({aside}) failed with errno {Marshal.GetLastPInvokeError()}");
        }

        // Another process bound the path in the instant between the comparison and the rename: its file is the one that
        // moved. Put it back, never over a file that took the path meanwhile.
        // Without RENAME_NOREPLACE (EINVAL), link(2) never replaces either.
        if (Libc.renameat2(Libc.AT_FDCWD, aside, Libc.AT_FDCWD, path, Libc.RENAME_NOREPLACE) == 0
            || (Marshal.GetLastPInvokeError() == Libc.EINVAL && Libc.link(aside, path) == 0 && Libc.unlink(aside) == 0))
        {
            return (UnixSocketFileRemoval.Kept, null);
        }

        return (UnixSocketFileRemoval.Displaced,
            $"another process's socket file, bound at {path} in the instant of its removal, could not be put back (errno {Marshal.GetLastPInvokeError()}) and is at {aside}");
    }
}
