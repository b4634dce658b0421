using Microsoft.Extensions.Configuration;

namespace ZeroDowntime.Hosting.NLog.Internal;

/// <summary>
/// The configurable keys of <see cref="LogFileHandoffOptions"/> as a plain shape for the configuration binder:
/// only strings and numbers, so that the binder's source generator (on under Native AOT and trimming) can bind it.
/// <see cref="LogFileHandoffOptions.LogFactory"/> is not configuration (an NLog object graph), so it is not here.
/// </summary>
internal sealed class LogFileHandoffSettings
{
    public bool? Enabled { get; set; }

    public string? ArchiveFileName { get; set; }

    public int? MaxHeldLines { get; set; }

    /// <summary>Binds the <c>ZeroDowntime:LogFiles</c> section and applies the keys that are set to <paramref name="options"/>.</summary>
    public static void Apply(IConfiguration configuration, LogFileHandoffOptions options)
    {
        var settings = new LogFileHandoffSettings();
        configuration.GetSection(LogFileHandoffOptions.SectionName).Bind(settings);
        if (settings.Enabled is bool enabled)
        {
            options.Enabled = enabled;
        }

        if (settings.ArchiveFileName is { } archiveFileName)
        {
            options.ArchiveFileName = archiveFileName;
        }

        if (settings.MaxHeldLines is int maxHeldLines)
        {
            options.MaxHeldLines = maxHeldLines;
        }
    }
}
