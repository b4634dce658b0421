using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using ZeroDowntime.Hosting.NLog.Internal;

namespace ZeroDowntime.Hosting.NLog;

/// <summary>Lets NLog's log files change hands with the listeners at a ZeroDowntime.Hosting handoff.</summary>
public static class ZeroDowntimeNLogWebHostBuilderExtensions
{
    /// <summary>
    /// Makes every NLog <c>FileTarget</c> of the app change hands at a handoff: the old process renames its file to an
    /// archive name that carries its pid at the commit point and writes its remaining lines there; the new process
    /// holds its lines (in memory, then in a side file) until then and opens the original name only afterwards. A
    /// successor that fails writes its held lines to an archive of its own. Configured from the
    /// <c>ZeroDowntime:LogFiles</c> section (<see cref="LogFileHandoffOptions"/>). Call it before anything logs
    /// through NLog; use it with <c>UseZeroDowntime()</c> and NLog.Web.AspNetCore's <c>UseNLog()</c>.
    /// </summary>
    /// <param name="builder">The web host builder, for example <c>WebApplicationBuilder.WebHost</c>.</param>
    /// <returns>The same builder.</returns>
    public static IWebHostBuilder UseZeroDowntimeNLog(this IWebHostBuilder builder) => builder.UseZeroDowntimeNLog(static _ => { });

    /// <summary>
    /// Makes every NLog <c>FileTarget</c> of the app change hands at a handoff, with options configured in code after
    /// the <c>ZeroDowntime:LogFiles</c> configuration section is applied.
    /// </summary>
    /// <param name="builder">The web host builder, for example <c>WebApplicationBuilder.WebHost</c>.</param>
    /// <param name="configure">Changes the options after configuration binding.</param>
    /// <returns>The same builder.</returns>
    /// <exception cref="InvalidOperationException">The options are invalid (every problem is listed).</exception>
    public static IWebHostBuilder UseZeroDowntimeNLog(this IWebHostBuilder builder, Action<LogFileHandoffOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(configure);

        builder.ConfigureServices((context, services) =>
        {
            if (services.Any(d => d.ServiceType == typeof(LogFileHandoff)))
            {
                return;
            }

            var options = new LogFileHandoffOptions();
            LogFileHandoffSettings.Apply(context.Configuration, options);
            configure(options);
            Validate(options);
            if (!options.Enabled)
            {
                return;
            }

            // Created now, before the host is built, so that the configuration NLog loads when its logger provider is
            // created gets its file targets wrapped before the first line is written.
            var handoff = new LogFileHandoff(options);
            handoff.Attach(options.LogFactory ?? global::NLog.LogManager.LogFactory);
            services.AddSingleton(handoff);
            services.AddSingleton<LogFileHandoffParticipant>();
            services.AddSingleton<IHandoffParticipant>(sp => sp.GetRequiredService<LogFileHandoffParticipant>());
            services.AddHostedService<LogFileHandoffStarter>();
        });
        return builder;
    }

    private static void Validate(LogFileHandoffOptions options)
    {
        var errors = new List<string>(ArchiveFileNamer.Validate(options.ArchiveFileName));
        if (options.MaxHeldLines < 0)
        {
            errors.Add($"MaxHeldLines must be zero or more, not {options.MaxHeldLines}.");
        }

        if (errors.Count > 0)
        {
            throw new InvalidOperationException(
                $"Invalid {LogFileHandoffOptions.SectionName} options:{Environment.NewLine}  {string.Join(Environment.NewLine + "  ", errors)}");
        }
    }
}
