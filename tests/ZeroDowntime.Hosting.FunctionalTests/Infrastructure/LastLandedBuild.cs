namespace ZeroDowntime.Hosting.FunctionalTests;

/// <summary>
/// The commit that landed before "one fallback at a time" (issue 18): protocol v2, but a released predecessor keeps the
/// connection open until it exits, and a middle process releases its predecessor only at its own commit.
/// </summary>
public sealed class LastLandedBuild() : ArchivedSampleBuild(Commit)
{
    public const string Commit = "e0759b3caddab0468b294a9e1cf7f4aa2c594e0a";
}
