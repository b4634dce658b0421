namespace ZeroDowntime.Hosting.NLog.Internal;

/// <summary>Who may write to the configured log file names.</summary>
internal enum LogFileOwnership
{
    /// <summary>Not yet: lines are held (start-up, and a successor until its predecessor released the files).</summary>
    Holding,

    /// <summary>
    /// This process writes the configured file names (except a file whose name another program created while it was
    /// released: that one stays on its archive).
    /// </summary>
    Owning,

    /// <summary>
    /// This process renamed its files at the commit point and writes to the archives: for good once the successor heard
    /// Committed, or until it takes them back (Owning) when the handoff did not commit.
    /// </summary>
    Released,

    /// <summary>This process never owned the files (its handoff failed); it wrote its lines to archives of its own.</summary>
    Abandoned,
}
