using ZeroDowntime.Hosting.Handoff;
using Microsoft.Extensions.Options;

namespace ZeroDowntime.Hosting.NLog.Internal;

/// <summary>Validates <see cref="LogFileHandoffOptions"/> at start, reporting every problem with its key.</summary>
internal sealed class LogFileHandoffOptionsValidator(ProcessExitHooks? exitHooks = null) : IValidateOptions<LogFileHandoffOptions>
{
    public ValidateOptionsResult Validate(string? name, LogFileHandoffOptions options)
    {
        // As the core's validator: whichever of the two runs first at start installs the exit hooks (exit code 78).
        exitHooks?.Install();
        if (!options.Enabled)
        {
            return ValidateOptionsResult.Skip;
        }

        var errors = Problems(options);
        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }

    /// <summary>Every problem of <paramref name="options"/>, each naming its key; empty when they can be used.</summary>
    public static List<string> Problems(LogFileHandoffOptions options)
    {
        const string Section = LogFileHandoffOptions.SectionName;
        var errors = new List<string>(options.BindingErrors);
        errors.AddRange(ArchiveFileNamer.Validate(options.ArchiveFileName).Select(e => $"{Section}:{e}"));
        if (options.MaxHeldLines < 0)
        {
            errors.Add($"{Section}:MaxHeldLines must be zero or more, not {options.MaxHeldLines}.");
        }

        return errors;
    }
}
