using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using ZeroDowntime.Hosting.Handoff;
using ZeroDowntime.Hosting.Listeners;

namespace ZeroDowntime.Hosting.Tests.Unit;

public sealed class OptionsTests
{
    [Fact]
    public void Bind_NoConfiguration_HasDocumentedDefaults()
    {
        var options = Resolve([]);

        Assert.True(options.Enabled);
        Assert.Equal(TimeSpan.FromMinutes(1), options.HandoffTimeout);
        Assert.Equal(TimeSpan.FromSeconds(30), options.DrainTimeout);
        Assert.Equal(TimeSpan.FromSeconds(2), options.IdleConnectionGracePeriod);
        Assert.Equal("OptionsTestApp", options.ApplicationId);
        Assert.EndsWith("/OptionsTestApp.sock", options.SocketPath, StringComparison.Ordinal);
    }

    [Fact]
    public void Bind_ConfigurationSection_SetsEveryOption()
    {
        var options = Resolve(new()
        {
            ["ZeroDowntime:SocketPath"] = "/run/app/h.sock",
            ["ZeroDowntime:ApplicationId"] = "orders",
            ["ZeroDowntime:HandoffTimeout"] = "00:00:10",
            ["ZeroDowntime:DrainTimeout"] = "00:02:00",
            ["ZeroDowntime:IdleConnectionGracePeriod"] = "00:00:05",
        });

        Assert.Equal("/run/app/h.sock", options.SocketPath);
        Assert.Equal("orders", options.ApplicationId);
        Assert.Equal(TimeSpan.FromSeconds(10), options.HandoffTimeout);
        Assert.Equal(TimeSpan.FromMinutes(2), options.DrainTimeout);
        Assert.Equal(TimeSpan.FromSeconds(5), options.IdleConnectionGracePeriod);
    }

    [Theory]
    [InlineData("/run/user/1000", "/run/user/1000/zerodowntime/My_App.sock")]
    [InlineData(null, "zerodowntime-")]
    [InlineData("relative/dir", "zerodowntime-")]
    public void DefaultSocketPath_PerUserAndApplication(string? runtimeDirectory, string expected)
    {
        string path = ZeroDowntimeOptionsDefaults.DefaultSocketPath("My App", runtimeDirectory);
        Assert.Contains(expected, path, StringComparison.Ordinal);
        Assert.EndsWith("My_App.sock", path, StringComparison.Ordinal);
    }

    [Fact]
    public void Validate_EveryBadValue_IsReportedWithItsKey()
    {
        var ex = Assert.Throws<OptionsValidationException>(() => Resolve(new()
        {
            ["ZeroDowntime:SocketPath"] = "/" + new string('a', 120),
            ["ZeroDowntime:HandoffTimeout"] = "00:00:00",
            ["ZeroDowntime:DrainTimeout"] = "-00:00:01",
            ["ZeroDowntime:IdleConnectionGracePeriod"] = "00:00:05",
        }));

        Assert.Equal(4, ex.Failures.Count());
        Assert.Contains(ex.Failures, f => f.Contains("ZeroDowntime:SocketPath", StringComparison.Ordinal) && f.Contains("at most 107 bytes", StringComparison.Ordinal));
        Assert.Contains(ex.Failures, f => f.Contains("ZeroDowntime:HandoffTimeout", StringComparison.Ordinal));
        Assert.Contains(ex.Failures, f => f.Contains("ZeroDowntime:DrainTimeout", StringComparison.Ordinal));
        Assert.Contains(ex.Failures, f => f.Contains("ZeroDowntime:IdleConnectionGracePeriod", StringComparison.Ordinal));
    }

