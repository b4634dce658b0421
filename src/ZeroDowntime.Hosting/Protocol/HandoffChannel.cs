using System.ComponentModel;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using ZeroDowntime.Hosting.Interop;

namespace ZeroDowntime.Hosting.Protocol;

/// <summary>
/// One connected end of the handoff conversation: framed messages over a Unix stream socket, descriptors
/// via <c>SCM_RIGHTS</c>, a deadline on every read and send, and the peer's kernel-verified credentials. Every error
/// leaves it as a <see cref="HandoffChannelException"/>; every deadline is measured on the <see cref="TimeProvider"/>.
/// </summary>
internal sealed class HandoffChannel : IDisposable
{
    /// <summary>How long a send waits for room in a full socket buffer (a peer that does not read).</summary>
    internal static readonly TimeSpan SendTimeout = TimeSpan.FromSeconds(5);

    private readonly Socket _socket;
    private readonly TimeProvider _time;
    private readonly byte[] _buffer = new byte[HandoffProtocol.HeaderLength + HandoffProtocol.MaxPayloadLength];
    private readonly List<int> _receivedFds = [];
    private readonly Lock _sendLock = new();
    private int _buffered;

    public HandoffChannel(Socket socket, TimeProvider? time = null)
    {
        _socket = socket;
        _time = time ?? TimeProvider.System;
        (PeerProcessId, PeerUserId) = ReadPeerCredentials(socket);
    }

    /// <summary>The pid that the kernel reports for the peer (for a client: whoever called <c>listen()</c>).</summary>
    public int PeerProcessId { get; }

    /// <summary>The uid of the peer as the kernel reports it (<c>SO_PEERCRED</c>): not forgeable.</summary>
    public uint PeerUserId { get; }

    /// <summary>True when the peer has sent bytes that have not been read yet (false once this end is disposed).</summary>
    public bool HasPendingData
    {
        get
        {
            try
            {
                return _buffered > 0 || _socket.Available > 0;
            }
            catch (Exception ex) when (ex is ObjectDisposedException or SocketException)
            {
                return false;
            }
        }
    }

