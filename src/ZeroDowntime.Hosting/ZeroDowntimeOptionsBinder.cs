using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Options;

namespace ZeroDowntime.Hosting;

/// <summary>Binds <see cref="ZeroDowntimeOptions"/> from configuration, turning a malformed value into a clear error.</summary>
internal sealed class ZeroDowntimeOptionsBinder(IConfiguration configuration) : IConfigureOptions<ZeroDowntimeOptions>
{
    public void Configure(ZeroDowntimeOptions options) => Bind(configuration, options);

    public static void Bind(IConfiguration configuration, ZeroDowntimeOptions options)
    {
        try
        {
            configuration.GetSection(ZeroDowntimeOptions.SectionName).Bind(options);
        }
        catch (InvalidOperationException ex)
        {
            throw new ZeroDowntimeStartupException(ZeroDowntimeExitCodes.InvalidConfiguration,
                $"Invalid ZeroDowntime configuration: {ex.Message} Durations are written [d.]hh:mm:ss[.fff], for example 00:01:00; Enabled is true or false.", ex);
        }
    }
}
