using System.Reflection;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using ZeroDowntime.Hosting.Handoff;
using ZeroDowntime.Hosting.NLog;
using ZeroDowntime.Hosting.Tests.Infrastructure;

namespace ZeroDowntime.Hosting.Tests.Unit;

/// <summary>
/// Values that cannot be parsed (issue 24, item 3): reported at start like every other problem, all of them, each with
/// its key, with exit code 78; never thrown from <c>UseZeroDowntime()</c> or <c>UseZeroDowntimeNLog()</c> themselves. And
/// where the configuration came from (content root, environment, files), as the start-up line and the successor's
/// refusal name it.
/// </summary>
public sealed class ConfigurationErrorTests
{
    [Fact]
    public void UseZeroDowntime_ValuesThatCannotBeParsed_DoesNotThrow_EveryOneReportedAtStartWithTheOtherProblems()
    {
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { ApplicationName = "ConfigErrorApp" });
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["ZeroDowntime:Enabled"] = "yes",
            ["ZeroDowntime:HandoffTimeout"] = "one minute",
            ["ZeroDowntime:DrainTimeout"] = "30 seconds",
            ["ZeroDowntime:DrainOnShutdown"] = "sometimes",
            ["ZeroDowntime:AllowReplacingAllEndpoints"] = "perhaps",
            ["ZeroDowntime:Upgrade:Signal"] = "SIGTERM",
            ["ZeroDowntime:ShutdownDelay"] = "00:10:00", // parses, but out of range
        });

        builder.WebHost.UseZeroDowntime(); // threw the binder's first error before
        using var app = builder.Build();
        var ex = Assert.Throws<OptionsValidationException>(() => app.Services.GetRequiredService<IOptions<ZeroDowntimeOptions>>().Value);

        Assert.Equal(ZeroDowntimeExitCodes.InvalidConfiguration, ProcessExitHooks.ExitCodeFor(ex));
        Assert.Equal(7, ex.Failures.Count());
        Assert.Contains("ZeroDowntime:Enabled 'yes' is not true or false.", ex.Failures);
        Assert.Contains(ex.Failures, f => f.StartsWith("ZeroDowntime:HandoffTimeout 'one minute' is not a duration", StringComparison.Ordinal) && f.Contains("00:01:00", StringComparison.Ordinal));
        Assert.Contains(ex.Failures, f => f.StartsWith("ZeroDowntime:DrainTimeout '30 seconds' is not a duration", StringComparison.Ordinal));
        Assert.Contains("ZeroDowntime:DrainOnShutdown 'sometimes' is not true or false.", ex.Failures);
        Assert.Contains("ZeroDowntime:AllowReplacingAllEndpoints 'perhaps' is not true or false.", ex.Failures);
        Assert.Contains("ZeroDowntime:Upgrade:Signal 'SIGTERM' is not one of SIGHUP, SIGUSR2, None.", ex.Failures);
        Assert.Contains(ex.Failures, f => f.StartsWith("ZeroDowntime:ShutdownDelay is 00:10:00", StringComparison.Ordinal));
    }

    [Fact]
    public async Task StartAsync_ValueThatCannotBeParsed_FailsTheStartWithExit78()
    {
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { ApplicationName = "ConfigErrorApp" });
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?> { ["ZeroDowntime:HandoffTimeout"] = "1 minute" });
        builder.WebHost.UseUrls("http://127.0.0.1:0").UseZeroDowntime();
        await using var app = builder.Build();

        var ex = await Assert.ThrowsAnyAsync<Exception>(() => app.StartAsync().WaitAsync(TimeSpan.FromSeconds(20)));
        var (code, message) = ProcessExitHooks.ReasonFor(ex) ?? throw new InvalidOperationException("not a start-up failure of the library", ex);
        Assert.Equal(ZeroDowntimeExitCodes.InvalidConfiguration, code);
        Assert.Equal("ZeroDowntime:HandoffTimeout '1 minute' is not a duration: write [d.]hh:mm:ss[.fffffff], for example 00:01:00 (one minute).", message);
    }

    [Fact]
    public void Bind_EveryPublicOption_IsReadFromItsKey()
    {
        // The binder names each key (no reflection, no source generator): a new option that it does not read fails here.
        var values = new Dictionary<string, string?>
        {
            ["ZeroDowntime:Enabled"] = "false",
            ["ZeroDowntime:SocketPath"] = "/run/app/h.sock",
            ["ZeroDowntime:ApplicationId"] = "orders",
            ["ZeroDowntime:HandoffTimeout"] = "00:00:11",
            ["ZeroDowntime:DrainTimeout"] = "00:00:12",
            ["ZeroDowntime:IdleConnectionGracePeriod"] = "00:00:03",
            ["ZeroDowntime:DrainOnShutdown"] = "false",
            ["ZeroDowntime:ShutdownDelay"] = "00:00:04",
            ["ZeroDowntime:AllowReplacingAllEndpoints"] = "true",
            ["ZeroDowntime:CloseLongLivedConnections"] = "false",
            ["ZeroDowntime:MaxDrainingGenerations"] = "2",
            ["ZeroDowntime:Upgrade:Signal"] = "sigusr2",
            ["ZeroDowntime:Upgrade:Command"] = "exec ./WebApi",
            ["ZeroDowntime:Upgrade:WorkingDirectory"] = "/srv/app/current",
            ["ZeroDowntime:Warmup:Enabled"] = "false",
            ["ZeroDowntime:Warmup:Requests:0"] = "GET /",
            ["ZeroDowntime:Warmup:Iterations"] = "3",
            ["ZeroDowntime:Warmup:Duration"] = "00:00:01",
            ["ZeroDowntime:Warmup:Concurrency"] = "4",
            ["ZeroDowntime:Warmup:Required"] = "true",
            ["ZeroDowntime:Warmup:Host"] = "shop.example",
            ["ZeroDowntime:Warmup:JitProfile"] = "false",
            ["ZeroDowntime:Warmup:Passes"] = "2",
        };
        var options = new ZeroDowntimeOptions();
        ZeroDowntimeOptionsBinder.Bind(new ConfigurationBuilder().AddInMemoryCollection(values).Build(), options);

        Assert.Empty(options.BindingErrors);
        var defaults = new ZeroDowntimeOptions();
        var keys = new List<string>();
        foreach (var (owner, fresh, prefix) in new[] { ((object)options, (object)defaults, "ZeroDowntime"), (options.Upgrade, defaults.Upgrade, "ZeroDowntime:Upgrade"), (options.Warmup, defaults.Warmup, "ZeroDowntime:Warmup") })
        {
            foreach (var property in owner.GetType().GetProperties(BindingFlags.Public | BindingFlags.Instance)
                .Where(p => p.CanWrite && p.PropertyType != typeof(ZeroDowntimeUpgradeOptions) && p.PropertyType != typeof(ZeroDowntimeWarmupOptions)))
            {
                // A list is read from its numbered children.
                bool isList = property.PropertyType == typeof(IList<string>);
                keys.Add($"{prefix}:{property.Name}{(isList ? ":0" : "")}");
                bool read = isList
                    ? !((IList<string>)property.GetValue(owner)!).SequenceEqual((IList<string>)property.GetValue(fresh)!)
                    : !Equals(property.GetValue(owner), property.GetValue(fresh));
                Assert.True(read, $"{prefix}:{property.Name} was not read from configuration");
            }
        }

        Assert.Equal(values.Keys.Order(StringComparer.Ordinal), keys.Order(StringComparer.Ordinal));
        Assert.Equal(ZeroDowntimeUpgradeSignal.SigUsr2, options.Upgrade.Signal);
    }

    [Theory]
    [InlineData("two", "ZeroDowntime:MaxDrainingGenerations 'two' is not a whole number.")]
    [InlineData("-1", "ZeroDowntime:MaxDrainingGenerations is -1; allowed: 0 (no bound) to 1000.")]
    [InlineData("1001", "ZeroDowntime:MaxDrainingGenerations is 1001; allowed: 0 (no bound) to 1000.")]
    public void MaxDrainingGenerations_NotAWholeNumberOrOutOfRange_ReportedAtStart(string value, string failure)
    {
        var options = new ZeroDowntimeOptions { SocketPath = "/tmp/zd-max-draining.sock", ApplicationId = "app" };
        ZeroDowntimeOptionsBinder.Bind(new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["ZeroDowntime:MaxDrainingGenerations"] = value,
        }).Build(), options);

        var result = new ZeroDowntimeOptionsValidator().Validate(null, options);

        Assert.True(result.Failed);
        Assert.Contains(failure, result.Failures!);
        Assert.Equal(0, new ZeroDowntimeOptions().MaxDrainingGenerations);
    }

    [Fact]
    public void Options_AllowReplacingAllEndpoints_IsOffByDefault() =>
        Assert.False(new ZeroDowntimeOptions().AllowReplacingAllEndpoints);

    [Fact]
    public async Task UseZeroDowntimeNLog_ValuesThatCannotBeParsed_DoesNotThrow_ReportedAtStart()
    {
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { ApplicationName = "ConfigErrorApp" });
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["ZeroDowntime:LogFiles:MaxHeldLines"] = "lots",
            ["ZeroDowntime:LogFiles:Enabled"] = "maybe",
        });
        using var factory = new global::NLog.LogFactory();
        builder.WebHost.UseUrls("http://127.0.0.1:0").UseZeroDowntimeNLog(o => o.LogFactory = factory); // threw before
        await using var app = builder.Build();

        var ex = await Assert.ThrowsAsync<OptionsValidationException>(() => app.StartAsync().WaitAsync(TimeSpan.FromSeconds(20)));
        Assert.Equal(ZeroDowntimeExitCodes.InvalidConfiguration, ProcessExitHooks.ExitCodeFor(ex));
        Assert.Equal(typeof(LogFileHandoffOptions), ex.OptionsType);
        Assert.Equal(["ZeroDowntime:LogFiles:Enabled 'maybe' is not true or false.", "ZeroDowntime:LogFiles:MaxHeldLines 'lots' is not a whole number."], ex.Failures);
    }

    [Fact]
    public void ConfigurationOrigin_NamesContentRootEnvironmentAndEachFileFoundOrNot()
    {
        using var scope = new TestScope();
        File.WriteAllText(Path.Combine(scope.Directory, "appsettings.json"), """{ "Urls": "http://127.0.0.1:0" }""");
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { ApplicationName = "ConfigErrorApp", ContentRootPath = scope.Directory, EnvironmentName = "Staging" });
        builder.WebHost.UseZeroDowntime(o => o.SocketPath = scope.SocketPath);
        using var app = builder.Build();

        var origin = app.Services.GetRequiredService<IOptions<ZeroDowntimeOptions>>().Value.Origin!;
        Assert.Equal(scope.Directory, origin.ContentRoot.TrimEnd('/'));
        Assert.Equal("Staging", origin.EnvironmentName);
        Assert.Contains(new ConfigurationFile(Path.Combine(scope.Directory, "appsettings.json"), Found: true), origin.Files);
        Assert.Contains(new ConfigurationFile(Path.Combine(scope.Directory, "appsettings.Staging.json"), Found: false), origin.Files);
        Assert.StartsWith($"{Path.Combine(scope.Directory, "appsettings.json")}, {Path.Combine(scope.Directory, "appsettings.Staging.json")} (not found)", origin.FilesText, StringComparison.Ordinal);
        Assert.True(origin.NamesEndpoints);

        var empty = ConfigurationOrigin.Read(app.Services.GetRequiredService<IHostEnvironment>(), new ConfigurationBuilder().Build());
        Assert.False(empty.NamesEndpoints);
        Assert.Equal("none", empty.FilesText);
    }
}
