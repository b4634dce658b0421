using System.Runtime.InteropServices;

namespace ZeroDowntime.Hosting.Interop;

/// <summary>
/// <c>kill(2)</c>: <see cref="System.Diagnostics.Process.Kill()"/> only sends SIGKILL, and a child that is stopped should
/// first be asked (SIGTERM). And which signals this process ignores (<c>SigIgn</c> in <c>/proc/self/status</c>).
/// </summary>
internal static partial class Libc
{
    public const int SIGHUP = 1;
    public const int SIGINT = 2;
    public const int SIGQUIT = 3;
    public const int SIGKILL = 9;
    public const int SIGUSR1 = 10;
    public const int SIGUSR2 = 12;
    public const int SIGTERM = 15;
    public const int SIGSTOP = 19;

    /// <summary>
    /// True when this process ignores <paramref name="signal"/>. A disposition of SIG_IGN is inherited across exec
    /// (nohup, some supervisors and shells), and the .NET runtime leaves such a signal ignored even when a
    /// <see cref="PosixSignalRegistration"/> asks for it: the handler then never runs. False when unknown.
    /// </summary>
    public static bool IsSignalIgnored(int signal)
    {
        try
        {
            foreach (string line in File.ReadLines("/proc/self/status"))
            {
                if (line.StartsWith("SigIgn:", StringComparison.Ordinal))
                {
                    return IsSignalInMask(line["SigIgn:".Length..], signal);
                }
            }
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }

        return false;
    }

    /// <summary>Reads a <c>/proc</c> signal mask (hexadecimal, bit <c>n - 1</c> for signal <c>n</c>).</summary>
    internal static bool IsSignalInMask(string hexMask, int signal) =>
        ulong.TryParse(hexMask.Trim(), System.Globalization.NumberStyles.HexNumber, System.Globalization.CultureInfo.InvariantCulture, out ulong mask)
        && signal is >= 1 and <= 64
        && (mask & (1UL << (signal - 1))) != 0;

    [LibraryImport(LibraryName, SetLastError = true)]
    public static partial int kill(int pid, int signal);
}
