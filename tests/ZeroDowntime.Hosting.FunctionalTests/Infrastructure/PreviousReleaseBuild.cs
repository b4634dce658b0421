namespace ZeroDowntime.Hosting.FunctionalTests;

/// <summary>The last landed commit before the bump to protocol v2: its library speaks only v1.</summary>
public sealed class PreviousReleaseBuild() : ArchivedSampleBuild(Commit)
{
    public const string Commit = "613adf0372f436f56fde91cbe369071e41f24eaf";
}
