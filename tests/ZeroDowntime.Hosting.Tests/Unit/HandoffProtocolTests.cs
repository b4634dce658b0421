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
    ];

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
