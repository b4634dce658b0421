using System.ComponentModel;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace ZeroDowntime.Hosting.Interop;

/// <summary>
/// Sends and receives file descriptors over a connected Unix domain socket with <c>SCM_RIGHTS</c>
/// (unix(7), cmsg(3)). The data bytes travel with the descriptors in one <c>sendmsg</c> so that the receiver
/// gets both in one <c>recvmsg</c>.
/// </summary>
internal static unsafe class FdPassing
{
    /// <summary>Linux's <c>SCM_MAX_FD</c>: the most descriptors one message may carry.</summary>
    public const int MaxFdsPerMessage = 253;

    /// <summary>How long one <c>poll(2)</c> slice waits for room in a full send buffer before the deadline is judged again.</summary>
    private static readonly TimeSpan SendPollSlice = TimeSpan.FromMilliseconds(20);

    /// <summary>
    /// Sends all of <paramref name="data"/>, with <paramref name="fds"/> attached to its first byte. A full send buffer
    /// (a peer that does not read) is waited on until <paramref name="timeout"/> has passed on <paramref name="time"/>,
    /// then the send fails with <see cref="SocketError.TimedOut"/>.
    /// </summary>
    public static void Send(Socket socket, ReadOnlySpan<byte> data, ReadOnlySpan<int> fds, TimeSpan timeout, TimeProvider time)
    {
        ArgumentOutOfRangeException.ThrowIfZero(data.Length);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(fds.Length, MaxFdsPerMessage);

        int controlLength = fds.Length == 0 ? 0 : Libc.CmsgSpace(fds.Length * sizeof(int));
        byte* control = stackalloc byte[Math.Max(controlLength, 1)];
        new Span<byte>(control, controlLength).Clear();
        if (fds.Length > 0)
        {
            var header = (Libc.CmsgHdr*)control;
            header->Length = (nuint)Libc.CmsgLen(fds.Length * sizeof(int));
            header->Level = Libc.SOL_SOCKET;
            header->Type = Libc.SCM_RIGHTS;
            fds.CopyTo(new Span<int>(control + sizeof(Libc.CmsgHdr), fds.Length));
        }

        var handle = socket.SafeHandle;
        int sent = 0;
        bool first = true;
        long? blockedSince = null;
        fixed (byte* bytes = data)
        {
            while (sent < data.Length)
            {
                var iov = new Libc.IoVec { Base = bytes + sent, Length = (nuint)(data.Length - sent) };
                var message = new Libc.MsgHdr
                {
                    Iov = &iov,
                    IovLength = 1,
                    Control = first && controlLength > 0 ? control : null,
                    ControlLength = first ? (nuint)controlLength : 0,
                };
                nint result = Libc.sendmsg(handle, &message, Libc.MSG_NOSIGNAL);
                if (result < 0)
                {
                    int errno = Marshal.GetLastPInvokeError();
                    if (errno == Libc.EINTR)
                    {
                        continue;
                    }

                    if (errno == Libc.EAGAIN)
                    {
                        // The socket is non-blocking (it has been used asynchronously); our frames are tiny, so a
                        // full send buffer means a peer that does not read. Wait for room in short slices, judging
                        // the deadline on the TimeProvider so that a test's fake clock decides it.
                        blockedSince ??= time.GetTimestamp();
                        if (time.GetElapsedTime(blockedSince.Value) >= timeout)
                        {
                            throw new SocketException((int)SocketError.TimedOut);
                        }

                        socket.Poll(SendPollSlice, SelectMode.SelectWrite);
                        continue;
                    }

                    throw new Win32Exception(errno, $"sendmsg failed: {Marshal.GetPInvokeErrorMessage(errno)}");
                }

                sent += (int)result;
                first = false;
                blockedSince = null;
            }
        }
    }

