using Microsoft.Extensions.Configuration;
using ZeroDowntime.Hosting.Probation;

namespace ZeroDowntime.Hosting.Tests.Unit.Probation;

/// <summary>Reading <c>ZeroDowntime:Probation</c> (issue 20 item 1): defaults, every key, and values that cannot be parsed.</summary>
public sealed class ProbationSettingsTests
{
    [Fact]
    public void Read_NoSection_ProbationOffWithTheDocumentedDefaults()
    {
        var errors = new List<string>();

        var settings = ProbationSettings.Read(Configuration([]), errors);

        Assert.Empty(errors);
        Assert.Equal(ProbationSettings.Default, settings);
        Assert.False(settings.IsEnabled);
        Assert.Equal(TimeSpan.Zero, settings.Duration);
        Assert.Equal(0.05, settings.MaxErrorRatio);
        Assert.Equal(20, settings.MinRequests);
        Assert.Equal(TimeSpan.FromSeconds(30), settings.ErrorWindow);
        Assert.Equal(TimeSpan.FromSeconds(10), settings.UnhealthyFor);
        Assert.Equal(ProbationRollbackSignal.SigUsr1, settings.RollbackSignal);
    }

    [Fact]
    public void Read_EveryKey_IsBound()
    {
        var errors = new List<string>();

        var settings = ProbationSettings.Read(Configuration(new()
        {
            ["ZeroDowntime:Probation:Duration"] = "00:05:00",
            ["ZeroDowntime:Probation:MaxErrorRatio"] = "0.125",
            ["ZeroDowntime:Probation:MinRequests"] = "50",
            ["ZeroDowntime:Probation:ErrorWindow"] = "00:01:00",
            ["ZeroDowntime:Probation:UnhealthyFor"] = "00:00:30",
            ["ZeroDowntime:Probation:RollbackSignal"] = "none",
        }), errors);

        Assert.Empty(errors);
        Assert.Equal(new ProbationSettings(TimeSpan.FromMinutes(5), 0.125, 50, TimeSpan.FromMinutes(1), TimeSpan.FromSeconds(30), ProbationRollbackSignal.None), settings);
        Assert.True(settings.IsEnabled);
    }

    [Fact]
    public void Read_ValuesThatCannotBeParsed_KeepTheirDefaultsAndEachNamesItsKey()
    {
        var errors = new List<string>();

        var settings = ProbationSettings.Read(Configuration(new()
        {
            ["ZeroDowntime:Probation:Duration"] = "five minutes",
            ["ZeroDowntime:Probation:MaxErrorRatio"] = "5%",
            ["ZeroDowntime:Probation:MinRequests"] = "many",
            ["ZeroDowntime:Probation:ErrorWindow"] = "30",
            ["ZeroDowntime:Probation:UnhealthyFor"] = "00:00:10",
            ["ZeroDowntime:Probation:RollbackSignal"] = "SIGHUP",
        }), errors);

        Assert.Equal(
        [
            "ZeroDowntime:Probation:Duration 'five minutes' is not a duration: write [d.]hh:mm:ss[.fffffff], for example 00:01:00 (one minute).",
            "ZeroDowntime:Probation:MaxErrorRatio '5%' is not a number: write a share such as 0.05 (5 %).",
            "ZeroDowntime:Probation:MinRequests 'many' is not a whole number.",
            "ZeroDowntime:Probation:RollbackSignal 'SIGHUP' is not one of SIGUSR1, None.",
        ], errors);
        Assert.Equal(ProbationSettings.Default with { ErrorWindow = TimeSpan.FromDays(30) }, settings);
    }

    [Theory]
    [InlineData("0,05")]
    [InlineData("1e-2x")]
    public void Read_RatioInAnotherCultureOrGarbage_IsAnError(string text)
    {
        var errors = new List<string>();

        ProbationSettings.Read(Configuration(new() { ["ZeroDowntime:Probation:MaxErrorRatio"] = text }), errors);

        Assert.StartsWith("ZeroDowntime:Probation:MaxErrorRatio ", Assert.Single(errors), StringComparison.Ordinal);
    }

    private static IConfiguration Configuration(Dictionary<string, string?> values) =>
        new ConfigurationBuilder().AddInMemoryCollection(values).Build();
}
