using System.Buffers.Binary;
using System.Text;
using CsCheck;
using ZeroDowntime.Hosting.Protocol;

namespace ZeroDowntime.Hosting.Fuzz;

/// <summary>
/// CsCheck generators of reader inputs: random bytes, random payloads behind a valid header, valid frames of every
/// message type (encoded from real messages), and those frames mutated; each with random receive chunk sizes.
/// </summary>
internal static class FuzzGenerators
{
    private const int MaxPayload = HandoffProtocol.MaxPayloadLength;
    private const int MaxString = HandoffProtocol.MaxStringBytes;

    /// <summary>Interesting values for a u32 length field.</summary>
    private static readonly uint[] LengthValues =
        [0, 1, HandoffProtocol.HeaderLength, MaxPayload - 1, MaxPayload, MaxPayload + 1, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 0xFFFF_FFF9];

    /// <summary>Interesting values for a u16 field: string lengths and listener counts at and around their limits.</summary>
    private static readonly ushort[] U16Values =
        [0, 1, 2, MaxString - 1, MaxString, MaxString + 1, HandoffProtocol.MaxListeners, HandoffProtocol.MaxListeners + 1, 0x7FFF, 0x8000, 0xFFFF];

    private static readonly byte[] ByteValues = [0, 1, 0x7F, 0x80, 0xC0, 0xED, 0xF4, 0xFE, 0xFF, (byte)'Z', (byte)'D'];

    /// <summary>Byte sequences that strict UTF-8 must refuse: overlong, surrogate, beyond U+10FFFF, stray and cut.</summary>
    private static readonly byte[][] InvalidUtf8 =
    [
        [0xC0, 0x80], [0xC1, 0xBF], [0xE0, 0x80, 0x80], [0xED, 0xA0, 0x80], [0xED, 0xBF, 0xBF], [0xF4, 0x90, 0x80, 0x80],
        [0xF8, 0x88, 0x80, 0x80, 0x80], [0x80], [0xBF], [0xFE], [0xFF], [0xE2, 0x82], [0xF0, 0x9F, 0x98], [0xC3],
    ];

    /// <summary>Unicode scalar values of every UTF-8 length, with BOM, replacement char, noncharacter and NUL.</summary>
    private static readonly Gen<int> CodePoint = Gen.Frequency(
        W(8, Gen.Int[' ', '~']),
        W(1, Gen.Int[0, 0x1F]),
        W(2, Gen.Int[0x80, 0x7FF]),
        W(2, Gen.Int[0x800, 0xD7FF]),
        W(1, Gen.Int[0xE000, 0xFFFF]),
        W(1, Gen.OneOf(0xFEFF, 0xFFFD, 0xFFFF, 0)),
        W(1, Gen.Int[0x10000, 0x10FFFF]));

    /// <summary>Feature words: none, probation, and bits this build does not know (carried as they are).</summary>
    private static readonly Gen<HandoffFeatures> Features = Gen.Frequency(
        W(3, Gen.Const(HandoffFeatures.Probation)),
        W(1, Gen.Const(HandoffFeatures.None)),
        W(1, Gen.UInt.Select(bits => (HandoffFeatures)bits)));

    /// <summary>A Hello; from v2 on sometimes with the probation extension (features, probation ms), as issue 20 sends it.</summary>
    private static readonly Gen<HandoffMessage> Hello =
        Gen.Select(Gen.UShort, Gen.Int, Text(MaxString), Gen.Bool, Features, Gen.Long, (v, pid, id, extended, features, probationMs) =>
            (HandoffMessage)(v >= 2 && extended ? new HelloMessage(v, pid, id, features, probationMs) : new HelloMessage(v, pid, id)));

    private static readonly Gen<HandoffMessage> Welcome = Gen.Frequency(
            W(6, Gen.Int[0, 4]),
            W(3, Gen.Int[0, HandoffProtocol.MaxListeners]),
            W(1, Gen.Const(HandoffProtocol.MaxListeners)))
        .SelectMany(count =>
        {
            // Keep the payload within the limit: 8 bytes of fixed fields (24 from v2: generation, first start), then 2
            // strings of (2 + bytes) per listener.
            int budget = count == 0 ? 0 : Math.Min(MaxString, ((MaxPayload - 24) / (2 * count)) - 2);
            var text = Text(budget);
            // From v2 on, the answer to a Hello with features carries 4 bytes more: keep the budget for them.
            var listenerGen = Gen.Select(text, text, (k, e) => new ListenerDescriptor(k, e)).Array[count];
            return Gen.Select(Gen.UShort, Gen.Int, listenerGen, Gen.Long, Gen.Long, Gen.Bool, Features,
                (v, pid, listeners, generation, firstStart, extended, features) => (HandoffMessage)(v >= 2
                    ? new WelcomeMessage(v, pid, listeners, generation, firstStart, extended && FitsFeatures(listeners) ? features : null)
                    : new WelcomeMessage(v, pid, listeners)));
        });

