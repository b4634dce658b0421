using System.Runtime.InteropServices;
using ZeroDowntime.Hosting.Interop;

namespace ZeroDowntime.Hosting.NLog.Internal;

/// <summary>
/// Renames a file only if the new name is free, in one step where the platform allows it: Linux's
/// <c>renameat2(RENAME_NOREPLACE)</c> (rename(2)) fails with <c>EEXIST</c> instead of replacing a file created at the
/// new name a moment earlier. .NET's <see cref="File.Move(string, string)"/> checks and renames in two calls, so a file
/// created between them would be replaced (unlinked while another process writes it); it is used only where
/// <c>renameat2</c> is missing (other systems, old C libraries, file systems without the flag).
/// </summary>
internal static class NoReplaceRename
{
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
                if (Libc.renameat2(Libc.AT_FDCWD, from, Libc.AT_FDCWD, to, Libc.RENAME_NOREPLACE) == 0)
                {
                    return true;
                }

                int errno = Marshal.GetLastPInvokeError();
                if (errno == Libc.EEXIST)
                {
                    return false;
                }

                if (errno is not (Libc.EINVAL or Libc.ENOSYS))
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
}
