using System.Net;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Text;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging.Abstractions;
using ZeroDowntime.Hosting.Drain;
using ZeroDowntime.Hosting.Warmup;

namespace ZeroDowntime.Hosting.Tests.Unit;

/// <summary>
/// The drain's close frame under a real WebSocket (the runtime's, as ASP.NET Core creates it over the upgraded stream),
/// over a real TCP connection: the peer sees 1001 between whole messages, the application's receive sees the peer's
/// answer and its own close succeeds, and a peer that never answers gets the request aborted.
/// </summary>
public sealed class DrainingWebSocketStreamTests
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(20);

    [Fact]
    public async Task CloseForDrain_BetweenMessages_PeerSees1001_AppSeesPeerCloseAndClosesWithoutError()
    {
        await using var pair = await WebSocketPair.CreateAsync(TimeSpan.FromSeconds(30));
        await pair.Server.SendAsync(Encoding.UTF8.GetBytes("before"), WebSocketMessageType.Text, true, CancellationToken.None);
        Assert.Equal("before", await ReceiveTextAsync(pair.Client));

        await pair.Stream.CloseForDrainAsync().WaitAsync(Limit);

        var close = await pair.Client.ReceiveAsync(new byte[64].AsMemory(), CancellationToken.None).AsTask().WaitAsync(Limit);
        Assert.Equal(WebSocketMessageType.Close, close.MessageType);
        Assert.Equal(WebSocketCloseStatus.EndpointUnavailable, pair.Client.CloseStatus);
        Assert.Equal("server going away", pair.Client.CloseStatusDescription);
        await pair.Client.CloseOutputAsync(WebSocketCloseStatus.EndpointUnavailable, "bye", CancellationToken.None);

        // The application's loop: it reads the peer's close and answers as usual; the second close frame is not sent.
        var received = await pair.Server.ReceiveAsync(new byte[64].AsMemory(), CancellationToken.None).AsTask().WaitAsync(Limit);
        Assert.Equal(WebSocketMessageType.Close, received.MessageType);
        await pair.Server.CloseAsync(WebSocketCloseStatus.EndpointUnavailable, "bye", CancellationToken.None).WaitAsync(Limit);
        Assert.Equal(WebSocketState.Closed, pair.Server.State);
        Assert.Equal(WebSocketState.Closed, pair.Client.State);
        Assert.False(pair.Aborted.IsCancellationRequested);
    }

    [Fact]
    public async Task CloseForDrain_WhileAMessageIsWrittenInFrames_PeerGetsWholeFramesThen1001()
    {
        await using var pair = await WebSocketPair.CreateAsync(TimeSpan.FromSeconds(30));
        var large = new byte[4 * 1024 * 1024];
        Random.Shared.NextBytes(large);

        // Several frames of one message (70000 bytes needs the 64-bit length), the drain's close requested among them.
        var sending = Task.Run(async () =>
        {
            for (int offset = 0; offset < large.Length; offset += 70_000)
            {
                int count = Math.Min(70_000, large.Length - offset);
                await pair.Server.SendAsync(large.AsMemory(offset, count), WebSocketMessageType.Binary, offset + count == large.Length, CancellationToken.None);
            }
        });
        var closing = pair.Stream.CloseForDrainAsync();

        using var message = new MemoryStream();
        var buffer = new byte[65536];
        while (true)
        {
            var received = await pair.Client.ReceiveAsync(buffer.AsMemory(), CancellationToken.None).AsTask().WaitAsync(Limit);
            if (received.MessageType == WebSocketMessageType.Close)
            {
                break;
            }

            message.Write(buffer, 0, received.Count);
        }

        await closing.WaitAsync(Limit);
        await sending.WaitAsync(Limit);

        // Whole frames only: what arrived before the close is a prefix of the message cut at a frame boundary.
        Assert.Equal(WebSocketCloseStatus.EndpointUnavailable, pair.Client.CloseStatus);
        Assert.True(message.Length % 70_000 == 0 || message.Length == large.Length, $"{message.Length} bytes arrived before the close");
        Assert.True(large.AsSpan(0, (int)message.Length).SequenceEqual(message.ToArray()));
    }

    [Fact]
    public async Task CloseForDrain_PeerNeverAnswers_RequestAbortedAtTheCloseTimeout()
    {
        await using var pair = await WebSocketPair.CreateAsync(TimeSpan.FromMilliseconds(300));
        await pair.Stream.CloseForDrainAsync().WaitAsync(Limit);

        await pair.AbortedTask.WaitAsync(Limit);
    }

    [Theory]
    [InlineData(new byte[] { 0x81, 0x05 }, 7L)]
    [InlineData(new byte[] { 0x82, 0x7E, 0x01, 0x00 }, 260L)]
    [InlineData(new byte[] { 0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0 }, 65546L)]
    [InlineData(new byte[] { 0x81, 0x85, 1, 2, 3, 4 }, 11L)]
    public void TryReadFrameLength_EachLengthForm_HeaderPlusPayload(byte[] header, long expected)
    {
        Assert.True(DrainingWebSocketStream.TryReadFrameLength(header, out long length));
        Assert.Equal(expected, length);
    }

    [Fact]
    public void TryReadFrameLength_HeaderCutShort_False()
    {
        Assert.False(DrainingWebSocketStream.TryReadFrameLength(new byte[] { 0x82 }, out _));
        Assert.False(DrainingWebSocketStream.TryReadFrameLength(new byte[] { 0x82, 0x7E, 0x01 }, out _));
        Assert.False(DrainingWebSocketStream.TryReadFrameLength(new byte[] { 0x82, 0x7F, 0, 0 }, out _));
    }

    private static async Task<string> ReceiveTextAsync(WebSocket socket)
    {
        var buffer = new byte[256];
        var received = await socket.ReceiveAsync(buffer.AsMemory(), CancellationToken.None).AsTask().WaitAsync(Limit);
        return Encoding.UTF8.GetString(buffer, 0, received.Count);
    }

    /// <summary>A server WebSocket over a <see cref="DrainingWebSocketStream"/> and a client WebSocket, over loopback TCP.</summary>
    private sealed class WebSocketPair : IAsyncDisposable, IHttpRequestLifetimeFeature
    {
        private readonly Socket _server;
        private readonly Socket _client;
        private readonly TaskCompletionSource _aborted = new(TaskCreationOptions.RunContinuationsAsynchronously);

        private WebSocketPair(Socket server, Socket client, TimeSpan closeTimeout)
        {
            _server = server;
            _client = client;
            var context = new DefaultHttpContext();
            context.Features.Set<IHttpRequestLifetimeFeature>(this);
            var owner = new LongLivedConnections(NullLogger.Instance) { WebSocketCloseTimeout = closeTimeout };
            Stream = new DrainingWebSocketStream(new NetworkStream(server, ownsSocket: true), context, owner, NullLogger.Instance);
            owner.Add(Stream);
            Server = WebSocket.CreateFromStream(Stream, new WebSocketCreationOptions { IsServer = true, KeepAliveInterval = Timeout.InfiniteTimeSpan });
            Client = WebSocket.CreateFromStream(new NetworkStream(client, ownsSocket: true), new WebSocketCreationOptions { IsServer = false, KeepAliveInterval = Timeout.InfiniteTimeSpan });
        }

        public DrainingWebSocketStream Stream { get; }

        public WebSocket Server { get; }

        public WebSocket Client { get; }

        public CancellationTokenSource Aborted { get; } = new();

        /// <summary>Completes when the stream aborts the request.</summary>
        public Task AbortedTask => _aborted.Task;

        public CancellationToken RequestAborted { get => Aborted.Token; set { } }

        public static async Task<WebSocketPair> CreateAsync(TimeSpan closeTimeout)
        {
            using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            listener.Listen(1);
            var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            await client.ConnectAsync(listener.LocalEndPoint!);
            var server = await listener.AcceptAsync();
            return new WebSocketPair(server, client, closeTimeout);
        }

        public void Abort()
        {
            Aborted.Cancel();
            _aborted.TrySetResult();
        }

        public ValueTask DisposeAsync()
        {
            Server.Dispose();
            Client.Dispose();
            Aborted.Dispose();
            return ValueTask.CompletedTask;
        }
    }
}