    private static readonly Gen<ListenerDescriptor[]> FewListeners =
        Gen.Select(Text(64), Text(64), (k, e) => new ListenerDescriptor(k, e)).Array[0, 4];

    /// <summary>The control frames of v2 (zerodowntime status / upgrade).</summary>
    private static readonly Gen<HandoffMessage> Control = Gen.OneOf(
        Gen.UShort.Select(v => (HandoffMessage)new StatusRequestMessage(v)),
        Gen.UShort.Select(v => (HandoffMessage)new UpgradeRequestMessage(v)),
        Gen.Int.Select(pid => (HandoffMessage)new UpgradeStartedMessage(pid)),
        Gen.Select(Gen.OneOf(Enum.GetValues<UpgradeOutcome>()), Gen.Int, Gen.Int, Text(MaxString), Gen.Long, Gen.Long,
            (o, pid, exit, reason, ready, committed) => (HandoffMessage)new UpgradeResultMessage(o, pid, exit, reason, ready, committed)),
        Gen.Select(Gen.Int, Text(256), Gen.Long, Gen.Long, Gen.Long, Gen.OneOf(Enum.GetValues<ServingState>()), FewListeners, Gen.Int, Gen.Int,
            (pid, app, generation, first, since, state, listeners, predecessor, successor) =>
                (HandoffMessage)new StatusMessage(pid, app, generation, first, since, state, listeners, predecessor, successor)));

    /// <summary>The frames of probation and rollback (16-23, issue 20), every enum value and some beyond.</summary>
    private static readonly Gen<HandoffMessage> Probation = Gen.OneOf(
        Gen.Select(Gen.OneOf(Enum.GetValues<RollbackOrigin>()), Text(MaxString), (o, r) => (HandoffMessage)new RollbackRequestMessage(o, r)),
        Gen.Const((HandoffMessage)new RollbackAcceptedMessage()),
        Gen.Bool.Select(all => (HandoffMessage)new HandedBackMessage(all)),
        Text(MaxString).Select(r => (HandoffMessage)new ProbationEndedMessage(r)),
        Gen.Select(Gen.OneOf(Enum.GetValues<ProbationState>()), Gen.Int, Gen.Long, Text(MaxString),
            (state, peer, ends, reason) => (HandoffMessage)new ProbationStatusMessage(state, peer, ends, reason)),
        Gen.Select(Gen.UShort, Text(MaxString), (v, note) => (HandoffMessage)new RollbackCommandMessage(v, note)),
        Gen.Select(Gen.OneOf(Enum.GetValues<RollbackOutcome>()), Gen.Int, Text(MaxString), Gen.Long,
            (outcome, pid, reason, ms) => (HandoffMessage)new RollbackResultMessage(outcome, pid, reason, ms)),
        Gen.Select(Gen.OneOf(Enum.GetValues<ProbationProgress>()), Gen.Long, Gen.OneOf(Enum.GetValues<RollbackOrigin>()), Text(MaxString),
            (progress, ends, origin, reason) => (HandoffMessage)new ProbationUpdateMessage(progress, ends, origin, reason)));

    private static readonly Gen<HandoffMessage> Refused = Gen.Select(
        Gen.OneOf(Enum.GetValues<RefusalReason>()), Gen.UShort, Text(MaxString), (r, v, d) => (HandoffMessage)new RefusedMessage(r, v, d));

    private static readonly Gen<HandoffMessage> Boundary = Gen.OneOf(
        (HandoffMessage)new HelloMessage(ushort.MaxValue, int.MinValue, new string('a', MaxString)),
        new FailedMessage(new string('\u20AC', MaxString / 3) + "a"),
        new RevokedMessage(string.Concat(Enumerable.Repeat("\U0001F600", MaxString / 4))),
        LargestWelcome(),
        LargestWelcome() with { Listeners = LargestWelcome().Listeners.Take(HandoffProtocol.MaxListeners - 1).ToArray(), Features = HandoffFeatures.Probation },
        new HelloMessage(HandoffProtocol.Version, int.MaxValue, new string('a', MaxString), (HandoffFeatures)uint.MaxValue, long.MinValue));

