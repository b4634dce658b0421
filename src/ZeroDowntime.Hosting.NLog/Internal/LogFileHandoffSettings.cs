using Microsoft.Extensions.Configuration;

namespace ZeroDowntime.Hosting.NLog.Internal;

/// <summary>
/// Reads the configurable keys of <see cref="LogFileHandoffOptions"/> from the <c>ZeroDowntime:LogFiles</c> section, as the
/// core reads its own (<see cref="ConfigurationValues"/>): a value that cannot be parsed keeps its default and is
/// recorded in <see cref="LogFileHandoffOptions.BindingErrors"/>, reported at start with every other problem, instead of
/// throwing from <c>UseZeroDowntimeNLog()</c>. <see cref="LogFileHandoffOptions.LogFactory"/> is not configuration.
/// </summary>
internal static class LogFileHandoffSettings
{
    /// <summary>Applies the keys of the <c>ZeroDowntime:LogFiles</c> section that are set to <paramref name="options"/>.</summary>
    public static void Apply(IConfiguration configuration, LogFileHandoffOptions options)
    {
        var values = new ConfigurationValues(configuration.GetSection(LogFileHandoffOptions.SectionName), options.BindingErrors);
        options.Enabled = values.Boolean(nameof(options.Enabled), options.Enabled);
        options.ArchiveFileName = values.String(nameof(options.ArchiveFileName), options.ArchiveFileName)!;
        options.MaxHeldLines = values.Integer(nameof(options.MaxHeldLines), options.MaxHeldLines);
    }
}
