using Microsoft.Extensions.Options;

namespace ZeroDowntime.Hosting.Lifecycle;

/// <summary>
/// Process-wide hooks for the two things a library cannot do from inside the host: exit with a code that says
/// why start-up failed (<see cref="ZeroDowntimeExitCodes"/>), and tell the predecessor why this successor died
/// before it was ready, so that its log says more than "disconnected".
/// </summary>
internal static class ProcessExitHooks
{
    private static int s_installed;

    /// <summary>The successor side of this process while it has not been committed yet.</summary>
    public static volatile SuccessorSide? PendingHandoff;

    public static void Install()
    {
        if (Interlocked.Exchange(ref s_installed, 1) == 0)
        {
            AppDomain.CurrentDomain.UnhandledException += OnUnhandledException;
            AppDomain.CurrentDomain.ProcessExit += OnProcessExit;
        }
    }

    internal static int? ExitCodeFor(Exception? exception) => ReasonFor(exception)?.ExitCode;

    /// <summary>The exit code and the one-line reason that the library gives for a start-up failure, if it is one.</summary>
    internal static (int ExitCode, string Message)? ReasonFor(Exception? exception)
    {
        for (var current = exception; current is not null; current = current.InnerException)
        {
            switch (current)
            {
                case ZeroDowntimeStartupException startup:
                    return (startup.ExitCode, startup.Message);
                // The core's options and a sibling package's (ZeroDowntime.Hosting.NLog's LogFiles) are configuration errors alike.
                case OptionsValidationException validation when validation.OptionsType.Namespace?.StartsWith("ZeroDowntime.Hosting", StringComparison.Ordinal) == true:
                    return (ZeroDowntimeExitCodes.InvalidConfiguration, validation.Message);
                case AggregateException aggregate:
                    foreach (var inner in aggregate.InnerExceptions)
                    {
                        if (ReasonFor(inner) is { } reason)
                        {
                            return reason;
                        }
                    }

                    break;
            }
        }

        return null;
    }

    private static void OnUnhandledException(object? sender, UnhandledExceptionEventArgs e)
    {
        var exception = e.ExceptionObject as Exception;
        TellPredecessor($"start-up failed: {exception?.GetType().Name}: {exception?.Message}");
        if (ReasonFor(exception) is var (code, message))
        {
            Console.Error.WriteLine($"ZeroDowntime: {message.ReplaceLineEndings(" ")} (exit code {code})");
            Environment.Exit(code);
        }
    }

    private static void OnProcessExit(object? sender, EventArgs e) =>
        TellPredecessor("the process exited before it was ready");

    private static void TellPredecessor(string reason)
    {
        Interlocked.Exchange(ref PendingHandoff, null)?.OnFailed(reason);
    }
}