    /// <summary>A message of every type, including ones at the string, listener and payload limits.</summary>
    public static readonly Gen<HandoffMessage> Message = Gen.Frequency(
        W(3, Hello),
        W(3, Welcome),
        W(2, Refused),
        W(2, Control),
        W(3, Probation),
        W(1, Gen.Const((HandoffMessage)new ReadyMessage())),
        W(1, Gen.Const((HandoffMessage)new CommittedMessage())),
        W(1, Gen.Const((HandoffMessage)new HeartbeatMessage())),
        W(1, Gen.Const((HandoffMessage)new ReleaseMessage())),
        W(1, Text(MaxString).Select(s => (HandoffMessage)new AbandonedMessage(s))),
        W(1, Text(MaxString).Select(s => (HandoffMessage)new FailedMessage(s))),
        W(1, Text(MaxString).Select(s => (HandoffMessage)new RevokedMessage(s))),
        W(1, Boundary));

    /// <summary>How the bytes reach the reader: all at once, a byte at a time, or in random small or large pieces.</summary>
    public static readonly Gen<int[]> Chunks = Gen.Frequency(
        W(4, Gen.Const(Array.Empty<int>())),
        W(1, Gen.Const(new[] { 1 })),
        W(3, Gen.Int[1, 8].Array[1, 8]),
        W(2, Gen.Int[1, 4096].Array[1, 4]));

    private static readonly Gen<FuzzCase> RandomBytes = Gen.Select(
        Gen.Frequency(W(5, Gen.Byte.Array[0, 16]), W(3, Gen.Byte.Array[0, 256]), W(1, Gen.Byte.Array[0, 8192])),
        Chunks,
        (bytes, chunks) => new FuzzCase(FuzzGenerator.RandomBytes, bytes, chunks, null, ""));

    private static readonly Gen<byte[]> FieldSoup = Gen.Frequency(
            W(2, Gen.Byte.Select(b => new[] { b })),
            W(1, Gen.OneOf(ByteValues).Select(b => new[] { b })),
            W(3, Gen.OneOf(U16Values).Select(U16)),
            W(1, Gen.UShort.Select(U16)),
            W(1, Gen.Int.Select(I32)),
            W(4, Text(64).Select(LengthPrefixed)),
            W(1, Gen.Select(Gen.OneOf(U16Values), Gen.Byte.Array[0, 32], (n, b) => Concat(U16(n), b))),
            W(2, Gen.Select(Text(8), Gen.OneOf(InvalidUtf8), Text(8), (a, bad, b) =>
                LengthPrefixed(Concat(Encoding.UTF8.GetBytes(a), bad, Encoding.UTF8.GetBytes(b))))))
        .Array[0, 12]
        .Select(fields => Concat(fields));

    private static readonly Gen<FuzzCase> RandomPayload = Gen.Select(
        Gen.Frequency(W(9, Gen.Byte[1, 23]), W(1, Gen.Byte)),
        Gen.Frequency(W(1, Gen.Byte.Array[0, 48]), W(2, FieldSoup)),
        Gen.Frequency(W(9, Gen.Const(-1L)), W(1, Gen.OneOf(LengthValues).Select(v => (long)v))),
        Chunks,
        (type, payload, length, chunks) =>
        {
            byte[] frame = Header(type, length < 0 ? (uint)payload.Length : (uint)length, payload);
            return new FuzzCase(FuzzGenerator.RandomPayload, frame, chunks, null, length < 0 ? "" : $"length={length}");
        });

    private static readonly Gen<(HandoffMessage[] Messages, byte[] Bytes, int[] Starts)> ValidStream =
        Message.Array[1, 4].Select(messages =>
        {
            var frames = messages.Select(HandoffProtocol.Encode).ToArray();
            var starts = new int[frames.Length];
            for (int i = 1; i < frames.Length; i++)
            {
                starts[i] = starts[i - 1] + frames[i - 1].Length;
            }

            return (messages, Concat(frames), starts);
        });

    private static readonly Gen<FuzzCase> ValidFrames = Gen.Select(ValidStream, Chunks,
        (stream, chunks) => new FuzzCase(FuzzGenerator.ValidFrames, stream.Bytes, chunks, stream.Messages, ""));

