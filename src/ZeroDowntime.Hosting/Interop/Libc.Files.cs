using System.Runtime.InteropServices;

namespace ZeroDowntime.Hosting.Interop;

/// <summary>
/// File calls by name whose exact semantics .NET does not offer: a rename that never replaces (<c>renameat2</c> with
/// <c>RENAME_NOREPLACE</c>), and <c>mkdir</c>, which never follows a symlink in its last component (it fails with
/// <c>EEXIST</c> instead), where <see cref="Directory.CreateDirectory(string)"/> would follow it.
/// </summary>
internal static unsafe partial class Libc
{
    public const int ENOENT = 2;
    public const int EEXIST = 17;
    public const int EINVAL = 22;
    public const int ENOSYS = 38;

    /// <summary>statx(2): ask for the birth time too (filesystems that keep none leave it out of the mask).</summary>
    public const uint STATX_BTIME = 0x800;

    /// <summary>renameat2(2): fail with <c>EEXIST</c> rather than replace the target.</summary>
    public const uint RENAME_NOREPLACE = 1;

    [LibraryImport(LibraryName, SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int renameat2(int oldDirFd, string oldPath, int newDirFd, string newPath, uint flags);

    [LibraryImport(LibraryName, SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int unlink(string path);

    [LibraryImport(LibraryName, SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int link(string oldPath, string newPath);

    [LibraryImport(LibraryName, SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int mkdir(string path, uint mode);
}
