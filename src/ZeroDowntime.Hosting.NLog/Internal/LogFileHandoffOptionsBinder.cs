using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Options;

namespace ZeroDowntime.Hosting.NLog.Internal;

/// <summary>Binds <see cref="LogFileHandoffOptions"/> from the <c>ZeroDowntime:LogFiles</c> section (through <see cref="LogFileHandoffSettings"/>).</summary>
internal sealed class LogFileHandoffOptionsBinder(IConfiguration configuration) : IConfigureOptions<LogFileHandoffOptions>
{
    public void Configure(LogFileHandoffOptions options) => LogFileHandoffSettings.Apply(configuration, options);
}