    private static readonly Gen<Mutation> MutationGen =
        Gen.Select(Gen.Int[0, Mutation.KindCount - 1], Gen.UInt, Gen.UInt, Gen.UInt, (kind, a, b, c) => new Mutation(kind, a, b, c));

    private static readonly Gen<FuzzCase> MutatedFrames = Gen.Select(ValidStream, MutationGen.Array[1, 4], Chunks,
        (stream, mutations, chunks) =>
        {
            var bytes = new List<byte>(stream.Bytes);
            foreach (var mutation in mutations)
            {
                mutation.Apply(bytes, stream.Starts);
            }

            return new FuzzCase(FuzzGenerator.MutatedFrames, [.. bytes], chunks, null, string.Join("; ", mutations));
        });

    /// <summary>Every kind of input, weighted towards the structured ones that get past the header.</summary>
    public static readonly Gen<FuzzCase> Case = Gen.Frequency(
        W(1, RandomBytes),
        W(3, RandomPayload),
        W(2, ValidFrames),
        W(5, MutatedFrames));

    /// <summary>Valid UTF-8 text of at most <paramref name="maxBytes"/> bytes: mostly short, sometimes filled to the limit.</summary>
    public static Gen<string> Text(int maxBytes) => Gen.Frequency(
            W(16, CodePoint.Array[0, Math.Min(24, maxBytes)]),
            W(2, CodePoint.Array[0, maxBytes]),
            W(1, Gen.Const(Enumerable.Repeat((int)'x', maxBytes).ToArray())))
        .Select(codePoints => Fit(codePoints, maxBytes));

    private static string Fit(int[] codePoints, int maxBytes)
    {
        var text = new StringBuilder(codePoints.Length);
        Span<char> chars = stackalloc char[2];
        int bytes = 0;
        foreach (int codePoint in codePoints)
        {
            int size = codePoint < 0x80 ? 1 : codePoint < 0x800 ? 2 : codePoint < 0x10000 ? 3 : 4;
            if (bytes + size > maxBytes)
            {
                break;
            }

            text.Append(chars[..new Rune(codePoint).EncodeToUtf16(chars)]);
            bytes += size;
        }

        return text.ToString();
    }

    /// <summary>True when a Welcome of <paramref name="listeners"/> leaves room for the 4 bytes of features.</summary>
    private static bool FitsFeatures(ListenerDescriptor[] listeners) =>
        24 + listeners.Sum(l => 4 + Encoding.UTF8.GetByteCount(l.Key) + Encoding.UTF8.GetByteCount(l.BoundEndPoint)) + 4 <= MaxPayload;

    /// <summary>A Welcome of 128 listeners whose payload is exactly <see cref="HandoffProtocol.MaxPayloadLength"/> bytes.</summary>
    private static WelcomeMessage LargestWelcome()
    {
        const int strings = 2 * HandoffProtocol.MaxListeners;
        int textBytes = MaxPayload - 24 - (2 * strings);
        var listeners = new ListenerDescriptor[HandoffProtocol.MaxListeners];
        for (int i = 0; i < listeners.Length; i++)
        {
            listeners[i] = new ListenerDescriptor(Filler(2 * i), Filler((2 * i) + 1));
        }

        return new WelcomeMessage(HandoffProtocol.Version, 1, listeners, long.MaxValue, long.MinValue);

        string Filler(int index) => new((char)('a' + (index % 26)), (textBytes / strings) + (index < textBytes % strings ? 1 : 0));
    }

    private static byte[] Header(byte type, uint length, byte[] payload)
    {
        byte[] frame = new byte[HandoffProtocol.HeaderLength + payload.Length];
        frame[0] = (byte)'Z';
        frame[1] = (byte)'D';
        frame[2] = type;
        BinaryPrimitives.WriteUInt32BigEndian(frame.AsSpan(3), length);
        payload.CopyTo(frame, HandoffProtocol.HeaderLength);
        return frame;
    }

    private static byte[] U16(ushort value)
    {
        byte[] bytes = new byte[2];
        BinaryPrimitives.WriteUInt16BigEndian(bytes, value);
        return bytes;
    }

    private static byte[] I32(int value)
    {
        byte[] bytes = new byte[4];
        BinaryPrimitives.WriteInt32BigEndian(bytes, value);
        return bytes;
    }

    private static byte[] LengthPrefixed(string text) => LengthPrefixed(Encoding.UTF8.GetBytes(text));

