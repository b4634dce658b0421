using ZeroDowntime.Hosting.Protocol;

namespace ZeroDowntime.Hosting.Fuzz;

/// <summary>How a byte stream ended for the reader.</summary>
internal enum FeedEnd
{
    /// <summary>Every byte was consumed as whole frames, then the peer closed: <c>ReadAsync</c> throws Closed.</summary>
    EndOfStream,

    /// <summary>The peer closed in the middle of a frame: the channel throws <see cref="HandoffProtocolException"/>.</summary>
    Truncated,

    /// <summary>The reader threw <see cref="HandoffProtocolException"/>.</summary>
    ProtocolError,
}
