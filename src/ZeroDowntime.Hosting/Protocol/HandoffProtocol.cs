using System.Buffers;
using System.Buffers.Binary;
using System.Text;
using ZeroDowntime.Hosting.Interop;

namespace ZeroDowntime.Hosting.Protocol;

/// <summary>
/// Framing of the handoff protocol. A frame is <c>'Z' 'D' type:u8 length:u32be payload[length]</c>; strings are
/// <c>length:u16be utf8</c>. Every length is bounded before anything is allocated, so a hostile peer costs at
/// most <see cref="MaxPayloadLength"/> bytes. The <see cref="MessageType.Hello"/> layout (version first) is frozen
/// so that any two versions can at least tell each other which versions they speak.
/// </summary>
internal static class HandoffProtocol
{
    /// <summary>
    /// The newest version this build speaks. Bump it on any incompatible change, and keep speaking the older ones
    /// down to <see cref="MinimumVersion"/>: a running process built from an earlier commit must still hand over to
    /// this build, and back. v2: the welcome carries the generation and the time of the first start.
    /// </summary>
    public const ushort Version = 2;

    /// <summary>The oldest version this build still speaks (with a peer that speaks no newer one).</summary>
    public const ushort MinimumVersion = 1;

    public const int HeaderLength = 7;
    public const int MaxPayloadLength = 32 * 1024;
    public const int MaxStringBytes = 1024;
    public const int MaxListeners = 128;

    private const byte Magic0 = (byte)'Z';
    private const byte Magic1 = (byte)'D';

    /// <summary>
    /// Tries to read one frame from the start of <paramref name="buffer"/>. Returns false when more bytes are needed;
    /// throws <see cref="HandoffProtocolException"/> when the bytes cannot be a frame.
    /// </summary>
    public static bool TryReadFrame(ReadOnlySpan<byte> buffer, out MessageType type, out ReadOnlySpan<byte> payload, out int consumed)
    {
        type = default;
        payload = default;
        consumed = 0;
        if (buffer.Length >= 1 && buffer[0] != Magic0 || buffer.Length >= 2 && buffer[1] != Magic1)
        {
            throw new HandoffProtocolException("Not a handoff frame (bad magic).");
        }

        if (buffer.Length < HeaderLength)
        {
            return false;
        }

        type = (MessageType)buffer[2];
        uint length = BinaryPrimitives.ReadUInt32BigEndian(buffer[3..]);
        if (length > MaxPayloadLength)
        {
            throw new HandoffProtocolException($"Frame length {length} exceeds the limit of {MaxPayloadLength} bytes.");
        }

        if (buffer.Length < HeaderLength + (int)length)
        {
            return false;
        }

        payload = buffer.Slice(HeaderLength, (int)length);
        consumed = HeaderLength + (int)length;
        return true;
    }

