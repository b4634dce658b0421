using System.Runtime.ExceptionServices;
using Microsoft.Extensions.Options;

namespace ZeroDowntime.Hosting.Handoff;

/// <summary>
/// Process-wide hooks for the two things a library cannot do from inside the host: exit with a code that says
/// why start-up failed or the handoff ended (<see cref="ZeroDowntimeExitCodes"/>), and tell the predecessor why this
/// successor died before it was ready, so that its log says more than "disconnected".
/// </summary>
/// <remarks>
/// The code must hold whatever the app's <c>Main</c> does. A start-up failure of the library is noted when it is thrown
/// (first chance: <c>Main</c> may catch it and return normally), a code the library decides later is noted by
/// <see cref="ExitWith"/> (<c>Main</c> may return another <c>int</c>), and both are set again from
/// <see cref="AppDomain.ProcessExit"/>, which runs after <c>Main</c> has returned (and inside <see cref="Environment.Exit"/>):
/// the runtime exits with the exit code as it is after those handlers (verified on .NET 10, JIT and Native AOT).
/// </remarks>
internal static class ProcessExitHooks
{
    private static int s_installed;
    private static int s_hostStarted;
    private static int s_exitCode;
    private static StartFailure? s_startFailure;

    /// <summary>The successor side of this process while it has not been committed yet.</summary>
    public static volatile PredecessorLink? PendingHandoff;

    public static void Install()
    {
        if (Interlocked.Exchange(ref s_installed, 1) == 0)
        {
            AppDomain.CurrentDomain.FirstChanceException += OnFirstChanceException;
            AppDomain.CurrentDomain.UnhandledException += OnUnhandledException;
            AppDomain.CurrentDomain.ProcessExit += OnProcessExit;
        }
    }

    /// <summary>The library has decided this process's exit code (a handoff abandoned, no endpoint kept): it holds even when <c>Main</c> returns another.</summary>
    public static void ExitWith(int exitCode)
    {
        Volatile.Write(ref s_exitCode, exitCode);
        Environment.ExitCode = exitCode;
    }

    /// <summary>
    /// A host of this process has started: a start-up failure noted before (an app that retried) is forgotten, and an
    /// exception of the library's kinds from now on is not one (a configuration reload that fails to bind, say).
    /// </summary>
    public static void HostStarted()
    {
        Volatile.Write(ref s_hostStarted, 1);
        Volatile.Write(ref s_startFailure, null);
    }

    /// <summary>The exit code that the process exits with as things stand (0: none of the library's).</summary>
    internal static int PendingExitCode => Volatile.Read(ref s_exitCode) is var code and not 0 ? code : Volatile.Read(ref s_startFailure)?.ExitCode ?? 0;

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

    /// <summary>Forgets every decision (tests that run many hosts in one process).</summary>
    internal static void Reset()
    {
        Volatile.Write(ref s_exitCode, 0);
        Volatile.Write(ref s_hostStarted, 0);
        Volatile.Write(ref s_startFailure, null);
    }

    private static void OnFirstChanceException(object? sender, FirstChanceExceptionEventArgs e)
    {
        // Runs for every exception any code of the process throws: after start-up one read, and nothing that can throw.
        if (Volatile.Read(ref s_hostStarted) != 0 || Volatile.Read(ref s_startFailure) is not null)
        {
            return;
        }

        if (ReasonFor(e.Exception) is var (code, message))
        {
            Interlocked.CompareExchange(ref s_startFailure, new StartFailure(code, message), null);
        }
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

    private static void OnProcessExit(object? sender, EventArgs e)
    {
        // Main caught the library's start-up failure (or it is on its way out through Environment.Exit above).
        var failure = Volatile.Read(ref s_startFailure);
        TellPredecessor(failure is null ? "the process exited before it was ready" : $"start-up failed: {failure.Message}");
        if (PendingExitCode is var code and not 0)
        {
            Environment.ExitCode = code;
        }
    }

    private static void TellPredecessor(string reason)
    {
        Interlocked.Exchange(ref PendingHandoff, null)?.OnFailed(reason);
    }

    private sealed record StartFailure(int ExitCode, string Message);
}