    /// <summary>
    /// Connects to the handoff socket at <paramref name="path"/> within <paramref name="timeout"/>. No socket file is
    /// <see cref="HandoffChannelError.NoServer"/>, a file nobody listens on is <see cref="HandoffChannelError.ConnectionRefused"/>.
    /// </summary>
    public static async Task<HandoffChannel> ConnectAsync(string path, TimeSpan timeout, TimeProvider time, CancellationToken cancellationToken)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            using var deadline = new CancellationTokenSource(timeout, time);
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, deadline.Token);
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), linked.Token);
            return new HandoffChannel(socket, time);
        }
        catch (Exception ex)
        {
            socket.Dispose();
            throw ex switch
            {
                OperationCanceledException when cancellationToken.IsCancellationRequested => ex,
                OperationCanceledException => new HandoffChannelException(HandoffChannelError.TimedOut,
                    $"The process serving {path} did not accept the connection within {timeout.TotalSeconds:0.###} s.", ex),
                SocketException { SocketErrorCode: SocketError.AddressNotAvailable } => new HandoffChannelException(HandoffChannelError.NoServer,
                    $"Nobody serves {path} (no such socket).", ex),
                SocketException { SocketErrorCode: SocketError.ConnectionRefused } => new HandoffChannelException(HandoffChannelError.ConnectionRefused,
                    $"Nobody serves {path} (a stale socket file: the process that created it is gone).", ex),
                SocketException or InvalidOperationException => new HandoffChannelException(HandoffChannelError.Closed,
                    $"Cannot connect to {path}: {ex.Message}", ex),
                ArgumentOutOfRangeException => new HandoffChannelException(HandoffChannelError.NoServer,
                    $"'{path}' is too long for a Unix socket path.", ex),
                _ => ex,
            };
        }
    }

    /// <summary>
    /// Reads the next message within <paramref name="timeout"/> (measured on the channel's clock). Descriptors that
    /// came with a <see cref="MessageType.Welcome"/> frame are moved to <paramref name="fds"/>; any other descriptor
    /// is closed at once: the peer had no business sending it.
    /// </summary>
    /// <exception cref="HandoffChannelException">The peer closed, was silent past the deadline, or broke the protocol.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public async Task<HandoffMessage> ReadAsync(TimeSpan timeout, CancellationToken cancellationToken, List<int>? fds = null)
    {
        using var deadline = timeout == Timeout.InfiniteTimeSpan ? new CancellationTokenSource() : new CancellationTokenSource(timeout, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, deadline.Token);
        try
        {
            while (true)
            {
                if (TryTakeFrame(fds, out var message))
                {
                    return message;
                }

                try
                {
                    // A zero-byte receive waits for readability without consuming anything, so that the bytes and
                    // the descriptors attached to them can then be read together with recvmsg.
                    await _socket.ReceiveAsync(Memory<byte>.Empty, SocketFlags.None, linked.Token);
                }
                catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
                {
                    // The deadline passed. A process that was frozen past it (SIGSTOP, a cgroup freezer, swap) wakes up
                    // to the expired timer and to what the peer sent meanwhile, in either order: read what is queued
                    // before calling the peer silent.
                    while (!TryTakeFrame(fds, out message))
                    {
                        if (!ReceiveQueued())
                        {
                            throw new HandoffChannelException(HandoffChannelError.TimedOut,
                                $"No complete handoff message within {timeout.TotalSeconds:0.###} s.");
                        }
                    }

                    return message;
                }

                ReceiveQueued();
            }
        }
        catch (Exception ex) when (Translate(ex) is { } translated)
        {
            FdPassing.CloseAll(_receivedFds);
            throw translated;
        }
        catch
        {
            FdPassing.CloseAll(_receivedFds);
            throw;
        }
    }

    /// <exception cref="HandoffChannelException">The peer is gone, does not read, or the message cannot be encoded.</exception>
    public void Send(HandoffMessage message, ReadOnlySpan<int> fds = default)
    {
        try
        {
            byte[] frame = HandoffProtocol.Encode(message);
            lock (_sendLock)
            {
                FdPassing.Send(_socket, frame, fds, SendTimeout, _time);
            }
        }
        catch (Exception ex) when (Translate(ex) is { } translated)
        {
            throw translated;
        }
    }

    /// <summary>
    /// Sends without throwing: for the last words to a peer that may already be gone. Returns false when the peer is
    /// gone or when the message cannot be encoded (a reason over <see cref="HandoffProtocol.MaxStringBytes"/>).
    /// </summary>
    public bool TrySend(HandoffMessage message)
    {
        try
        {
            Send(message);
            return true;
        }
        catch (HandoffChannelException)
        {
            return false;
        }
    }

    public void Dispose()
    {
        FdPassing.CloseAll(_receivedFds);
        _socket.Dispose();
    }

    /// <summary>The boundary: what the socket, the interop and the decoder throw, as what it means for the conversation.</summary>
    private static HandoffChannelException? Translate(Exception ex) => ex switch
    {
        HandoffChannelException => null,
        HandoffProtocolException => new HandoffChannelException(HandoffChannelError.ProtocolViolation, ex.Message, ex),
        SocketException { SocketErrorCode: SocketError.TimedOut } => new HandoffChannelException(HandoffChannelError.TimedOut,
            $"The peer did not read for {SendTimeout.TotalSeconds:0} s.", ex),
        SocketException or Win32Exception or ObjectDisposedException => new HandoffChannelException(HandoffChannelError.Closed, ex.Message, ex),
        _ => null,
    };

    /// <summary>
    /// Moves what the kernel has queued (bytes and descriptors) into the buffer, without blocking. Returns false when
    /// nothing was queued.
    /// </summary>
    private bool ReceiveQueued()
    {
        if (_buffered == _buffer.Length)
        {
            throw new HandoffProtocolException("Frame larger than the receive buffer.");
        }

        var received = FdPassing.Receive(_socket, _buffer.AsSpan(_buffered), _receivedFds);
        switch (received.Status)
        {
            case ReceiveStatus.WouldBlock:
                return false;
            case ReceiveStatus.EndOfStream:
                FdPassing.CloseAll(_receivedFds);
                throw _buffered > 0
                    ? new HandoffProtocolException($"Connection closed in the middle of a frame ({_buffered} bytes buffered).")
                    : new HandoffChannelException(HandoffChannelError.Closed, "The peer closed the connection.");
            case ReceiveStatus.DescriptorsTruncated:
                throw new HandoffProtocolException("Received file descriptors were truncated (MSG_CTRUNC).");
            default:
                _buffered += received.Length;
                return true;
        }
    }

    private bool TryTakeFrame(List<int>? fds, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out HandoffMessage? message)
    {
        message = null;
        if (!HandoffProtocol.TryReadFrame(_buffer.AsSpan(0, _buffered), out var type, out var payload, out int consumed))
        {
            return false;
        }

        message = HandoffProtocol.Decode(type, payload);
        _buffer.AsSpan(consumed, _buffered - consumed).CopyTo(_buffer);
        _buffered -= consumed;

        if (type == MessageType.Welcome && fds is not null)
        {
            fds.AddRange(_receivedFds);
            _receivedFds.Clear();
        }
        else
        {
            FdPassing.CloseAll(_receivedFds);
        }

        return true;
    }

    private static (int Pid, uint Uid) ReadPeerCredentials(Socket socket)
    {
        Span<byte> ucred = stackalloc byte[12];
        int length = socket.GetRawSocketOption(Libc.SOL_SOCKET, Libc.SO_PEERCRED, ucred);
        if (length != 12)
        {
            throw new InvalidOperationException($"SO_PEERCRED returned {length} bytes instead of 12.");
        }

        return (MemoryMarshal.Read<int>(ucred), MemoryMarshal.Read<uint>(ucred[4..]));
    }
}
