using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using ZeroDowntime.Hosting.Handoff;
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
    /// <c>ZeroDowntime:LogFiles</c> section (<see cref="LogFileHandoffOptions"/>); invalid options stop the host at
    /// start with every problem listed. Call it before anything logs through NLog; use it with <c>UseZeroDowntime()</c>
    /// and NLog.Web.AspNetCore's <c>UseNLog()</c>.
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
    public static IWebHostBuilder UseZeroDowntimeNLog(this IWebHostBuilder builder, Action<LogFileHandoffOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(configure);

        builder.ConfigureServices((context, services) =>
        {
            // A second call changes nothing.
            if (services.Any(d => d.ServiceType == typeof(LogFileHandoff)))
            {
                return;
            }

            services.AddOptions<LogFileHandoffOptions>().ValidateOnStart();
            services.TryAddEnumerable(ServiceDescriptor.Singleton<IConfigureOptions<LogFileHandoffOptions>, LogFileHandoffOptionsBinder>());
            services.Configure(configure);
            services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<LogFileHandoffOptions>, LogFileHandoffOptionsValidator>());
            services.TryAddSingleton<ZeroDowntime.Hosting.Handoff.ProcessExitHooks>();

            // The handoff is created now, before the host is built, so that the configuration NLog loads when its
            // logger provider is created gets its file targets wrapped before the first line is written; so its options
            // are read here too, the same way.
            var options = new LogFileHandoffOptions();
            LogFileHandoffSettings.Apply(context.Configuration, options);
            configure(options);
            if (!options.Enabled)
            {
                return;
            }

            // Invalid options stop the host at start (above). Until then this process holds its lines like any other,
            // with the defaults standing in, so that its last lines (the failure) reach an archive of its own and never
            // a file that another process owns.
            if (LogFileHandoffOptionsValidator.Problems(options).Count > 0)
            {
                options = new LogFileHandoffOptions { LogFactory = options.LogFactory };
            }

            var handoff = new LogFileHandoff(options);
            handoff.Attach(options.LogFactory ?? global::NLog.LogManager.LogFactory);
            services.AddSingleton(handoff);
            services.AddSingleton<IHandoffParticipant>(sp => LogFileHandoffParticipant.Create(handoff, sp.GetRequiredService<ILoggerFactory>()));

            // The core tells every participant when this process owns its files, with handoffs or without. This makes
            // sure it does so when UseZeroDowntime() is not called at all (once, and it stands aside for handoffs).
            FirstStartParticipantRunner.Register(services);
        });
        return builder;
    }
}
