using ZeroDowntime.Hosting.Protocol;
using ZeroDowntime.Hosting.Tests.Infrastructure;

namespace ZeroDowntime.Hosting.Tests.Unit;

/// <summary>
/// The framed channel over a real Unix socket pair: read deadlines and what a write refuses. The races are shown by a
/// controlled interleaving (an expired deadline with a frame already queued), not by a test that fails now and then.
/// </summary>
public sealed class HandoffChannelTests : IDisposable
{
    private readonly TestScope _scope = new();

    public void Dispose() => _scope.Dispose();

    // Item 5: a process frozen past its read deadline (SIGSTOP, cgroup freezer, swap) wakes up to two things at once:
    // the expired timer and the peer's queued heartbeats. Controlled interleaving: the read's continuations run on a
    // context the test pumps, so the deadline fires (the cancelled receive is queued to run) before the frame
    // arrives and before the reader looks. It must read what is queued before deciding that the peer is lost.
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ReadAsync_DeadlineFiredWhileFrozen_FrameQueuedBeforeWakeUp_ReturnsTheFrame(bool peerGoneAfterFrame)
    {
        var (mine, peer) = await UnixSocketPair.ConnectAsync(_scope.Directory);
        using var channel = new HandoffChannel(mine);
        using var context = new ManualSynchronizationContext();
        var read = context.Run(() => channel.ReadAsync(TimeSpan.FromMilliseconds(50), CancellationToken.None));

        await context.WaitForPostedAsync(TimeSpan.FromSeconds(10)); // the deadline fired: the reader is due to wake
        peer.Send(HandoffProtocol.Encode(new HeartbeatMessage()));
        if (peerGoneAfterFrame)
        {
            peer.Dispose();
        }

        context.PumpUntil(read, TimeSpan.FromSeconds(10));
        Assert.IsType<HeartbeatMessage>(await read);
        if (peerGoneAfterFrame)
        {
            var closed = await Assert.ThrowsAsync<HandoffChannelException>(() => channel.ReadAsync(TimeSpan.FromSeconds(5), CancellationToken.None));
            Assert.Equal(HandoffChannelError.Closed, closed.Error);
        }

        peer.Dispose();
    }

    // Item 5: with nothing queued, the expired deadline is what it says.
    [Fact]
    public async Task ReadAsync_DeadlinePassedWithNothingQueued_TimesOut()
    {
        var (mine, peer) = await UnixSocketPair.ConnectAsync(_scope.Directory);
        using var channel = new HandoffChannel(mine);
        using var _ = peer;
        var timedOut = await Assert.ThrowsAsync<HandoffChannelException>(() => channel.ReadAsync(TimeSpan.FromMilliseconds(20), CancellationToken.None));
        Assert.Equal(HandoffChannelError.TimedOut, timedOut.Error);
    }

    // Found while fuzzing the protocol (docs/fuzzing.md).
    [Theory]
    [InlineData(600, '\u00E9')] // 600 chars, 1,200 UTF-8 bytes: under ProcessExitHooks' 900-char cut, over the 1,024-byte limit
    [InlineData(450, (char)0xD83D)] // 450 high surrogates without their low halves: cut surrogate pairs
    public async Task TrySend_ReasonTheWriterRefuses_ReturnsFalseInsteadOfThrowing(int length, char c)
    {
        var (client, server) = await UnixSocketPair.ConnectAsync(_scope.Directory);
        using var _ = server;
        using var channel = new HandoffChannel(client);

        // Was a HandoffProtocolException (or EncoderFallbackException) out of TrySend, e.g. from the unhandled-exception
        // hook before it could set the exit code, or from Refuse with a long application id from the successor.
        Assert.False(channel.TrySend(new FailedMessage(new string(c, length))));
        Assert.True(channel.TrySend(new FailedMessage("short")));
    }
}
