using System.Net.Sockets;
using ZeroDowntime.Hosting.Protocol;
using ZeroDowntime.Hosting.Tests.Infrastructure;

namespace ZeroDowntime.Hosting.Tests.Unit;

/// <summary>Regressions found while fuzzing the protocol (docs/fuzzing.md).</summary>
public sealed class ProtocolRegressionTests : IDisposable
{
    private readonly TestScope _scope = new();

    public void Dispose() => _scope.Dispose();

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

    [Theory]
    [InlineData(600, '\u00E9')] // 600 chars, 1,200 UTF-8 bytes: under ProcessExitHooks' 900-char cut, over the 1,024-byte limit
    [InlineData(450, (char)0xD83D)] // 450 high surrogates without their low halves: cut surrogate pairs
    public async Task TrySend_ReasonTheWriterRefuses_ReturnsFalseInsteadOfThrowing(int length, char c)
    {
        string path = Path.Combine(_scope.Directory, "pair.sock");
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(path));
        listener.Listen(1);
        using var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await client.ConnectAsync(new UnixDomainSocketEndPoint(path)).WaitAsync(TimeSpan.FromSeconds(5));
        using var server = await listener.AcceptAsync().WaitAsync(TimeSpan.FromSeconds(5));
        using var channel = new HandoffChannel(client);

        // Was a HandoffProtocolException (or EncoderFallbackException) out of TrySend, e.g. from the unhandled-exception
        // hook before it could set the exit code, or from Refuse with a long application id from the successor.
        Assert.False(channel.TrySend(new FailedMessage(new string(c, length))));
        Assert.True(channel.TrySend(new FailedMessage("short")));
    }
}
