
namespace ZeroDowntime.Hosting;

/// <summary>
/// Thrown when a process cannot start because of its handoff: invalid configuration, refused by the running
/// process, or a protocol version mismatch. Left unhandled, the process exits with <see cref="ExitCode"/>
/// (see <see cref="ZeroDowntimeExitCodes"/>).
/// </summary>
public sealed class ZeroDowntimeStartupException : Exception
{
    /// <summary>Creates the exception.</summary>
    public ZeroDowntimeStartupException(int exitCode, string message, Exception? innerException = null)
        : base(message, innerException)
    {
        ExitCode = exitCode;
    }

    /// <summary>The process exit code that says why (one of <see cref="ZeroDowntimeExitCodes"/>).</summary>
    public int ExitCode { get; }
}
