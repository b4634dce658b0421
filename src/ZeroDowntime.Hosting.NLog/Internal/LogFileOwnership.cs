namespace ZeroDowntime.Hosting.NLog.Internal;

/// <summary>Who may write to the configured log file names.</summary>
internal enum LogFileOwnership
{
    /// <summary>Not yet: lines are held (start-up, and a successor until its predecessor released the files).</summary>
    Holding,

    /// <summary>This process writes the configured file names.</summary>
    Owning,

    /// <summary>This process renamed its files at the commit point and writes to the archives.</summary>
    Released,

    /// <summary>This process never owned the files (its handoff failed); it wrote its lines to archives of its own.</summary>
    Abandoned,
}