    [Fact]
    public void Bind_WarmupSection_SetsEveryWarmupOption()
    {
        var warmup = Resolve(new()
        {
            ["ZeroDowntime:Warmup:Requests:0"] = "GET /",
            ["ZeroDowntime:Warmup:Requests:1"] = "post /api/items?x=1\nAccept: application/json",
            ["ZeroDowntime:Warmup:Iterations"] = "5",
            ["ZeroDowntime:Warmup:Duration"] = "00:00:02",
            ["ZeroDowntime:Warmup:Concurrency"] = "4",
            ["ZeroDowntime:Warmup:Required"] = "true",
            ["ZeroDowntime:Warmup:Host"] = "shop.example",
            ["ZeroDowntime:Warmup:Enabled"] = "false",
            ["ZeroDowntime:Warmup:JitProfile"] = "false",
            ["ZeroDowntime:Warmup:Passes"] = "3",
        }).Warmup;

        Assert.False(warmup.Enabled);
        Assert.False(warmup.JitProfile);
        Assert.Equal(3, warmup.Passes);
        Assert.Equal(["GET /", "post /api/items?x=1\nAccept: application/json"], warmup.Requests);
        Assert.Equal((5, TimeSpan.FromSeconds(2), 4, true, "shop.example"), (warmup.Iterations, warmup.Duration, warmup.Concurrency, warmup.Required, warmup.Host));
        var parsed = Warmup.WarmupRequest.Parse(warmup.Requests[1], out _)!;
        Assert.Equal(("POST", "/api/items?x=1"), (parsed.Method, parsed.PathAndQuery));
        Assert.Equal(new KeyValuePair<string, string>("Accept", "application/json"), Assert.Single(parsed.Headers));
    }

    [Fact]
    public void Bind_NoWarmupSection_SendsNothing()
    {
        var warmup = Resolve([]).Warmup;
        Assert.Empty(warmup.Requests);
        Assert.True(warmup.Enabled);
        Assert.True(warmup.JitProfile); // the profile is on by default: it sends nothing to the app
        Assert.Equal(1, warmup.Passes);
        Assert.Equal((32, TimeSpan.Zero, 2, false, "localhost"), (warmup.Iterations, warmup.Duration, warmup.Concurrency, warmup.Required, warmup.Host));
    }

    [Fact]
    public void Validate_EveryBadWarmupValue_IsReportedWithItsKey()
    {
        var ex = Assert.Throws<OptionsValidationException>(() => Resolve(new()
        {
            ["ZeroDowntime:HandoffTimeout"] = "00:00:10",
            ["ZeroDowntime:Warmup:Requests:0"] = "GET /fine",
            ["ZeroDowntime:Warmup:Requests:1"] = "/no-method",
            ["ZeroDowntime:Warmup:Requests:2"] = "GET /x\nnot a header",
            ["ZeroDowntime:Warmup:Iterations"] = "0",
            ["ZeroDowntime:Warmup:Concurrency"] = "many",
            ["ZeroDowntime:Warmup:Duration"] = "00:00:10",
            ["ZeroDowntime:Warmup:Host"] = "not a host",
            ["ZeroDowntime:Warmup:JitProfile"] = "sometimes",
            ["ZeroDowntime:Warmup:Passes"] = "6",
        }));

        Assert.Equal(8, ex.Failures.Count());
        Assert.Contains(ex.Failures, f => f.StartsWith("ZeroDowntime:Warmup:Passes is 6; allowed: 1 to 5", StringComparison.Ordinal));
        Assert.Contains(ex.Failures, f => f.StartsWith("ZeroDowntime:Warmup:JitProfile 'sometimes'", StringComparison.Ordinal));
        Assert.Contains(ex.Failures, f => f.StartsWith("ZeroDowntime:Warmup:Requests:1 '/no-method' is not METHOD /path", StringComparison.Ordinal));
        Assert.Contains(ex.Failures, f => f.StartsWith("ZeroDowntime:Warmup:Requests:2 header line 'not a header'", StringComparison.Ordinal));
        Assert.Contains(ex.Failures, f => f.StartsWith("ZeroDowntime:Warmup:Iterations is 0", StringComparison.Ordinal));
        Assert.Contains(ex.Failures, f => f.StartsWith("ZeroDowntime:Warmup:Concurrency 'many' is not a whole number", StringComparison.Ordinal));
        Assert.Contains(ex.Failures, f => f.StartsWith("ZeroDowntime:Warmup:Duration is 00:00:10", StringComparison.Ordinal));
        Assert.Contains(ex.Failures, f => f.StartsWith("ZeroDowntime:Warmup:Host 'not a host'", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("relative/h.sock", "absolute path")]
    [InlineData("@abstract", "absolute path")]
    [InlineData("/run/app/", "names a directory")]
    public void Validate_BadSocketPath_SaysWhatIsAllowed(string path, string expected)
    {
        var ex = Assert.Throws<OptionsValidationException>(() => Resolve(new() { ["ZeroDowntime:SocketPath"] = path }));
        Assert.Contains(ex.Failures, f => f.Contains(expected, StringComparison.Ordinal));
    }

    [Fact]
    public void Validate_SocketPathOf107Bytes_IsAccepted()
    {
        string path = "/" + new string('a', 106);
        Assert.Equal(path, Resolve(new() { ["ZeroDowntime:SocketPath"] = path }).SocketPath);
    }

    [Fact]
    public async Task Disabled_SkipsValidation_KestrelBindsAlone_OnlyTheRunnerActs()
    {
        var services = Build(new() { ["ZeroDowntime:Enabled"] = "false", ["ZeroDowntime:SocketPath"] = "relative" });
        Assert.False(services.GetRequiredService<IOptions<ZeroDowntimeOptions>>().Value.Enabled);

        // Every part is registered and decides from the bound options: the library's transport binds nothing, so Kestrel
        // binds every endpoint with its own.
        var factory = services.GetRequiredService<HandoffListenerFactory>();
        Assert.False(factory.CanBind(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0)));

        // No handoff runs: the coordinator does nothing at start (no handoff socket), and the first-start runner is the
        // one that tells the participants that they own their resources.
        var coordinator = services.GetRequiredService<HandoffCoordinator>();
        await coordinator.StartingAsync(CancellationToken.None);
        Assert.Equal(ProcessRole.Starting, coordinator.Role);
        Assert.False(services.GetRequiredService<IOptions<FirstStartParticipantRunner.Settings>>().Value.CoordinatorCalls);
    }

    [Fact]
    public void Enabled_FromASourceAddedAfterUseZeroDowntime_Counts()
    {
        // Read from the bound options like every other key (it was read once at UseZeroDowntime() before, event 143).
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { ApplicationName = "OptionsTestApp" });
        builder.WebHost.UseZeroDowntime();
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?> { ["ZeroDowntime:Enabled"] = "false" });
        using var app = builder.Build();

