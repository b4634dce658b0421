namespace ZeroDowntime.Hosting.NLog.Internal;

/// <summary>What happened to one log file at a change of ownership.</summary>
internal sealed record LogFileOutcome(string Path, string? WrittenTo, int HeldLines, int SpilledLines, TimeSpan HeldFor)
{
    /// <summary>The archive a dead owner's file was moved to before this process took the name.</summary>
    public string? OrphanArchivedTo { get; init; }

    /// <summary>The pid recorded for that file, or "unknown".</summary>
    public string? OrphanOwner { get; init; }

    /// <summary>The archive that this process renamed back to <see cref="Path"/> (the handoff did not commit).</summary>
    public string? TakenBackFrom { get; init; }

    /// <summary>Why this process keeps writing to its archive instead of taking the original name back.</summary>
    public string? KeptOnArchiveBecause { get; init; }

    /// <summary>Why this file could not be handled, if it could not.</summary>
    public string? Error { get; init; }
}
