using System.Runtime.InteropServices;

namespace ZeroDowntime.Hosting.NLog.Internal;

/// <summary>
/// Renames a file only if the new name is free, in one step where the platform allows it: Linux's
/// <c>renameat2(RENAME_NOREPLACE)</c> (rename(2)) fails with <c>EEXIST</c> instead of replacing a file created at the
/// new name a moment earlier. .NET's <see cref="File.Move(string, string)"/> checks and renames in two calls, so a file
/// created between them would be replaced (unlinked while another process writes it); it is used only where
/// <c>renameat2</c> is missing (other systems, old C libraries, file systems without the flag).
/// </summary>
internal static partial class NoReplaceRename
{
    private const int AtFdCwd = -100;
    private const uint RenameNoReplace = 1;
    private const int EEXIST = 17;
    private const int EINVAL = 22;
    private const int ENOSYS = 38;

    /// <summary>
    /// Renames <paramref name="from"/> to <paramref name="to"/>; false when <paramref name="to"/> exists (nothing
    /// changed). Other failures throw <see cref="IOException"/>.
    /// </summary>
    public static bool TryMove(string from, string to)
    {
        if (OperatingSystem.IsLinux())
        {
            try
            {
                if (renameat2(AtFdCwd, from, AtFdCwd, to, RenameNoReplace) == 0)
                {
                    return true;
                }

                int errno = Marshal.GetLastPInvokeError();
                if (errno == EEXIST)
                {
                    return false;
                }

                if (errno is not (EINVAL or ENOSYS))
                {
                    throw new IOException($"could not rename {from} to {to}: {Marshal.GetPInvokeErrorMessage(errno)}");
                }
            }
            catch (EntryPointNotFoundException)
            {
                // A C library without renameat2 (glibc before 2.28): the two-step move below.
            }
        }

        if (File.Exists(to))
        {
            return false;
        }

        File.Move(from, to, overwrite: false);
        return true;
    }

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int renameat2(int oldDirFd, string oldPath, int newDirFd, string newPath, uint flags);
}
