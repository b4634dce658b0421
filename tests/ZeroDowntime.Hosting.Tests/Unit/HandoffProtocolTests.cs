using System.Buffers.Binary;
using ZeroDowntime.Hosting.Protocol;

namespace ZeroDowntime.Hosting.Tests.Unit;

public sealed class HandoffProtocolTests
{
    private static readonly HandoffMessage[] All =
    [
        new HelloMessage(1, 1234, "WebApi"),
        new WelcomeMessage(1, 99, [new ListenerDescriptor("tcp:127.0.0.1:0", "127.0.0.1:41234"), new ListenerDescriptor("unix:/run/x.sock", "unix:/run/x.sock")]),
        new WelcomeMessage(1, 99, []),
        new RefusedMessage(RefusalReason.Busy, 1, "another handoff is in progress"),
        new ReadyMessage(),
        new CommittedMessage(),
        new AbandonedMessage("not ready within 00:01:00"),
        new FailedMessage("InvalidOperationException: boom"),
        new HeartbeatMessage(),
        new RevokedMessage("no heartbeat for 5 s"),
        new ReleaseMessage(),
        new HelloMessage(2, 1234, "WebApi", HandoffFeatures.Probation, 300_000),
        new HelloMessage(2, 1234, "WebApi", HandoffFeatures.None, 0),
        new WelcomeMessage(2, 99, [new ListenerDescriptor("tcp:127.0.0.1:0", "127.0.0.1:41234")], 3, 1_765_000_000_000),
        new WelcomeMessage(2, 99, [new ListenerDescriptor("tcp:127.0.0.1:0", "127.0.0.1:41234")], 3, 1_765_000_000_000, HandoffFeatures.Probation),
        new WelcomeMessage(2, 99, [], 1, 0, HandoffFeatures.None),
        new RollbackRequestMessage(RollbackOrigin.ErrorRatio, "5xx ratio 0.250 (25 of 100 responses in the last 00:00:30) is above MaxErrorRatio 0.05"),
        new RollbackRequestMessage(RollbackOrigin.Tool, ""),
        new RollbackAcceptedMessage(),
        new HandedBackMessage(true),
        new HandedBackMessage(false),
        new ProbationEndedMessage("the probation window of 00:05:00 ended"),
        new ProbationStatusMessage(ProbationState.None, 0, 0, ""),
        new ProbationStatusMessage(ProbationState.OnProbation, 3044, 1_765_000_300_000, ""),
        new ProbationStatusMessage(ProbationState.RolledBack, 3077, 1_765_000_100_000, "health check 'db' has been Unhealthy for 00:00:10"),
        new RollbackCommandMessage(2, "zerodowntime rollback"),
        new RollbackResultMessage(RollbackOutcome.RolledBack, 3044, "zerodowntime rollback", 14),
        new RollbackResultMessage(RollbackOutcome.Failed, 3077, "pid 3044 did not answer within 5 s", -1),
        new ProbationUpdateMessage(ProbationProgress.Started, 1_765_000_300_000, RollbackOrigin.None, ""),
        new ProbationUpdateMessage(ProbationProgress.RolledBack, 1_765_000_300_000, RollbackOrigin.HealthCheck, "health check 'db'"),
    ];

    /// <summary>Frames 16-23 (issue 20) with their enums' every value.</summary>
    public static TheoryData<int> ProbationFrames => new(Enumerable.Range(0, ProbationMessages().Length));

    public static TheoryData<int> Messages => new(Enumerable.Range(0, All.Length));

    [Theory]
    [MemberData(nameof(Messages))]
    public void EncodeDecode_EveryMessage_RoundTrips(int index)
    {
        var message = All[index];
        byte[] frame = HandoffProtocol.Encode(message);

        Assert.True(HandoffProtocol.TryReadFrame(frame, out var type, out var payload, out int consumed));
        Assert.Equal(frame.Length, consumed);
        var decoded = HandoffProtocol.Decode(type, payload);
        Assert.Equal(message.Type, decoded.Type);
        if (message is WelcomeMessage welcome)
        {
            var back = Assert.IsType<WelcomeMessage>(decoded);
            Assert.Equal(welcome.ProcessId, back.ProcessId);
            Assert.Equal(welcome.Listeners, back.Listeners);
            Assert.Equal(welcome with { Listeners = [] }, back with { Listeners = [] });
        }
        else
        {
            Assert.Equal(message, decoded);
        }
    }

