using System.Net.Sockets;
using System.Runtime.InteropServices;
using ZeroDowntime.Hosting.Interop;

namespace ZeroDowntime.Hosting.Protocol;

/// <summary>
/// One connected end of the handoff conversation: framed messages over a Unix stream socket, descriptors
/// via <c>SCM_RIGHTS</c>, a deadline on every read, and the peer's kernel-verified credentials.
/// </summary>
internal sealed class HandoffChannel : IDisposable
{
    private readonly Socket _socket;
    private readonly byte[] _buffer = new byte[HandoffProtocol.HeaderLength + HandoffProtocol.MaxPayloadLength];
    private readonly List<int> _receivedFds = [];
    private readonly Lock _sendLock = new();
    private int _buffered;

    public HandoffChannel(Socket socket)
    {
        _socket = socket;
        (PeerProcessId, PeerUserId) = ReadPeerCredentials(socket);
    }

    /// <summary>The pid that the kernel reports for the peer (for a client: whoever called <c>listen()</c>).</summary>
    public int PeerProcessId { get; }

    /// <summary>The uid of the peer as the kernel reports it (<c>SO_PEERCRED</c>): not forgeable.</summary>
    public uint PeerUserId { get; }

    /// <summary>True when the peer has sent bytes that have not been read yet.</summary>
    public bool HasPendingData => _buffered > 0 || _socket.Available > 0;

    /// <summary>
    /// Reads the next message within <paramref name="timeout"/>. Returns null at end of stream. Descriptors that
    /// came with a <see cref="MessageType.Welcome"/> frame are moved to <paramref name="fds"/>; any other
    /// descriptor is closed at once: the peer had no business sending it.
    /// </summary>
    public async Task<HandoffMessage?> ReadAsync(TimeSpan timeout, CancellationToken cancellationToken, List<int>? fds = null)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(timeout);
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
                    await _socket.ReceiveAsync(Memory<byte>.Empty, SocketFlags.None, deadline.Token);
                }
                catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
                {
                    // The deadline passed. A process that was frozen past it (SIGSTOP, a cgroup freezer, swap) wakes up
                    // to the expired timer and to what the peer sent meanwhile, in either order: read what is queued
                    // before calling the peer silent.
                    while (TryTakeFrame(fds, out message) is false)
                    {
                        switch (ReceiveQueued())
                        {
                            case Received.Nothing:
                                throw new TimeoutException($"No complete handoff message within {timeout.TotalSeconds:0.###} s.");
                            case Received.EndOfStream:
                                return null;
                        }
                    }

                    return message;
                }

                if (ReceiveQueued() == Received.EndOfStream)
                {
                    return null;
                }
            }
        }
        catch
        {
            FdPassing.CloseAll(_receivedFds);
            throw;
        }
    }

    public void Send(HandoffMessage message, ReadOnlySpan<int> fds = default)
    {
        byte[] frame = HandoffProtocol.Encode(message);
        lock (_sendLock)
        {
            FdPassing.Send(_socket, frame, fds);
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
        catch (Exception ex) when (ex is SocketException or System.ComponentModel.Win32Exception or ObjectDisposedException or HandoffProtocolException)
        {
            return false;
        }
    }

    public void Dispose()
    {
        FdPassing.CloseAll(_receivedFds);
        _socket.Dispose();
    }

    private enum Received
    {
        Nothing,
        Bytes,
        EndOfStream,
    }

    /// <summary>Moves what the kernel has queued (bytes and descriptors) into the buffer, without blocking.</summary>
    private Received ReceiveQueued()
    {
        if (_buffered == _buffer.Length)
        {
            throw new HandoffProtocolException("Frame larger than the receive buffer.");
        }

        int read = FdPassing.TryReceive(_socket, _buffer.AsSpan(_buffered), _receivedFds);
        if (read == 0)
        {
            FdPassing.CloseAll(_receivedFds);
            return _buffered > 0
                ? throw new HandoffProtocolException($"Connection closed in the middle of a frame ({_buffered} bytes buffered).")
                : Received.EndOfStream;
        }

        if (read < 0)
        {
            return Received.Nothing;
        }

        _buffered += read;
        return Received.Bytes;
    }

    private bool TryTakeFrame(List<int>? fds, out HandoffMessage? message)
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
