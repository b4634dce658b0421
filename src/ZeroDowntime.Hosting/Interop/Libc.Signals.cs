using System.Runtime.InteropServices;

namespace ZeroDowntime.Hosting.Interop;

/// <summary>
/// <c>kill(2)</c>: <see cref="System.Diagnostics.Process.Kill()"/> only sends SIGKILL, and a child that is stopped should
/// first be asked (SIGTERM).
/// </summary>
internal static partial class Libc
{
    public const int SIGTERM = 15;

    [LibraryImport(LibraryName, SetLastError = true)]
    public static partial int kill(int pid, int signal);
}