    private static byte[] LengthPrefixed(byte[] bytes) => Concat(U16((ushort)bytes.Length), bytes);

    private static byte[] Concat(params byte[][] parts)
    {
        byte[] all = new byte[parts.Sum(p => p.Length)];
        int offset = 0;
        foreach (byte[] part in parts)
        {
            part.CopyTo(all, offset);
            offset += part.Length;
        }

        return all;
    }

    private static (int, IGen<T>) W<T>(int weight, Gen<T> gen) => (weight, gen);

    /// <summary>
    /// One blind mutation of a frame stream. The random words pick position, count and value; the frame starts
    /// (of the unmutated stream) aim header rewrites at a header.
    /// </summary>
    internal readonly record struct Mutation(int Kind, uint A, uint B, uint C)
    {
        public const int KindCount = 11;

        private static readonly string[] Names =
            ["flip-bit", "set-byte", "insert", "delete", "truncate", "rewrite-length", "change-type", "set-u16", "duplicate", "append-header", "swap-frames"];

        public void Apply(List<byte> bytes, int[] starts)
        {
            int n = bytes.Count;
            int frame = starts[A % (uint)starts.Length];
            switch (Kind)
            {
                case 0 when n > 0:
                    bytes[(int)(A % (uint)n)] ^= (byte)(1 << (int)(B % 8));
                    break;
                case 1 when n > 0:
                    bytes[(int)(A % (uint)n)] = B % 2 == 0 ? ByteValues[C % (uint)ByteValues.Length] : (byte)C;
                    break;
                case 2:
                    bytes.InsertRange((int)(A % (uint)(n + 1)), RandomBytes(C, 1 + (int)(B % 8)));
                    break;
                case 3 when n > 0:
                    int at = (int)(A % (uint)n);
                    bytes.RemoveRange(at, Math.Min(n - at, 1 + (int)(B % 16)));
                    break;
                case 4 when n > 0:
                    bytes.RemoveRange((int)(A % (uint)n), n - (int)(A % (uint)n));
                    break;
                case 5 when frame + HandoffProtocol.HeaderLength <= n:
                    uint length = B % 3 == 0 ? C : B % 3 == 1 ? LengthValues[C % (uint)LengthValues.Length] : (uint)(Payload(bytes, frame) + (int)(C % 5) - 2);
                    WriteBigEndian(bytes, frame + 3, length);
                    break;
                case 6 when frame + 2 < n:
                    bytes[frame + 2] = (B % 4) switch { 0 => 0, 1 => (byte)(10 + (C % 246)), _ => (byte)(1 + (C % 23)) };
                    break;
                case 7 when n >= 2:
                    int position = (int)(A % (uint)(n - 1));
                    ushort value = U16Values[C % (uint)U16Values.Length];
                    bytes[position] = (byte)(value >> 8);
                    bytes[position + 1] = (byte)value;
                    break;
                case 8 when n > 0:
                    int from = (int)(A % (uint)n);
                    var range = bytes.GetRange(from, Math.Min(n - from, 1 + (int)(B % 64)));
                    bytes.InsertRange((int)(C % (uint)(n + 1)), range);
                    break;
                case 9:
                    bytes.AddRange(Header((byte)(B % 25), LengthValues[C % (uint)LengthValues.Length] % (MaxPayload + 2), RandomBytes(C, (int)(A % 16))));
                    break;
                case 10 when starts.Length > 1 && frame < n:
                    var first = bytes.GetRange(0, frame);
                    bytes.RemoveRange(0, frame);
                    bytes.AddRange(first);
                    break;
            }
        }

        public override string ToString() => $"{Names[Kind]}({A},{B},{C})";

        private static int Payload(List<byte> bytes, int frame) =>
            (bytes[frame + 3] << 24) | (bytes[frame + 4] << 16) | (bytes[frame + 5] << 8) | bytes[frame + 6];

        private static void WriteBigEndian(List<byte> bytes, int at, uint value)
        {
            for (int i = 0; i < 4; i++)
            {
                bytes[at + i] = (byte)(value >> (24 - (8 * i)));
            }
        }

        private static byte[] RandomBytes(uint seed, int count)
        {
            var pcg = new PCG(0, seed);
            byte[] bytes = new byte[count];
            for (int i = 0; i < count; i++)
            {
                bytes[i] = (byte)pcg.Next();
            }

            return bytes;
        }
    }
}
