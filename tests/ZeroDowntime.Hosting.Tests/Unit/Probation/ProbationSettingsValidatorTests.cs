using Microsoft.Extensions.Configuration;
using ZeroDowntime.Hosting.Probation;

namespace ZeroDowntime.Hosting.Tests.Unit.Probation;

/// <summary>The bounds of <c>ZeroDowntime:Probation</c> (issue 20 item 1): each bad value one error naming its key, all at once.</summary>
public sealed class ProbationSettingsValidatorTests
{
    private static readonly ProbationSettings On = ProbationSettings.Default with { Duration = TimeSpan.FromMinutes(5) };

    [Fact]
    public void Validate_DefaultsAndATypicalProbation_NoErrors()
    {
        Assert.Empty(ProbationSettingsValidator.Validate(ProbationSettings.Default));
        Assert.Empty(ProbationSettingsValidator.Validate(On));
    }

    [Fact]
    public void Validate_EveryBoundItself_IsAllowed()
    {
        Assert.Empty(ProbationSettingsValidator.Validate(new ProbationSettings(TimeSpan.FromDays(1), 0, 1, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1), ProbationRollbackSignal.None)));
        Assert.Empty(ProbationSettingsValidator.Validate(new ProbationSettings(TimeSpan.Zero, 1, 1_000_000, TimeSpan.FromHours(1), TimeSpan.FromHours(1), ProbationRollbackSignal.SigUsr1)));
    }

    [Theory]
    [InlineData("Duration", "-00:00:01", "ZeroDowntime:Probation:Duration is -00:00:01; allowed: 00:00:00 (no probation) to 1.00:00:00.")]
    [InlineData("Duration", "1.00:00:01", "ZeroDowntime:Probation:Duration is 1.00:00:01; allowed: 00:00:00 (no probation) to 1.00:00:00.")]
    [InlineData("MaxErrorRatio", "-0.01", "ZeroDowntime:Probation:MaxErrorRatio is -0.01; allowed: 0 (any 5xx response rolls back) to 1 (the ratio never rolls back), for example 0.05.")]
    [InlineData("MaxErrorRatio", "5", "ZeroDowntime:Probation:MaxErrorRatio is 5; allowed: 0 (any 5xx response rolls back) to 1 (the ratio never rolls back), for example 0.05.")]
    [InlineData("MaxErrorRatio", "NaN", "ZeroDowntime:Probation:MaxErrorRatio is NaN; allowed: 0 (any 5xx response rolls back) to 1 (the ratio never rolls back), for example 0.05.")]
    [InlineData("MinRequests", "0", "ZeroDowntime:Probation:MinRequests is 0; allowed: 1 to 1000000.")]
    [InlineData("MinRequests", "1000001", "ZeroDowntime:Probation:MinRequests is 1000001; allowed: 1 to 1000000.")]
    [InlineData("ErrorWindow", "00:00:00.999", "ZeroDowntime:Probation:ErrorWindow is 00:00:00.9990000; allowed: 00:00:01 to 01:00:00.")]
    [InlineData("ErrorWindow", "30", "ZeroDowntime:Probation:ErrorWindow is 30.00:00:00; allowed: 00:00:01 to 01:00:00.")]
    [InlineData("UnhealthyFor", "00:00:00", "ZeroDowntime:Probation:UnhealthyFor is 00:00:00; allowed: 00:00:01 to 01:00:00 (the checks tagged zerodowntime-probation are looked at every second).")]
    [InlineData("UnhealthyFor", "02:00:00", "ZeroDowntime:Probation:UnhealthyFor is 02:00:00; allowed: 00:00:01 to 01:00:00 (the checks tagged zerodowntime-probation are looked at every second).")]
    public void Validate_OneBadValue_OneErrorNamingKeyValueAndBounds(string key, string value, string error)
    {
        var errors = new List<string>();
        var settings = ProbationSettings.Read(new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["ZeroDowntime:Probation:Duration"] = "00:05:00",
            [$"ZeroDowntime:Probation:{key}"] = value,
        }).Build(), errors);
        Assert.Empty(errors);

        Assert.Equal(error, Assert.Single(ProbationSettingsValidator.Validate(settings)));
    }

    [Fact]
    public void Validate_UndefinedSignal_OneError() =>
        Assert.Equal("ZeroDowntime:Probation:RollbackSignal must be SIGUSR1 or None.",
            Assert.Single(ProbationSettingsValidator.Validate(On with { RollbackSignal = (ProbationRollbackSignal)7 })));

    [Fact]
    public void Validate_BadThresholdsWhileProbationIsOff_AreStillReported()
    {
        var errors = ProbationSettingsValidator.Validate(ProbationSettings.Default with { MaxErrorRatio = 2, MinRequests = -5, ErrorWindow = TimeSpan.Zero });

        Assert.Equal(3, errors.Count);
        Assert.Collection(errors,
            e => Assert.StartsWith("ZeroDowntime:Probation:MaxErrorRatio is 2;", e, StringComparison.Ordinal),
            e => Assert.StartsWith("ZeroDowntime:Probation:MinRequests is -5;", e, StringComparison.Ordinal),
            e => Assert.StartsWith("ZeroDowntime:Probation:ErrorWindow is 00:00:00;", e, StringComparison.Ordinal));
    }
}
