namespace ZeroDowntime.Hosting.Fuzz;

/// <summary>What one input cost the reader.</summary>
internal readonly record struct FuzzMeasurement(FeedOutcome Outcome, long AllocatedBytes, TimeSpan Elapsed);