    public static HandoffMessage Decode(MessageType type, ReadOnlySpan<byte> payload)
    {
        var reader = new PayloadReader(payload);
        HandoffMessage message = type switch
        {
            MessageType.Hello => DecodeHello(ref reader),
            MessageType.Welcome => DecodeWelcome(ref reader),
            MessageType.Refused => new RefusedMessage(ReadReason(ref reader), reader.ReadUInt16(), reader.ReadString()),
            MessageType.Ready => new ReadyMessage(),
            MessageType.Committed => new CommittedMessage(),
            MessageType.Abandoned => new AbandonedMessage(reader.ReadString()),
            MessageType.Failed => new FailedMessage(reader.ReadString()),
            MessageType.Heartbeat => new HeartbeatMessage(),
            MessageType.Revoked => new RevokedMessage(reader.ReadString()),
            MessageType.Release => new ReleaseMessage(),
            MessageType.StatusRequest => new StatusRequestMessage(reader.ReadUInt16()),
            MessageType.Status => DecodeStatus(ref reader),
            MessageType.UpgradeRequest => new UpgradeRequestMessage(reader.ReadUInt16()),
            MessageType.UpgradeStarted => new UpgradeStartedMessage(reader.ReadInt32()),
            MessageType.UpgradeResult => new UpgradeResultMessage(ReadEnum<UpgradeOutcome>(ref reader), reader.ReadInt32(), reader.ReadInt32(), reader.ReadString(), reader.ReadInt64(), reader.ReadInt64()),
            MessageType.RollbackRequest => new RollbackRequestMessage(ReadEnum<RollbackOrigin>(ref reader), reader.ReadString()),
            MessageType.RollbackAccepted => new RollbackAcceptedMessage(),
            MessageType.HandedBack => new HandedBackMessage(ReadBoolean(ref reader)),
            MessageType.ProbationEnded => new ProbationEndedMessage(reader.ReadString()),
            MessageType.ProbationStatus => new ProbationStatusMessage(ReadEnum<ProbationState>(ref reader), reader.ReadInt32(), reader.ReadInt64(), reader.ReadString()),
            MessageType.RollbackCommand => new RollbackCommandMessage(reader.ReadUInt16(), reader.ReadString()),
            MessageType.RollbackResult => new RollbackResultMessage(ReadEnum<RollbackOutcome>(ref reader), reader.ReadInt32(), reader.ReadString(), reader.ReadInt64()),
            MessageType.ProbationUpdate => new ProbationUpdateMessage(ReadEnum<ProbationProgress>(ref reader), reader.ReadInt64(), ReadEnum<RollbackOrigin>(ref reader), reader.ReadString()),
            _ => throw new HandoffProtocolException($"Unknown frame type {(byte)type}."),
        };

        // A Hello from a newer version may carry more fields after ours; everything else must be exact.
        if (type != MessageType.Hello && !reader.IsAtEnd)
        {
            throw new HandoffProtocolException($"{type} frame has {reader.Remaining} unexpected trailing bytes.");
        }

        return message;
    }

    /// <summary>
    /// Shortens human-readable text (reasons, details) to fit <see cref="MaxStringBytes"/> in UTF-8 without splitting
    /// a character, and replaces lone surrogates, so that a last word to a peer is never lost to its own length.
    /// </summary>
    public static string FitText(string text)
    {
        string clean = text;
        var valid = new StringBuilder(clean.Length);
        for (int i = 0; i < clean.Length; i++)
        {
            if (char.IsHighSurrogate(clean[i]) && i + 1 < clean.Length && char.IsLowSurrogate(clean[i + 1]))
            {
                valid.Append(clean, i++, 2);
            }
            else
            {
                valid.Append(char.IsSurrogate(clean[i]) ? '\uFFFD' : clean[i]);
            }
        }

        string result = valid.ToString();
        if (StrictUtf8.GetByteCount(result) <= MaxStringBytes)
        {
            return result;
        }

        const string Ellipsis = "...";
        int bytes = 0;
        int cut = 0;
        while (cut < result.Length)
        {
            int width = char.IsHighSurrogate(result[cut]) ? 2 : 1;
            int size = StrictUtf8.GetByteCount(result.AsSpan(cut, width));
            if (bytes + size > MaxStringBytes - Ellipsis.Length)
            {
                break;
            }

            bytes += size;
            cut += width;
        }

        return result[..cut] + Ellipsis;
    }

