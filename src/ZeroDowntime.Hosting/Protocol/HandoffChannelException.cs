
namespace ZeroDowntime.Hosting.Protocol;

/// <summary>What went wrong on a handoff channel, as the two sides of the handoff need to tell it apart.</summary>
internal enum HandoffChannelError
{
    /// <summary>No process serves the socket path (no file there).</summary>
    NoServer,

    /// <summary>
    /// The peer refused the connection (<c>ECONNREFUSED</c>): a socket file is there but nobody listens on it, the
    /// trace of a process that is gone.
    /// </summary>
    ConnectionRefused,

    /// <summary>The peer closed the connection (end of stream, reset, broken pipe), or this end was disposed.</summary>
    Closed,

    /// <summary>Nothing complete arrived, or nothing could be sent, within the deadline.</summary>
    TimedOut,

    /// <summary>The peer sent bytes that are not the protocol (bad frame, bad payload, truncated descriptors).</summary>
    ProtocolViolation,
}

/// <summary>
/// The one exception a <see cref="HandoffChannel"/> raises: socket, interop and decoding errors are translated at the
/// channel (as Kestrel's <c>SocketConnectionListener.Bind</c> translates bind errors), so that the state machines catch
/// one type and decide by <see cref="Error"/>. Cancellation by the caller's token stays an
/// <see cref="OperationCanceledException"/>: it is not something the peer did.
/// </summary>
internal sealed class HandoffChannelException(HandoffChannelError error, string message, Exception? innerException = null)
    : Exception(message, innerException)
{
    public HandoffChannelError Error { get; } = error;
}
