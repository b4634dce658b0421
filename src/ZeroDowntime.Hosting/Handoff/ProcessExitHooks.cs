using System.Runtime.ExceptionServices;
using Microsoft.Extensions.Hosting;
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
/// One instance per host (a singleton of its container), installed when the host starts: by the options validator,
/// the first of the library's code that runs then (<c>ValidateOnStart</c>), so that a configuration error is caught
/// too. Its handlers stay for the rest of the process on purpose: they must still run after <c>Main</c> has returned.
/// </remarks>
internal sealed class ProcessExitHooks(IHostApplicationLifetime? applicationLifetime = null)
{
    private int _installed;
    private int _hostStarted;
    private int _exitCode;
    private StartFailure? _startFailure;
    private PredecessorLink? _pendingHandoff;

    /// <summary>The link of this process to its predecessor while it has not been committed yet (its last words go there).</summary>
    public PredecessorLink? PendingHandoff
    {
        get => Volatile.Read(ref _pendingHandoff);
        set => Volatile.Write(ref _pendingHandoff, value);
    }

    /// <summary>Installs the process-wide handlers once; the host's start-up calls it (see the remarks).</summary>
    public void Install()
    {
        if (OperatingSystem.IsLinux() && Interlocked.Exchange(ref _installed, 1) == 0)
        {
            applicationLifetime?.ApplicationStarted.Register(HostStarted);
            AppDomain.CurrentDomain.FirstChanceException += OnFirstChanceException;
            AppDomain.CurrentDomain.UnhandledException += OnUnhandledException;
            AppDomain.CurrentDomain.ProcessExit += OnProcessExit;
        }
    }

    /// <summary>The library has decided this process's exit code (a handoff abandoned, no endpoint kept): it holds even when <c>Main</c> returns another.</summary>
    public void ExitWith(int exitCode)
    {
        Volatile.Write(ref _exitCode, exitCode);
        Environment.ExitCode = exitCode;
    }

    /// <summary>
    /// A host of this process has started: a start-up failure noted before (an app that retried) is forgotten, and an
    /// exception of the library's kinds from now on is not one (a configuration reload that fails to bind, say).
    /// </summary>
    public void HostStarted()
    {
        Volatile.Write(ref _hostStarted, 1);
        Volatile.Write(ref _startFailure, null);
    }

    /// <summary>The exit code that the process exits with as things stand (0: none of the library's).</summary>
    internal int PendingExitCode => Volatile.Read(ref _exitCode) is var code and not 0 ? code : Volatile.Read(ref _startFailure)?.ExitCode ?? 0;

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

    private void OnFirstChanceException(object? sender, FirstChanceExceptionEventArgs e)
    {
        // Runs for every exception any code of the process throws: after start-up one read, and nothing that can throw.
        if (Volatile.Read(ref _hostStarted) != 0 || Volatile.Read(ref _startFailure) is not null)
        {
            return;
        }

        if (ReasonFor(e.Exception) is var (code, message))
        {
            Interlocked.CompareExchange(ref _startFailure, new StartFailure(code, message), null);
        }
    }

    private void OnUnhandledException(object? sender, UnhandledExceptionEventArgs e)
    {
        var exception = e.ExceptionObject as Exception;
        TellPredecessor($"start-up failed: {exception?.GetType().Name}: {exception?.Message}");
        if (ReasonFor(exception) is var (code, message))
        {
            Console.Error.WriteLine($"ZeroDowntime: {message.ReplaceLineEndings(" ")} (exit code {code})");
            Environment.Exit(code);
        }
    }

    private void OnProcessExit(object? sender, EventArgs e)
    {
        // Main caught the library's start-up failure (or it is on its way out through Environment.Exit above).
        var failure = Volatile.Read(ref _startFailure);
        TellPredecessor(failure is null ? "the process exited before it was ready" : $"start-up failed: {failure.Message}");
        if (PendingExitCode is var code and not 0)
        {
            Environment.ExitCode = code;
        }
    }

    private void TellPredecessor(string reason)
    {
        Interlocked.Exchange(ref _pendingHandoff, null)?.OnFailed(reason);
    }

    private sealed record StartFailure(int ExitCode, string Message);
}
