using ZeroDowntime.Hosting.Handoff;
using System.Text;
using Microsoft.Extensions.Options;
using ZeroDowntime.Hosting.Warmup;

namespace ZeroDowntime.Hosting;

/// <summary>
/// Validates <see cref="ZeroDowntimeOptions"/> at start, reporting every problem with its key: the values the binder
/// could not parse first, then every value out of range. With <see cref="ZeroDowntimeOptions.Enabled"/> false nothing is
/// checked (nothing of the library runs).
/// </summary>
internal sealed class ZeroDowntimeOptionsValidator(ProcessExitHooks? exitHooks = null) : IValidateOptions<ZeroDowntimeOptions>
{
    /// <summary>sun_path is 108 bytes including the terminating NUL (unix(7)).</summary>
    public const int MaxSocketPathBytes = 107;

    public ValidateOptionsResult Validate(string? name, ZeroDowntimeOptions options)
    {
        // The first of the library's code to run when the host starts (ValidateOnStart): from here, its start-up
        // failures (this validation's included) set the process's exit code.
        exitHooks?.Install();
        if (!options.Enabled)
        {
            return ValidateOptionsResult.Skip;
        }

        var errors = new List<string>(options.BindingErrors);
        const string Section = ZeroDowntimeOptions.SectionName;
        string? path = options.SocketPath;
        if (string.IsNullOrEmpty(path))
        {
            errors.Add($"{Section}:SocketPath is empty; give an absolute path such as /run/myapp/handoff.sock.");
        }
        else
        {
            int bytes = Encoding.UTF8.GetByteCount(path);
            if (!Path.IsPathRooted(path) || path[0] != '/')
            {
                errors.Add($"{Section}:SocketPath '{path}' must be an absolute path (abstract-namespace sockets are not allowed).");
            }

            if (path.Contains('\0', StringComparison.Ordinal))
            {
                errors.Add($"{Section}:SocketPath must not contain NUL characters.");
            }

            if (bytes > MaxSocketPathBytes)
            {
                errors.Add($"{Section}:SocketPath is {bytes} bytes long; a Unix socket path may be at most {MaxSocketPathBytes} bytes: '{path}'.");
            }
            else if (Encoding.UTF8.GetByteCount(Path.GetDirectoryName(path) ?? "/") + 1 + Handoff.HandoffSocketServer.TemporaryNameLength is var temporary
                && temporary > MaxSocketPathBytes)
            {
                errors.Add($"{Section}:SocketPath '{path}' leaves too little room: the handoff socket is bound under a temporary name of {Handoff.HandoffSocketServer.TemporaryNameLength} bytes in the same directory ({temporary} bytes in all) and then renamed over the path, and a Unix socket path may be at most {MaxSocketPathBytes} bytes; use a shorter directory.");
            }

            if (path.EndsWith('/'))
            {
                errors.Add($"{Section}:SocketPath '{path}' names a directory; give a file name too.");
            }
        }

        if (string.IsNullOrWhiteSpace(options.ApplicationId))
        {
            errors.Add($"{Section}:ApplicationId must not be empty.");
        }
        else if (Encoding.UTF8.GetByteCount(options.ApplicationId) > 256)
        {
            errors.Add($"{Section}:ApplicationId must be at most 256 bytes.");
        }

        if (options.HandoffTimeout <= TimeSpan.Zero || options.HandoffTimeout > TimeSpan.FromHours(1))
        {
            errors.Add($"{Section}:HandoffTimeout is {options.HandoffTimeout}; allowed: more than 00:00:00 and at most 01:00:00.");
        }

        if (options.DrainTimeout < TimeSpan.Zero || options.DrainTimeout > TimeSpan.FromDays(1))
        {
            errors.Add($"{Section}:DrainTimeout is {options.DrainTimeout}; allowed: 00:00:00 to 1.00:00:00.");
        }

        if (options.IdleConnectionGracePeriod < TimeSpan.Zero || options.IdleConnectionGracePeriod > options.DrainTimeout)
        {
            errors.Add($"{Section}:IdleConnectionGracePeriod is {options.IdleConnectionGracePeriod}; allowed: 00:00:00 up to DrainTimeout ({options.DrainTimeout}).");
        }

        if (options.Upgrade.WorkingDirectory is { Length: > 0 } workingDirectory && !Path.IsPathRooted(workingDirectory))
        {
            errors.Add($"{Section}:Upgrade:WorkingDirectory '{workingDirectory}' must be an absolute path.");
        }

        if (!Enum.IsDefined(options.Upgrade.Signal))
        {
            errors.Add($"{Section}:Upgrade:Signal must be SIGHUP, SIGUSR2 or None.");
        }

        if (options.ShutdownDelay < TimeSpan.Zero || options.ShutdownDelay > TimeSpan.FromMinutes(5))
        {
            errors.Add($"{Section}:ShutdownDelay is {options.ShutdownDelay}; allowed: 00:00:00 to 00:05:00 (a plain shutdown takes up to ShutdownDelay + DrainTimeout).");
        }

        if (options.MaxDrainingGenerations is < 0 or > 1000)
        {
            errors.Add($"{Section}:MaxDrainingGenerations is {options.MaxDrainingGenerations}; allowed: 0 (no bound) to 1000.");
        }

        ValidateWarmup(options, errors);
        errors.AddRange(Probation.ProbationSettingsValidator.Validate(options.Probation));
        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }

    private static void ValidateWarmup(ZeroDowntimeOptions options, List<string> errors)
    {
        const string Section = $"{ZeroDowntimeOptions.SectionName}:{nameof(ZeroDowntimeOptions.Warmup)}";
        var warmup = options.Warmup;
        for (int i = 0; i < warmup.Requests.Count; i++)
        {
            if (Warmup.WarmupRequest.Parse(warmup.Requests[i], out string? error) is null)
            {
                errors.Add($"{Section}:Requests:{i} {error}.");
            }
        }

        if (warmup.Iterations is < 1 or > 100_000)
        {
            errors.Add($"{Section}:Iterations is {warmup.Iterations}; allowed: 1 to 100000.");
        }

        if (warmup.Passes is < 1 or > 5)
        {
            errors.Add($"{Section}:Passes is {warmup.Passes}; allowed: 1 to 5.");
        }

        if (warmup.Concurrency is < 1 or > 64)
        {
            errors.Add($"{Section}:Concurrency is {warmup.Concurrency}; allowed: 1 to 64.");
        }

        if (warmup.Duration < TimeSpan.Zero || (options.HandoffTimeout > TimeSpan.Zero && warmup.Duration >= options.HandoffTimeout))
        {
            errors.Add($"{Section}:Duration is {warmup.Duration}; allowed: 00:00:00 up to (not including) HandoffTimeout ({options.HandoffTimeout}), which bounds the warm-up.");
        }

        if (string.IsNullOrWhiteSpace(warmup.Host) || Uri.CheckHostName(warmup.Host) == UriHostNameType.Unknown)
        {
            errors.Add($"{Section}:Host '{warmup.Host}' is not a host name (the Host header and TLS SNI of the warm-up requests).");
        }
    }
}
