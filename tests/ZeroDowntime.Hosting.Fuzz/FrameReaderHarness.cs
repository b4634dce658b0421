using ZeroDowntime.Hosting.Protocol;

namespace ZeroDowntime.Hosting.Fuzz;

/// <summary>
/// The one "feed these bytes to the reader" function that every fuzz target shares. It drives the internal protocol
/// API exactly as <see cref="HandoffChannel.ReadAsync"/> does: a fixed receive buffer of one maximal frame, a
/// <see cref="HandoffProtocol.TryReadFrame"/> attempt before every receive, <see cref="HandoffProtocol.Decode"/>,
/// the shift of the remaining bytes to the front, and end of stream in the middle of a frame as an error. The bytes
/// arrive in the chunk sizes given (cycled), or as much as fits when there are none, the way <c>recvmsg</c> hands
/// them over. Only <see cref="HandoffProtocolException"/> is an expected way to fail: anything else escapes.
/// </summary>
/// <remarks>One instance per thread: the buffer is reused, as the channel reuses its own.</remarks>
internal sealed class FrameReaderHarness
{
    private readonly byte[] _buffer = new byte[HandoffProtocol.HeaderLength + HandoffProtocol.MaxPayloadLength];

    /// <summary>Feeds <paramref name="input"/> to the reader; adds what it decoded to <paramref name="decoded"/>.</summary>
    public FeedOutcome Feed(ReadOnlySpan<byte> input, ReadOnlySpan<int> chunks, List<DecodedFrame>? decoded = null)
    {
        int buffered = 0;
        int offset = 0;
        int chunkIndex = 0;
        int messages = 0;
        try
        {
            while (true)
            {
                if (HandoffProtocol.TryReadFrame(_buffer.AsSpan(0, buffered), out var type, out var payload, out int consumed))
                {
                    var message = HandoffProtocol.Decode(type, payload);
                    decoded?.Add(new DecodedFrame(message, offset - buffered, consumed));
                    messages++;
                    _buffer.AsSpan(consumed, buffered - consumed).CopyTo(_buffer);
                    buffered -= consumed;
                    continue;
                }

                if (buffered == _buffer.Length)
                {
                    throw new HandoffProtocolException("Frame larger than the receive buffer.");
                }

                if (offset == input.Length)
                {
                    return buffered > 0
                        ? new FeedOutcome(messages, FeedEnd.Truncated, "Connection closed in the middle of a frame.")
                        : new FeedOutcome(messages, FeedEnd.EndOfStream, null);
                }

                int chunk = chunks.IsEmpty ? int.MaxValue : chunks[chunkIndex++ % chunks.Length];
                int read = Math.Min(Math.Min(chunk, _buffer.Length - buffered), input.Length - offset);
                input.Slice(offset, read).CopyTo(_buffer.AsSpan(buffered));
                offset += read;
                buffered += read;
            }
        }
        catch (HandoffProtocolException ex)
        {
            return new FeedOutcome(messages, FeedEnd.ProtocolError, ex.Message);
        }
    }
}
