namespace ZeroDowntime.Hosting.FunctionalTests;

internal static partial class Native
{
    [System.Runtime.InteropServices.LibraryImport("libc", SetLastError = true, StringMarshalling = System.Runtime.InteropServices.StringMarshalling.Utf8)]
    internal static partial int lchown(string path, int uid, int gid);
}
