using System.Buffers.Binary;
using System.Text;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using ZeroDowntime.Hosting.Logging;

namespace ZeroDowntime.Hosting.Drain;

/// <summary>
/// The upgraded stream under a WebSocket that ASP.NET Core accepted, through which the drain sends the close frame
/// (1001 Going Away) itself. ASP.NET Core builds its WebSocket over this stream after the handshake and keeps the
/// WebSocket object to itself, so the drain speaks at the frame level: it follows the frames the server writes (RFC
/// 6455 section 5.2), puts its close frame between two of them, and from then on drops what the server still writes
/// (RFC 6455 allows no data after a close frame, and the server's own close frame would be a second one). The peer
/// answers with its close frame, which the application's receive loop reads as the peer's close; it then closes too,
/// and its handler returns. Past <see cref="LongLivedConnections.WebSocketCloseTimeout"/> the request is aborted.
/// </summary>
internal sealed class DrainingWebSocketStream(Stream inner, HttpContext context, LongLivedConnections owner, ILogger logger) : Stream
{
    /// <summary>1001 Going Away, "server going away": FIN + close opcode, payload length, status, reason (unmasked).</summary>
    private static readonly byte[] CloseFrame = BuildCloseFrame(1001, "server going away");

    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly CancellationTokenSource _closeDeadline = new();

    /// <summary>Bytes still to come of the frame the server is writing; 0 between frames.</summary>
    private long _remainingInFrame;

    /// <summary>A frame header arrived split over two writes: boundaries are unknown, so no frame is put in.</summary>
    private bool _boundariesLost;

    private bool _closeRequested;
    private bool _closeSent;

    /// <summary>Completed once the stream is disposed: the WebSocket has ended.</summary>
    private readonly TaskCompletionSource _disposed = new();

    public override bool CanRead => inner.CanRead;

    public override bool CanSeek => false;

    public override bool CanWrite => inner.CanWrite;

    public override long Length => throw new NotSupportedException();

    public override long Position
    {
        get => throw new NotSupportedException();
        set => throw new NotSupportedException();
    }

    /// <summary>Sends the close frame now, or after the frame being written; aborts the request if the peer does not answer in time.</summary>
    public async Task CloseForDrainAsync()
    {
        if (_disposed.Task.IsCompleted)
        {
            return;
        }

        try
        {
            _closeDeadline.CancelAfter(owner.WebSocketCloseTimeout);
            _closeDeadline.Token.Register(AbortUnlessEnded);
        }
        catch (ObjectDisposedException)
        {
            return; // the WebSocket ended meanwhile
        }

        await _writeLock.WaitAsync();
        try
        {
            _closeRequested = true;
            await SendCloseIfBetweenFramesAsync(CancellationToken.None);
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException or OperationCanceledException)
        {
            // The connection is gone already.
        }
        finally
        {
            _writeLock.Release();
        }
    }

    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        await _writeLock.WaitAsync(cancellationToken);
        try
        {
            if (_closeSent)
            {
                return;
            }

            Follow(buffer.Span);
            await inner.WriteAsync(buffer, cancellationToken);
            if (_closeRequested)
            {
                await SendCloseIfBetweenFramesAsync(cancellationToken);
            }
        }
        finally
        {
            _writeLock.Release();
        }
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Write(byte[] buffer, int offset, int count) => WriteAsync(buffer, offset, count).GetAwaiter().GetResult();

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) => inner.ReadAsync(buffer, cancellationToken);

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) => inner.ReadAsync(buffer, offset, count, cancellationToken);

    public override int Read(byte[] buffer, int offset, int count) => inner.Read(buffer, offset, count);

    public override Task FlushAsync(CancellationToken cancellationToken) => inner.FlushAsync(cancellationToken);

    public override void Flush() => inner.Flush();

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    public override async ValueTask DisposeAsync()
    {
        if (MarkDisposed())
        {
            await inner.DisposeAsync();
        }

        await base.DisposeAsync();
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing && MarkDisposed())
        {
            inner.Dispose();
        }

        base.Dispose(disposing);
    }

    /// <summary>The frame header of a server frame: FIN/opcode byte, then the length (7 bits, or 16 or 64 bits following).</summary>
    internal static bool TryReadFrameLength(ReadOnlySpan<byte> header, out long frameLength)
    {
        frameLength = 0;
        if (header.Length < 2)
        {
            return false;
        }

        int length7 = header[1] & 0x7F;
        int maskLength = (header[1] & 0x80) != 0 ? 4 : 0;
        (int headerLength, long payload) = length7 switch
        {
            126 when header.Length >= 4 => (4, BinaryPrimitives.ReadUInt16BigEndian(header[2..])),
            127 when header.Length >= 10 => (10, (long)BinaryPrimitives.ReadUInt64BigEndian(header[2..])),
            126 or 127 => (-1, 0L),
            _ => (2, length7),
        };
        if (headerLength < 0)
        {
            return false;
        }

        frameLength = headerLength + maskLength + payload;
        return true;
    }

    private void AbortUnlessEnded()
    {
        if (!_disposed.Task.IsCompleted)
        {
            logger.WebSocketCloseTimedOut(owner.WebSocketCloseTimeout);
            context.Abort();
        }
    }

    private bool MarkDisposed()
    {
        if (!_disposed.TrySetResult())
        {
            return false;
        }

        owner.Remove(this);
        _closeDeadline.Dispose();
        return true;
    }

    private void Follow(ReadOnlySpan<byte> written)
    {
        while (!written.IsEmpty && !_boundariesLost)
        {
            if (_remainingInFrame == 0)
            {
                if (!TryReadFrameLength(written, out _remainingInFrame))
                {
                    _boundariesLost = true;
                    return;
                }
            }

            long consumed = Math.Min(_remainingInFrame, written.Length);
            _remainingInFrame -= consumed;
            written = written[(int)consumed..];
        }
    }

    private async Task SendCloseIfBetweenFramesAsync(CancellationToken cancellationToken)
    {
        if (_closeSent || _boundariesLost || _remainingInFrame != 0)
        {
            return;
        }

        _closeSent = true;
        await inner.WriteAsync(CloseFrame, cancellationToken);
        await inner.FlushAsync(cancellationToken);
    }

    private static byte[] BuildCloseFrame(ushort status, string reason)
    {
        byte[] text = Encoding.UTF8.GetBytes(reason);
        var frame = new byte[4 + text.Length];
        frame[0] = 0x88;
        frame[1] = (byte)(2 + text.Length);
        BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(2), status);
        text.CopyTo(frame, 4);
        return frame;
    }
}
