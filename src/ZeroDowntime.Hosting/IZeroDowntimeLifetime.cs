namespace ZeroDowntime.Hosting;

/// <summary>
/// Tells the application about handoffs. Inject it to end long-lived work (WebSockets, server-sent events,
/// streaming calls) cleanly when this process has handed its listeners to a successor.
/// </summary>
public interface IZeroDowntimeLifetime
{
    /// <summary>
    /// True once a successor has taken over: this process no longer accepts connections and is draining. A plain
    /// shutdown (SIGTERM, Ctrl+C) leaves it false.
    /// </summary>
    bool IsHandingOver { get; }

    /// <summary>True when this process took its listeners over from a predecessor at start-up.</summary>
    bool IsSuccessor { get; }

    /// <summary>
    /// Cancelled when the drain starts after a handoff. Long-lived streams should finish within
    /// <see cref="ZeroDowntimeOptions.DrainTimeout"/> of it; connections still open then are aborted.
    /// </summary>
    CancellationToken Draining { get; }
}
