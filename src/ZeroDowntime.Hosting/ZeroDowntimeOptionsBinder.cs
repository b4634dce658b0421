using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Options;

namespace ZeroDowntime.Hosting;

/// <summary>
/// Binds <see cref="ZeroDowntimeOptions"/> from configuration. A value that cannot be parsed never throws here (this runs
/// inside <c>UseZeroDowntime()</c> itself, and again wherever the options are first resolved): it keeps its default and
/// is recorded in <see cref="ZeroDowntimeOptions.BindingErrors"/>, which the validator reports at start together with
/// every other problem (exit code 78).
/// </summary>
internal sealed class ZeroDowntimeOptionsBinder(IConfiguration configuration) : IConfigureOptions<ZeroDowntimeOptions>
{
    /// <summary>The configuration values of <see cref="ZeroDowntimeUpgradeOptions.Signal"/>.</summary>
    internal static readonly IReadOnlyDictionary<string, ZeroDowntimeUpgradeSignal> Signals =
        new Dictionary<string, ZeroDowntimeUpgradeSignal>(StringComparer.OrdinalIgnoreCase)
        {
            ["SIGHUP"] = ZeroDowntimeUpgradeSignal.SigHup,
            ["SIGUSR2"] = ZeroDowntimeUpgradeSignal.SigUsr2,
            ["None"] = ZeroDowntimeUpgradeSignal.None,
        };

    public void Configure(ZeroDowntimeOptions options) => Bind(configuration, options);

    /// <summary>Applies every key of the section that is set; see the type's summary for values that cannot be parsed.</summary>
    public static void Bind(IConfiguration configuration, ZeroDowntimeOptions options)
    {
        var values = new ConfigurationValues(configuration.GetSection(ZeroDowntimeOptions.SectionName), options.BindingErrors);
        options.Enabled = values.Boolean(nameof(options.Enabled), options.Enabled);
        options.SocketPath = values.String(nameof(options.SocketPath), options.SocketPath);
        options.ApplicationId = values.String(nameof(options.ApplicationId), options.ApplicationId);
        options.HandoffTimeout = values.Duration(nameof(options.HandoffTimeout), options.HandoffTimeout);
        options.DrainTimeout = values.Duration(nameof(options.DrainTimeout), options.DrainTimeout);
        options.IdleConnectionGracePeriod = values.Duration(nameof(options.IdleConnectionGracePeriod), options.IdleConnectionGracePeriod);
        options.DrainOnShutdown = values.Boolean(nameof(options.DrainOnShutdown), options.DrainOnShutdown);
        options.ShutdownDelay = values.Duration(nameof(options.ShutdownDelay), options.ShutdownDelay);
        options.AllowReplacingAllEndpoints = values.Boolean(nameof(options.AllowReplacingAllEndpoints), options.AllowReplacingAllEndpoints);
        options.CloseLongLivedConnections = values.Boolean(nameof(options.CloseLongLivedConnections), options.CloseLongLivedConnections);
        options.MaxDrainingGenerations = values.Integer(nameof(options.MaxDrainingGenerations), options.MaxDrainingGenerations);

        var upgrade = new ConfigurationValues(configuration.GetSection($"{ZeroDowntimeOptions.SectionName}:{nameof(options.Upgrade)}"), options.BindingErrors);
        options.Upgrade.Signal = upgrade.Choice(nameof(options.Upgrade.Signal), options.Upgrade.Signal, Signals);
        options.Upgrade.Command = upgrade.String(nameof(options.Upgrade.Command), options.Upgrade.Command);
        options.Upgrade.WorkingDirectory = upgrade.String(nameof(options.Upgrade.WorkingDirectory), options.Upgrade.WorkingDirectory);
        BindWarmup(configuration.GetSection($"{ZeroDowntimeOptions.SectionName}:{nameof(options.Warmup)}"), options.Warmup, options.BindingErrors);
        options.Probation = Probation.ProbationSettings.Read(configuration, options.BindingErrors);
    }

    private static void BindWarmup(IConfigurationSection section, ZeroDowntimeWarmupOptions warmup, List<string> errors)
    {
        var values = new ConfigurationValues(section, errors);
        if (section.GetSection(nameof(warmup.Requests)).GetChildren().ToList() is { Count: > 0 } requests)
        {
            // A list: one child per request, in its configured order ("0", "1", ...: sorted as numbers by the configuration).
            warmup.Requests = requests.Select(r => r.Value ?? "").ToList();
        }

        warmup.Enabled = values.Boolean(nameof(warmup.Enabled), warmup.Enabled);
        warmup.Iterations = values.Integer(nameof(warmup.Iterations), warmup.Iterations);
        warmup.Passes = values.Integer(nameof(warmup.Passes), warmup.Passes);
        warmup.Duration = values.Duration(nameof(warmup.Duration), warmup.Duration);
        warmup.Concurrency = values.Integer(nameof(warmup.Concurrency), warmup.Concurrency);
        warmup.Required = values.Boolean(nameof(warmup.Required), warmup.Required);
        warmup.Host = values.String(nameof(warmup.Host), warmup.Host) ?? warmup.Host;
        warmup.JitProfile = values.Boolean(nameof(warmup.JitProfile), warmup.JitProfile);
    }
}