    public static byte[] Encode(HandoffMessage message)
    {
        var writer = new PayloadWriter();
        switch (message)
        {
            case HelloMessage hello:
                writer.WriteUInt16(hello.Version);
                writer.WriteInt32(hello.ProcessId);
                writer.WriteString(hello.ApplicationId);

                // The extension exists from v2 on; a v1 Hello stays exactly the v1 layout.
                if (hello.Version >= 2 && hello.Features is { } helloFeatures)
                {
                    writer.WriteUInt32((uint)helloFeatures);
                    writer.WriteInt64(hello.ProbationMilliseconds);
                }

                break;
            case WelcomeMessage welcome:
                writer.WriteUInt16(welcome.Version);
                writer.WriteInt32(welcome.ProcessId);
                writer.WriteListeners(welcome.Listeners, "handed over");

                if (welcome.Version >= 2)
                {
                    writer.WriteInt64(welcome.Generation);
                    writer.WriteInt64(welcome.FirstStartUnixMilliseconds);

                    // Only in answer to a Hello that carried features: an earlier successor rejects trailing bytes.
                    if (welcome.Features is { } welcomeFeatures)
                    {
                        writer.WriteUInt32((uint)welcomeFeatures);
                    }
                }

                break;
            case RefusedMessage refused:
                writer.WriteByte((byte)refused.Reason);
                writer.WriteUInt16(refused.Version);
                writer.WriteString(refused.Detail);
                break;
            case AbandonedMessage abandoned:
                writer.WriteString(abandoned.Reason);
                break;
            case FailedMessage failed:
                writer.WriteString(failed.Reason);
                break;
            case RevokedMessage revoked:
                writer.WriteString(revoked.Reason);
                break;
            case ReadyMessage or CommittedMessage or HeartbeatMessage or ReleaseMessage:
                break;
            case RollbackAcceptedMessage:
                break;
            case RollbackRequestMessage rollbackRequest:
                writer.WriteByte((byte)rollbackRequest.Origin);
                writer.WriteString(rollbackRequest.Reason);
                break;
            case HandedBackMessage handedBack:
                writer.WriteByte(handedBack.AllReleased ? (byte)1 : (byte)0);
                break;
            case ProbationEndedMessage probationEnded:
                writer.WriteString(probationEnded.Reason);
                break;
            case ProbationStatusMessage probationStatus:
                writer.WriteByte((byte)probationStatus.State);
                writer.WriteInt32(probationStatus.PeerPid);
                writer.WriteInt64(probationStatus.EndsUnixMilliseconds);
                writer.WriteString(probationStatus.Reason);
                break;
            case RollbackCommandMessage rollbackCommand:
                writer.WriteUInt16(rollbackCommand.Version);
                writer.WriteString(rollbackCommand.Note);
                break;
            case RollbackResultMessage rollbackResult:
                writer.WriteByte((byte)rollbackResult.Outcome);
                writer.WriteInt32(rollbackResult.ServingPid);
                writer.WriteString(rollbackResult.Reason);
                writer.WriteInt64(rollbackResult.SwitchMilliseconds);
                break;
            case ProbationUpdateMessage probationUpdate:
                writer.WriteByte((byte)probationUpdate.Progress);
                writer.WriteInt64(probationUpdate.EndsUnixMilliseconds);
                writer.WriteByte((byte)probationUpdate.Origin);
                writer.WriteString(probationUpdate.Reason);
                break;
            case StatusRequestMessage statusRequest:
                writer.WriteUInt16(statusRequest.Version);
                break;
            case UpgradeRequestMessage upgradeRequest:
                writer.WriteUInt16(upgradeRequest.Version);
                break;
            case StatusMessage status:
                writer.WriteInt32(status.ProcessId);
                writer.WriteString(status.ApplicationId);
                writer.WriteInt64(status.Generation);
                writer.WriteInt64(status.FirstStartUnixMilliseconds);
                writer.WriteInt64(status.ServingSinceUnixMilliseconds);
                writer.WriteByte((byte)status.State);
                writer.WriteListeners(status.Listeners, "reported");

                writer.WriteInt32(status.DrainingPredecessorPid);
                writer.WriteInt32(status.SuccessorPid);
                break;
            case UpgradeStartedMessage started:
                writer.WriteInt32(started.SuccessorPid);
                break;
            case UpgradeResultMessage result:
                writer.WriteByte((byte)result.Outcome);
                writer.WriteInt32(result.SuccessorPid);
                writer.WriteInt32(result.ExitCode);
                writer.WriteString(result.Reason);
                writer.WriteInt64(result.ReadyMilliseconds);
                writer.WriteInt64(result.CommittedMilliseconds);
                break;
            default:
                throw new ArgumentException($"Cannot encode {message.GetType().Name}.", nameof(message));
        }

        byte[] payload = writer.ToArray();
        if (payload.Length > MaxPayloadLength)
        {
            throw new HandoffProtocolException($"{message.Type} frame of {payload.Length} bytes exceeds the limit of {MaxPayloadLength}.");
        }

        byte[] frame = new byte[HeaderLength + payload.Length];
        frame[0] = Magic0;
        frame[1] = Magic1;
        frame[2] = (byte)message.Type;
        BinaryPrimitives.WriteUInt32BigEndian(frame.AsSpan(3), (uint)payload.Length);
        payload.CopyTo(frame, HeaderLength);
        return frame;
    }