    [Theory]
    [MemberData(nameof(Messages))]
    public void TryReadFrame_EveryTruncation_AsksForMoreBytes(int index)
    {
        var message = All[index];
        byte[] frame = HandoffProtocol.Encode(message);
        for (int length = 0; length < frame.Length; length++)
        {
            Assert.False(HandoffProtocol.TryReadFrame(frame.AsSpan(0, length), out _, out _, out _));
        }
    }

    [Theory]
    [MemberData(nameof(ProbationFrames))]
    public void EncodeDecode_ProbationFrame_RoundTripsWithItsTypeNumber(int index)
    {
        var message = ProbationMessages()[index];

        byte[] frame = HandoffProtocol.Encode(message);

        Assert.InRange(frame[2], 16, 23);
        Assert.Equal((byte)message.Type, frame[2]);
        Assert.Equal(message, RoundTrip(message));
    }

    [Fact]
    public void Encode_ProbationFrames_HaveTheDesignsLayouts()
    {
        // docs/probation-design.md 2.3, byte for byte: what an integrator of another language would read.
        Assert.Equal([3, 0, 1, (byte)'r'], Payload(new RollbackRequestMessage(RollbackOrigin.ErrorRatio, "r")));
        Assert.Equal([], Payload(new RollbackAcceptedMessage()));
        Assert.Equal([0], Payload(new HandedBackMessage(false)));
        Assert.Equal([0, 1, (byte)'w'], Payload(new ProbationEndedMessage("w")));
        Assert.Equal([1, 0, 0, 0x0B, 0xE4, 0, 0, 0, 0, 0, 0, 0x01, 0x02, 0, 0], Payload(new ProbationStatusMessage(ProbationState.OnProbation, 3044, 0x0102, "")));
        Assert.Equal([0, 2, 0, 1, (byte)'n'], Payload(new RollbackCommandMessage(2, "n")));
        Assert.Equal([2, 0, 0, 0x0B, 0xE4, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF], Payload(new RollbackResultMessage(RollbackOutcome.Refused, 3044, "", -1)));
        Assert.Equal([4, 0, 0, 0, 0, 0, 0, 0, 9, 1, 0, 0], Payload(new ProbationUpdateMessage(ProbationProgress.EndedEarly, 9, RollbackOrigin.Tool, "")));
    }

    [Theory]
    [InlineData((byte)MessageType.RollbackRequest, new byte[] { 5, 0, 0 })]
    [InlineData((byte)MessageType.RollbackRequest, new byte[] { 0xFF, 0, 0 })]
    [InlineData((byte)MessageType.HandedBack, new byte[] { 2 })]
    [InlineData((byte)MessageType.ProbationStatus, new byte[] { 4, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 })]
    [InlineData((byte)MessageType.RollbackResult, new byte[] { 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 })]
    [InlineData((byte)MessageType.RollbackResult, new byte[] { 4, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 })]
    [InlineData((byte)MessageType.ProbationUpdate, new byte[] { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 })]
    [InlineData((byte)MessageType.ProbationUpdate, new byte[] { 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 })]
    [InlineData((byte)MessageType.ProbationUpdate, new byte[] { 1, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0 })]
    public void Decode_ProbationFrameWithAnUnknownEnumValue_IsRefused(byte type, byte[] payload)
    {
        Assert.Throws<HandoffProtocolException>(() => HandoffProtocol.Decode((MessageType)type, payload));
    }

    [Theory]
    [MemberData(nameof(ProbationFrames))]
    public void Decode_ProbationFrameWithATrailingByteOrOneByteShort_IsRefused(int index)
    {
        byte[] payload = Payload(ProbationMessages()[index]);
        var type = ProbationMessages()[index].Type;

        Assert.Throws<HandoffProtocolException>(() => HandoffProtocol.Decode(type, [.. payload, 0]));
        if (payload.Length > 0)
        {
            Assert.Throws<HandoffProtocolException>(() => HandoffProtocol.Decode(type, payload.AsSpan(0, payload.Length - 1)));
        }
    }

