
namespace ZeroDowntime.Hosting;

/// <summary>
/// Tells the application about handoffs. Inject it to end long-lived work (WebSockets, server-sent events,
/// streaming calls) cleanly when this process has handed its listeners to a successor. The drain already closes
/// WebSockets, server-sent event streams and SignalR connections itself unless
/// <see cref="ZeroDowntimeOptions.CloseLongLivedConnections"/> is off.
/// </summary>
public interface IZeroDowntimeLifetime
{
    /// <summary>
    /// True once a successor has taken over: this process no longer accepts connections and is draining. A plain
    /// shutdown (SIGTERM, Ctrl+C) leaves it false, even while it drains.
    /// </summary>
    bool HasHandedOver { get; }

    /// <summary>True when this process took its listeners over from a predecessor at start-up.</summary>
    bool IsSuccessor { get; }

    /// <summary>
    /// Cancelled when the drain starts: after a handoff, and on a plain shutdown when
    /// <see cref="ZeroDowntimeOptions.DrainOnShutdown"/> is on (after <see cref="ZeroDowntimeOptions.ShutdownDelay"/>).
    /// Long-lived streams should finish within <see cref="ZeroDowntimeOptions.DrainTimeout"/> of it; connections still
    /// open then are aborted. A callback that throws is logged and the drain goes on.
    /// </summary>
    CancellationToken Draining { get; }
}
