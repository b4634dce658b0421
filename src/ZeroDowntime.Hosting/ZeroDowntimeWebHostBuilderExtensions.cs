using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.SignalR;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using ZeroDowntime.Hosting.Diagnostics;
using ZeroDowntime.Hosting.Drain;
using ZeroDowntime.Hosting.Handoff;
using ZeroDowntime.Hosting.Listeners;
using ZeroDowntime.Hosting.Logging;
using ZeroDowntime.Hosting.Testing;

namespace ZeroDowntime.Hosting;

/// <summary>Adds zero-downtime handoffs to an ASP.NET Core app served by Kestrel.</summary>
public static class ZeroDowntimeWebHostBuilderExtensions
{
    /// <summary>
    /// Lets the next version of this app take over Kestrel's listening sockets while this one runs: start the new
    /// version and it receives every listener over a Unix domain socket (<c>SCM_RIGHTS</c>, see unix(7)), starts on
    /// them, and once it has started this process stops accepting, drains and exits. Configured from the
    /// <c>ZeroDowntime</c> configuration section (<see cref="ZeroDowntimeOptions"/>). Off Linux it logs one warning
    /// and changes nothing.
    /// </summary>
    /// <param name="builder">The web host builder, for example <c>WebApplicationBuilder.WebHost</c>.</param>
    /// <returns>The same builder.</returns>
    public static IWebHostBuilder UseZeroDowntime(this IWebHostBuilder builder) => builder.UseZeroDowntime(static _ => { });

    /// <summary>
    /// Lets the next version of this app take over Kestrel's listening sockets while this one runs, with options
    /// configured in code after the <c>ZeroDowntime</c> configuration section is applied.
    /// </summary>
    /// <param name="builder">The web host builder, for example <c>WebApplicationBuilder.WebHost</c>.</param>
    /// <param name="configure">Changes the options after configuration binding.</param>
    /// <returns>The same builder.</returns>
    public static IWebHostBuilder UseZeroDowntime(this IWebHostBuilder builder, Action<ZeroDowntimeOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(configure);

        builder.ConfigureServices(services =>
        {
            services.AddOptions<ZeroDowntimeOptions>().ValidateOnStart();
            services.AddSingleton<IConfigureOptions<ZeroDowntimeOptions>, ZeroDowntimeOptionsBinder>();
            services.Configure(configure);
            services.TryAddEnumerable(ServiceDescriptor.Singleton<IPostConfigureOptions<ZeroDowntimeOptions>, ZeroDowntimeOptionsDefaults>());
            services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<ZeroDowntimeOptions>, ZeroDowntimeOptionsValidator>());
            services.TryAddSingleton<ProcessExitHooks>();

            if (!OperatingSystem.IsLinux())
            {
                services.TryAddSingleton<IZeroDowntimeLifetime, ZeroDowntimeLifetime>();
                services.AddHostedService<UnsupportedPlatformNotice>();
                FirstStartParticipantRunner.Register(services);
                return;
            }

            // Everything is registered, and each part decides once from the bound options (Enabled, as every other key)
            // when the host starts: with Enabled=false the listener factory binds nothing (Kestrel's own transport
            // does), the coordinator, the filters, the notices and the timeline stand aside, and the first-start runner
            // tells the participants that they own their resources. So the configure callback runs once, in the
            // options pipeline, and a configuration source added after this call counts like any other.
            FirstStartParticipantRunner.Register(services);
            FirstStartParticipantRunner.CoordinatorCallsParticipantsWhenEnabled(services);

            services.TryAddSingleton(TimeProvider.System);
            services.TryAddSingleton<ZeroDowntimeLifetime>();
            services.TryAddSingleton<IZeroDowntimeLifetime>(sp => sp.GetRequiredService<ZeroDowntimeLifetime>());
            services.TryAddSingleton(sp => new ListenerRegistry(sp.GetRequiredService<ILoggerFactory>().CreateLogger(LogCategories.Listeners), sp.GetRequiredService<IOptions<ZeroDowntimeOptions>>()));
            services.TryAddSingleton<AcceptGate>();
            services.TryAddSingleton<Probation.ProbationWatch>();
            services.TryAddSingleton(sp => new ConnectionTracker(sp.GetRequiredService<ILoggerFactory>().CreateLogger(LogCategories.Drain)));
            services.TryAddSingleton(sp => sp.GetRequiredService<ConnectionTracker>().LongLived);

            // SignalR connections become known to the drain (a hub filter; nothing happens in an app without SignalR).
            services.TryAddSingleton<SignalRDrainFilter>();
            services.Configure<HubOptions>(hubs => hubs.AddFilter<SignalRDrainFilter>());
            services.AddMetrics();
            services.TryAddSingleton<ZeroDowntimeMetrics>();

            // Registered after Kestrel's socket transport, so Kestrel asks this factory first.
            services.TryAddSingleton<HandoffListenerFactory>();
            services.AddSingleton<IConnectionListenerFactory>(sp => sp.GetRequiredService<HandoffListenerFactory>());

            // HTTP/3 (QUIC) cannot be handed over: say so for every such endpoint.
            Http3HandoffNotice.Decorate(services);

            // First in the pipeline, so every response of a draining process can say "Connection: close".
            services.Insert(0, ServiceDescriptor.Singleton<IStartupFilter, DrainStartupFilter>());

            // The tests' fault seam, when the app registered one (only the sample's test build does).
            services.TryAddSingleton(sp => new HandoffFaultPoints(sp.GetKeyedService<Func<string, Func<CancellationToken, Task>?>>(HandoffFaultPoints.ServiceKey)));

            // First: where the configuration came from, before any line of the handoff (and so before any failure).
            services.AddHostedService<StartupConfigurationNotice>();

            // The warm-up and the readiness gate, which run before this process accepts (before Ready). The warm-up's
            // filter is first in the pipeline too: it tells the app's answers from Kestrel's.
            services.TryAddSingleton(Warmup.TakeoverPreparation.Create);
            services.TryAddSingleton<Warmup.WarmupStartupFilter>();
            services.Insert(0, ServiceDescriptor.Singleton<IStartupFilter>(sp => sp.GetRequiredService<Warmup.WarmupStartupFilter>()));
            services.TryAddSingleton<HandoffCoordinator>();
            services.AddHostedService(sp => sp.GetRequiredService<HandoffCoordinator>());

            // After the coordinator: when the timeline's StartingAsync runs, the coordinator's has received the listeners.
            StartupTimeline.Register(services);
        });
        return builder;
    }
}