    [Fact]
    public void Welcome_WithoutFeaturesInTheHello_IsTheV2Layout()
    {
        // A Welcome answering a Hello without features carries none: exactly the bytes an earlier successor decodes.
        var plain = new WelcomeMessage(2, 99, [new ListenerDescriptor("tcp:127.0.0.1:0", "127.0.0.1:1")], 3, 1_765_000_000_000);
        var withFeatures = plain with { Features = HandoffFeatures.Probation };

        byte[] v2 = Payload(plain);
        byte[] extended = Payload(withFeatures);

        Assert.Equal(v2.Length + 4, extended.Length);
        Assert.Equal(v2, extended.AsSpan(0, v2.Length).ToArray());
        Assert.Equal([0, 0, 0, 1], extended.AsSpan(v2.Length).ToArray());
        Assert.Null(Assert.IsType<WelcomeMessage>(HandoffProtocol.Decode(MessageType.Welcome, v2)).Features);
        Assert.Equal(HandoffFeatures.Probation, Assert.IsType<WelcomeMessage>(HandoffProtocol.Decode(MessageType.Welcome, extended)).Features);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(5)]
    public void Decode_WelcomeWithStrayBytesAfterTheV2Fields_IsRefused(int stray)
    {
        byte[] v2 = Payload(new WelcomeMessage(2, 99, [], 3, 1_765_000_000_000));
        byte[] payload = [.. v2, .. new byte[stray]];

        var ex = Assert.Throws<HandoffProtocolException>(() => HandoffProtocol.Decode(MessageType.Welcome, payload));

        Assert.Contains("unexpected trailing bytes", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Encode_V1Welcome_NeverCarriesTheV2FieldsNorFeatures()
    {
        var v1 = new WelcomeMessage(1, 99, [], 3, 4, HandoffFeatures.Probation);

        byte[] payload = Payload(v1);

        Assert.Equal([0, 1, 0, 0, 0, 99, 0, 0], payload);
        Assert.Equal(new WelcomeMessage(1, 99, []) with { Listeners = [] }, Assert.IsType<WelcomeMessage>(HandoffProtocol.Decode(MessageType.Welcome, payload)) with { Listeners = [] });
    }

    [Fact]
    public void Decode_HelloWithFeaturesAndMoreTrailingBytes_ReadsTheFeaturesAndIgnoresTheRest()
    {
        // The next extension appends after probationMs; this build still reads what it knows.
        byte[] hello = Payload(new HelloMessage(2, 1234, "WebApi", HandoffFeatures.Probation, 300_000));
        byte[] longer = [.. hello, 0xDE, 0xAD, 0xBE, 0xEF, 1, 2, 3];

        var decoded = Assert.IsType<HelloMessage>(HandoffProtocol.Decode(MessageType.Hello, longer));

        Assert.Equal(new HelloMessage(2, 1234, "WebApi", HandoffFeatures.Probation, 300_000), decoded);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(4)]
    [InlineData(11)]
    public void Decode_V2HelloWithFewerThan12TrailingBytes_HasNoFeatures(int trailing)
    {
        byte[] hello = Payload(new HelloMessage(2, 1234, "WebApi"));

        var decoded = Assert.IsType<HelloMessage>(HandoffProtocol.Decode(MessageType.Hello, [.. hello, .. new byte[trailing]]));

        Assert.Equal(new HelloMessage(2, 1234, "WebApi"), decoded);
    }

    [Fact]
    public void Encode_V1Hello_NeverCarriesTheExtension()
    {
        // A v1 Hello goes to a v1 predecessor, whose layout is frozen: the extension exists from v2 on.
        byte[] v1 = Payload(new HelloMessage(1, 1234, "WebApi", HandoffFeatures.Probation, 300_000));

        Assert.Equal(Payload(new HelloMessage(1, 1234, "WebApi")), v1);

        // And bytes after a v1 Hello's fields, however many, are never read as features.
        byte[] extended = Payload(new HelloMessage(2, 1234, "WebApi", HandoffFeatures.Probation, 300_000));
        extended[1] = 1;
        Assert.Equal(new HelloMessage(1, 1234, "WebApi"), HandoffProtocol.Decode(MessageType.Hello, extended));
    }

    [Fact]
    public void Decode_HelloWithFeatures_IsReadByAnEarlierDecoderAsThePlainHello()
    {
        // What the three archived builds do (design 2.1): read version, pid and id, and ignore the rest of a Hello.
        byte[] extended = Payload(new HelloMessage(2, 1234, "WebApi", HandoffFeatures.Probation, 300_000));
        byte[] plain = Payload(new HelloMessage(2, 1234, "WebApi"));

        Assert.Equal(plain, extended.AsSpan(0, plain.Length).ToArray());
        Assert.Equal(12, extended.Length - plain.Length);
    }

    [Fact]
    public void TryReadFrame_TwoFramesInOneBuffer_ReadsTheFirstOnly()
    {
        byte[] both = [.. HandoffProtocol.Encode(new ReadyMessage()), .. HandoffProtocol.Encode(new HeartbeatMessage())];
        Assert.True(HandoffProtocol.TryReadFrame(both, out var type, out _, out int consumed));
        Assert.Equal(MessageType.Ready, type);
        Assert.Equal(HandoffProtocol.HeaderLength, consumed);
    }

    [Theory]
    [InlineData(new byte[] { (byte)'X' })]
    [InlineData(new byte[] { (byte)'Z', (byte)'X' })]
    [InlineData(new byte[] { (byte)'G', (byte)'E', (byte)'T', (byte)' ', (byte)'/' })]
    public void TryReadFrame_BadMagic_IsRefusedAtTheFirstWrongByte(byte[] bytes)
    {
        var ex = Assert.Throws<HandoffProtocolException>(() => HandoffProtocol.TryReadFrame(bytes, out _, out _, out _));
        Assert.Contains("magic", ex.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(HandoffProtocol.MaxPayloadLength + 1u)]
    [InlineData(uint.MaxValue)]
    public void TryReadFrame_AbsurdLength_IsRefusedBeforeTheBytesArrive(uint length)
    {
        byte[] header = [(byte)'Z', (byte)'D', (byte)MessageType.Hello, 0, 0, 0, 0];
        BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(3), length);
        var ex = Assert.Throws<HandoffProtocolException>(() => HandoffProtocol.TryReadFrame(header, out _, out _, out _));
        Assert.Contains("exceeds the limit", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Decode_UnknownType_IsRefused()
    {
        var ex = Assert.Throws<HandoffProtocolException>(() => HandoffProtocol.Decode((MessageType)200, []));
        Assert.Contains("Unknown frame type 200", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Decode_TrailingBytes_AreRefusedExceptInHello()
    {
        Assert.Throws<HandoffProtocolException>(() => HandoffProtocol.Decode(MessageType.Ready, [0]));

        // A newer successor may append fields to Hello; an older predecessor still reads the version.
        byte[] hello = HandoffProtocol.Encode(new HelloMessage(7, 1, "a"));
        byte[] longer = [.. hello.AsSpan(HandoffProtocol.HeaderLength), 1, 2, 3];
        var decoded = Assert.IsType<HelloMessage>(HandoffProtocol.Decode(MessageType.Hello, longer));
        Assert.Equal(7, decoded.Version);
    }

    [Fact]
    public void Decode_StringLongerThanPayload_IsTruncationNotCrash()
    {
        byte[] payload = [0, 1, 0, 0, 0, 1, 0xFF, 0xFF, (byte)'a'];
        var ex = Assert.Throws<HandoffProtocolException>(() => HandoffProtocol.Decode(MessageType.Hello, payload));
        Assert.Contains("limit", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Decode_InvalidUtf8_IsRefused()
    {
        byte[] payload = [0, 1, 0, 0, 0, 1, 0, 2, 0xC3, 0x28];
        var ex = Assert.Throws<HandoffProtocolException>(() => HandoffProtocol.Decode(MessageType.Hello, payload));
        Assert.Contains("UTF-8", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Decode_WelcomeWithTooManyListeners_IsRefused()
    {
        byte[] payload = [0, 1, 0, 0, 0, 1, 0xFF, 0xFF];
        var ex = Assert.Throws<HandoffProtocolException>(() => HandoffProtocol.Decode(MessageType.Welcome, payload));
        Assert.Contains("listeners", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Decode_UnknownRefusalReason_IsRefused()
    {
        byte[] payload = [99, 0, 1, 0, 0];
        Assert.Throws<HandoffProtocolException>(() => HandoffProtocol.Decode(MessageType.Refused, payload));
    }

    [Fact]
    public void Encode_StringOverTheLimit_IsRefused()
    {
        Assert.Throws<HandoffProtocolException>(() => HandoffProtocol.Encode(new FailedMessage(new string('x', HandoffProtocol.MaxStringBytes + 1))));
    }

    [Theory]
    [InlineData(2000, 'x')]
    [InlineData(600, '\u00e9')]
    [InlineData(400, '\u20ac')]
    public void FitText_LongText_IsCutToTheLimitOnACharacterBoundary(int count, char c)
    {
        string fitted = HandoffProtocol.FitText(new string(c, count));
        Assert.True(System.Text.Encoding.UTF8.GetByteCount(fitted) <= HandoffProtocol.MaxStringBytes);
        Assert.EndsWith("...", fitted, StringComparison.Ordinal);
        var decoded = Assert.IsType<FailedMessage>(RoundTrip(new FailedMessage(fitted)));
        Assert.Equal(fitted, decoded.Reason);
    }

    [Fact]
    public void FitText_LoneSurrogateAndSplitEmoji_AreEncodable()
    {
        string emoji = "\U0001F600";
        string text = new string('a', HandoffProtocol.MaxStringBytes - 5) + emoji + emoji + "\ud800";
        string fitted = HandoffProtocol.FitText(text);
        Assert.True(System.Text.Encoding.UTF8.GetByteCount(fitted) <= HandoffProtocol.MaxStringBytes);
        Assert.IsType<FailedMessage>(RoundTrip(new FailedMessage(fitted)));
        Assert.Equal("ok\uFFFD", HandoffProtocol.FitText("ok\udc00"));
        Assert.Equal("short", HandoffProtocol.FitText("short"));
    }

    private static HandoffMessage[] ProbationMessages() =>
    [
        .. Enum.GetValues<RollbackOrigin>().Select(origin => new RollbackRequestMessage(origin, "why " + origin)),
        new RollbackAcceptedMessage(),
        new HandedBackMessage(true),
        new HandedBackMessage(false),
        new ProbationEndedMessage("pid 3044 is stopping"),
        .. Enum.GetValues<ProbationState>().Select(state => new ProbationStatusMessage(state, int.MaxValue, long.MaxValue, "\u00e9t\u00e9 " + state)),
        new RollbackCommandMessage(ushort.MaxValue, new string('n', HandoffProtocol.MaxStringBytes)),
        .. Enum.GetValues<RollbackOutcome>().Select(outcome => new RollbackResultMessage(outcome, -1, "r", long.MinValue)),
        .. Enum.GetValues<ProbationProgress>().SelectMany(progress => Enum.GetValues<RollbackOrigin>()
            .Select(origin => (HandoffMessage)new ProbationUpdateMessage(progress, 1_765_000_300_000, origin, progress + " " + origin))),
    ];

    private static byte[] Payload(HandoffMessage message) => HandoffProtocol.Encode(message)[HandoffProtocol.HeaderLength..];

    private static HandoffMessage RoundTrip(HandoffMessage message)
    {
        byte[] frame = HandoffProtocol.Encode(message);
        Assert.True(HandoffProtocol.TryReadFrame(frame, out var type, out var payload, out _));
        return HandoffProtocol.Decode(type, payload);
    }

    // Found while fuzzing the protocol (docs/fuzzing.md).
    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    public void Encode_LoneSurrogate_IsRefusedAsProtocolError(int variant)
    {
        // Built in code: attribute arguments cannot carry a lone surrogate (the compiler stores them as UTF-8).
        string reason = variant == 0 ? "\uD800" : "start-up failed: " + "\U0001F600"[..1];

        // Was EncoderFallbackException: a reason cut in the middle of a surrogate pair could not be encoded.
        var ex = Assert.Throws<HandoffProtocolException>(() => HandoffProtocol.Encode(new FailedMessage(reason)));
        Assert.Contains("UTF-16", ex.Message, StringComparison.Ordinal);
    }
}