        Assert.False(app.Services.GetRequiredService<HandoffListenerFactory>().CanBind(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0)));
        Assert.False(app.Services.GetRequiredService<IOptions<FirstStartParticipantRunner.Settings>>().Value.CoordinatorCalls);
    }

    [Fact]
    public void ConfigureCallback_RunsOnce()
    {
        int calls = 0;
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { ApplicationName = "OptionsTestApp" });
        builder.WebHost.UseZeroDowntime(o =>
        {
            calls++;
            o.Enabled = false;
        });
        using var app = builder.Build();

        Assert.False(app.Services.GetRequiredService<IOptions<ZeroDowntimeOptions>>().Value.Enabled);
        Assert.False(app.Services.GetRequiredService<HandoffListenerFactory>().CanBind(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0)));
        Assert.Equal(1, calls);
    }

    [Fact]
    public void CodeConfiguration_AppliesAfterTheSection()
    {
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { ApplicationName = "OptionsTestApp" });
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?> { ["ZeroDowntime:DrainTimeout"] = "00:00:05" });
        builder.WebHost.UseZeroDowntime(o => o.DrainTimeout = TimeSpan.FromSeconds(9));
        using var app = builder.Build();
        Assert.Equal(TimeSpan.FromSeconds(9), app.Services.GetRequiredService<IOptions<ZeroDowntimeOptions>>().Value.DrainTimeout);
    }

    private static ZeroDowntimeOptions Resolve(Dictionary<string, string?> settings) =>
        Build(settings).GetRequiredService<IOptions<ZeroDowntimeOptions>>().Value;

    private static IServiceProvider Build(Dictionary<string, string?> settings)
    {
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { ApplicationName = "OptionsTestApp" });
        builder.Configuration.AddInMemoryCollection(settings);
        builder.WebHost.UseZeroDowntime();
        return builder.Build().Services;
    }

    // Item 1: what validation checks is what is really used: the temporary name the socket is bound under too.
    [Fact]
    public void Validate_PathWhoseTemporaryNameIsTooLong_FailsNamingBoth()
    {
        string path = "/" + new string('d', 98) + "/h.sock"; // 106 bytes; the temporary name is 99 + 1 + 11 = 111
        Assert.Equal(106, path.Length);

        var result = new ZeroDowntimeOptionsValidator().Validate(null, new ZeroDowntimeOptions { SocketPath = path, ApplicationId = "app" });

        Assert.True(result.Failed, "a path whose temporary twin exceeds sun_path must be refused at start");
        Assert.Contains("temporary", result.FailureMessage, StringComparison.Ordinal);
    }
}