    /// <summary>
    /// version, pid, application id; from v2 on optionally features u32 and probation ms i64 (read when at least 12
    /// bytes follow). Anything after that stays ignored, so that the next extension can append again.
    /// </summary>
    private static HelloMessage DecodeHello(ref PayloadReader reader)
    {
        ushort version = reader.ReadUInt16();
        int pid = reader.ReadInt32();
        string applicationId = reader.ReadString();
        return version >= 2 && reader.Remaining >= 12
            ? new HelloMessage(version, pid, applicationId, (HandoffFeatures)reader.ReadUInt32(), reader.ReadInt64())
            : new HelloMessage(version, pid, applicationId);
    }

    /// <summary>From v2 on the generation and the first start, then features u32 only when exactly 4 bytes remain.</summary>
    private static WelcomeMessage DecodeWelcome(ref PayloadReader reader)
    {
        ushort version = reader.ReadUInt16();
        int pid = reader.ReadInt32();
        var listeners = reader.ReadListeners(MessageType.Welcome);
        if (version < 2)
        {
            return new WelcomeMessage(version, pid, listeners);
        }

        long generation = reader.ReadInt64();
        long firstStart = reader.ReadInt64();
        HandoffFeatures? features = reader.Remaining == 4 ? (HandoffFeatures)reader.ReadUInt32() : null;
        return new WelcomeMessage(version, pid, listeners, generation, firstStart, features);
    }

    private static bool ReadBoolean(ref PayloadReader reader) => reader.ReadByte() switch
    {
        0 => false,
        1 => true,
        var value => throw new HandoffProtocolException($"Boolean byte {value} is neither 0 nor 1."),
    };

    private static StatusMessage DecodeStatus(ref PayloadReader reader)
    {
        int pid = reader.ReadInt32();
        string applicationId = reader.ReadString();
        long generation = reader.ReadInt64();
        long firstStart = reader.ReadInt64();
        long servingSince = reader.ReadInt64();
        var state = ReadEnum<ServingState>(ref reader);
        var listeners = reader.ReadListeners(MessageType.Status);
        return new StatusMessage(pid, applicationId, generation, firstStart, servingSince, state, listeners, reader.ReadInt32(), reader.ReadInt32());
    }

    private static T ReadEnum<T>(ref PayloadReader reader)
        where T : struct, Enum
    {
        byte value = reader.ReadByte();
        var candidate = (T)(object)value;
        return Enum.IsDefined(candidate) ? candidate : throw new HandoffProtocolException($"Unknown {typeof(T).Name} {value}.");
    }

    private static RefusalReason ReadReason(ref PayloadReader reader)
    {
        byte value = reader.ReadByte();
        return Enum.IsDefined((RefusalReason)value)
            ? (RefusalReason)value
            : throw new HandoffProtocolException($"Unknown refusal reason {value}.");
    }