    /// <summary>
    /// Receives up to <paramref name="buffer"/>.Length bytes without blocking, appending any descriptors that came
    /// with them to <paramref name="receivedFds"/> (close-on-exec set). Says whether bytes came (and how many), none
    /// are there yet, or the peer closed; descriptors the kernel had to drop (<c>MSG_CTRUNC</c>) make the whole set
    /// unusable, so all of them are closed and <see cref="ReceiveStatus.DescriptorsTruncated"/> is returned.
    /// </summary>
    public static ReceiveResult Receive(Socket socket, Span<byte> buffer, List<int> receivedFds)
    {
        const int MaxFds = MaxFdsPerMessage;
        int controlLength = Libc.CmsgSpace(MaxFds * sizeof(int));
        byte* control = stackalloc byte[controlLength];
        var handle = socket.SafeHandle;

        fixed (byte* bytes = buffer)
        {
            while (true)
            {
                var iov = new Libc.IoVec { Base = bytes, Length = (nuint)buffer.Length };
                var message = new Libc.MsgHdr
                {
                    Iov = &iov,
                    IovLength = 1,
                    Control = control,
                    ControlLength = (nuint)controlLength,
                };
                nint result = Libc.recvmsg(handle, &message, Libc.MSG_DONTWAIT | Libc.MSG_CMSG_CLOEXEC);
                if (result < 0)
                {
                    int errno = Marshal.GetLastPInvokeError();
                    if (errno == Libc.EINTR)
                    {
                        continue;
                    }

                    if (errno == Libc.EAGAIN)
                    {
                        return new ReceiveResult(ReceiveStatus.WouldBlock, 0);
                    }

                    throw new Win32Exception(errno, $"recvmsg failed: {Marshal.GetPInvokeErrorMessage(errno)}");
                }

                CollectFds(&message, receivedFds);
                if ((message.Flags & Libc.MSG_CTRUNC) != 0)
                {
                    // The kernel dropped descriptors that did not fit: the set is incomplete, so use none of it.
                    CloseAll(receivedFds);
                    return new ReceiveResult(ReceiveStatus.DescriptorsTruncated, (int)result);
                }

                return result == 0 ? new ReceiveResult(ReceiveStatus.EndOfStream, 0) : new ReceiveResult(ReceiveStatus.Data, (int)result);
            }
        }
    }

    public static void CloseAll(List<int> fds)
    {
        foreach (int fd in fds)
        {
            Libc.close(fd);
        }

        fds.Clear();
    }

    private static void CollectFds(Libc.MsgHdr* message, List<int> receivedFds)
    {
        byte* cursor = (byte*)message->Control;
        byte* end = cursor + (long)message->ControlLength;
        while (cursor + sizeof(Libc.CmsgHdr) <= end)
        {
            var header = (Libc.CmsgHdr*)cursor;
            int length = (int)header->Length;
            if (length < sizeof(Libc.CmsgHdr) || cursor + length > end)
            {
                break;
            }

            if (header->Level == Libc.SOL_SOCKET && header->Type == Libc.SCM_RIGHTS)
            {
                int count = (length - sizeof(Libc.CmsgHdr)) / sizeof(int);
                int* fds = (int*)(cursor + sizeof(Libc.CmsgHdr));
                for (int i = 0; i < count; i++)
                {
                    receivedFds.Add(fds[i]);
                }
            }

            cursor += Libc.CmsgAlign(length);
        }
    }
}

/// <summary>What one non-blocking <see cref="FdPassing.Receive"/> found.</summary>
internal enum ReceiveStatus
{
    /// <summary><see cref="ReceiveResult.Length"/> bytes arrived (and any descriptors attached to them).</summary>
    Data,

    /// <summary>Nothing is queued yet.</summary>
    WouldBlock,

    /// <summary>The peer closed its end.</summary>
    EndOfStream,

    /// <summary>Descriptors were dropped by the kernel (<c>MSG_CTRUNC</c>): all that came were closed.</summary>
    DescriptorsTruncated,
}

/// <summary>The outcome of <see cref="FdPassing.Receive"/>: a status and, for data, how many bytes.</summary>
internal readonly record struct ReceiveResult(ReceiveStatus Status, int Length);
