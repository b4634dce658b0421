namespace ZeroDowntime.Hosting.Fuzz;

/// <summary>What the reader made of one input: how many messages it decoded before it ended, and how it ended.</summary>
internal readonly record struct FeedOutcome(int Messages, FeedEnd End, string? Error);