    private ref struct PayloadReader(ReadOnlySpan<byte> payload)
    {
        private readonly ReadOnlySpan<byte> _payload = payload;
        private int _position;

        public readonly bool IsAtEnd => _position == _payload.Length;

        public readonly int Remaining => _payload.Length - _position;

        public byte ReadByte() => Take(1)[0];

        public ushort ReadUInt16() => BinaryPrimitives.ReadUInt16BigEndian(Take(2));

        public int ReadInt32() => BinaryPrimitives.ReadInt32BigEndian(Take(4));

        public uint ReadUInt32() => BinaryPrimitives.ReadUInt32BigEndian(Take(4));

        public long ReadInt64() => BinaryPrimitives.ReadInt64BigEndian(Take(8));

        /// <summary>count u16, then (key, bound endpoint) per listener; the count is bounded before anything is allocated.</summary>
        public ListenerDescriptor[] ReadListeners(MessageType frame)
        {
            int count = ReadUInt16();
            if (count > MaxListeners)
            {
                throw new HandoffProtocolException($"{frame} announces {count} listeners; the limit is {MaxListeners}.");
            }

            var listeners = new ListenerDescriptor[count];
            for (int i = 0; i < count; i++)
            {
                listeners[i] = new ListenerDescriptor(ReadString(), ReadString());
            }

            return listeners;
        }

        public string ReadString()
        {
            int length = ReadUInt16();
            if (length > MaxStringBytes)
            {
                throw new HandoffProtocolException($"String of {length} bytes exceeds the limit of {MaxStringBytes}.");
            }

            try
            {
                return StrictUtf8.GetString(Take(length));
            }
            catch (DecoderFallbackException)
            {
                throw new HandoffProtocolException("String is not valid UTF-8.");
            }
        }

        private ReadOnlySpan<byte> Take(int count)
        {
            if (Remaining < count)
            {
                throw new HandoffProtocolException($"Frame truncated: needed {count} more bytes, {Remaining} left.");
            }

            var slice = _payload.Slice(_position, count);
            _position += count;
            return slice;
        }
    }

    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    private sealed class PayloadWriter
    {
        private readonly ArrayBufferWriter<byte> _buffer = new(256);

        public void WriteByte(byte value) => _buffer.Write([value]);

        public void WriteUInt16(ushort value)
        {
            Span<byte> bytes = stackalloc byte[2];
            BinaryPrimitives.WriteUInt16BigEndian(bytes, value);
            _buffer.Write(bytes);
        }

        public void WriteInt32(int value)
        {
            Span<byte> bytes = stackalloc byte[4];
            BinaryPrimitives.WriteInt32BigEndian(bytes, value);
            _buffer.Write(bytes);
        }

        public void WriteUInt32(uint value)
        {
            Span<byte> bytes = stackalloc byte[4];
            BinaryPrimitives.WriteUInt32BigEndian(bytes, value);
            _buffer.Write(bytes);
        }

        public void WriteListeners(IReadOnlyList<ListenerDescriptor> listeners, string what)
        {
            if (listeners.Count > MaxListeners)
            {
                throw new HandoffProtocolException($"At most {MaxListeners} listeners can be {what}; this process has {listeners.Count}.");
            }

            WriteUInt16((ushort)listeners.Count);
            foreach (var listener in listeners)
            {
                WriteString(listener.Key);
                WriteString(listener.BoundEndPoint);
            }
        }

        public void WriteInt64(long value)
        {
            Span<byte> bytes = stackalloc byte[8];
            BinaryPrimitives.WriteInt64BigEndian(bytes, value);
            _buffer.Write(bytes);
        }

        public void WriteString(string value)
        {
            byte[] bytes;
            try
            {
                bytes = StrictUtf8.GetBytes(value);
            }
            catch (EncoderFallbackException)
            {
                throw new HandoffProtocolException("String is not valid UTF-16 (lone surrogate).");
            }

            if (bytes.Length > MaxStringBytes)
            {
                throw new HandoffProtocolException($"String of {bytes.Length} bytes exceeds the limit of {MaxStringBytes}.");
            }

            WriteUInt16((ushort)bytes.Length);
            _buffer.Write(bytes);
        }

        public byte[] ToArray() => _buffer.WrittenSpan.ToArray();
    }
}

/// <summary>The peer sent bytes that are not a valid frame of this protocol.</summary>
internal sealed class HandoffProtocolException(string message) : Exception(message);
