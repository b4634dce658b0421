using System.Globalization;
using System.Net.WebSockets;
using System.Text;
using Microsoft.AspNetCore.SignalR;

namespace ZeroDowntime.Sample;

/// <summary>
/// The sample's long-lived endpoints (README, "The sample's contract"): <c>/ws</c> echoes each text message of a
/// WebSocket, <c>/sse</c> sends one server-sent event a second with increasing ids (resuming after
/// <c>Last-Event-ID</c>), and <c>/hub</c> is a SignalR hub with <c>Echo(string)</c>. None of them knows about handoffs:
/// the library's drain closes them (1001, end of stream, a SignalR close that allows a reconnect).
/// </summary>
internal static class LongLivedEndpoints
{
    public static void Map(WebApplication app)
    {
        app.UseWebSockets();
        app.Map("/ws", EchoWebSocketAsync);
        app.MapGet("/sse", EventStreamAsync);
        app.MapHub<EchoHub>("/hub");
    }

    /// <summary><c>/ws</c>: a WebSocket that answers each text message with the same text, until either side closes.</summary>
    private static async Task EchoWebSocketAsync(HttpContext context)
    {
        if (!context.WebSockets.IsWebSocketRequest)
        {
            context.Response.StatusCode = StatusCodes.Status400BadRequest;
            await context.Response.WriteAsync("a WebSocket request is expected\n");
            return;
        }

        using var webSocket = await context.WebSockets.AcceptWebSocketAsync();
        var buffer = new byte[4096];
        var message = new MemoryStream();
        while (true)
        {
            ValueWebSocketReceiveResult received;
            try
            {
                received = await webSocket.ReceiveAsync(buffer.AsMemory(), context.RequestAborted);
            }
            catch (Exception ex) when (ex is WebSocketException or OperationCanceledException)
            {
                return; // the client went away without a close handshake
            }

            if (received.MessageType == WebSocketMessageType.Close)
            {
                await webSocket.CloseAsync(webSocket.CloseStatus ?? WebSocketCloseStatus.NormalClosure, webSocket.CloseStatusDescription, CancellationToken.None);
                return;
            }

            message.Write(buffer, 0, received.Count);
            if (received.EndOfMessage)
            {
                await webSocket.SendAsync(message.GetBuffer().AsMemory(0, (int)message.Length), received.MessageType, endOfMessage: true, context.RequestAborted);
                message.SetLength(0);
            }
        }
    }

    /// <summary>
    /// <c>/sse</c>: <c>text/event-stream</c>, one event a second (<c>?ms=</c> from 10 to 60000 changes the interval), each
    /// <c>id: N</c> and <c>data: pid P</c>; ids start after <c>Last-Event-ID</c> (or at 1), so a client that reconnects
    /// with it sees no gap.
    /// </summary>
    private static async Task EventStreamAsync(HttpContext context)
    {
        long last = long.TryParse(context.Request.Headers["Last-Event-ID"].ToString(), NumberStyles.None, CultureInfo.InvariantCulture, out long id) ? id : 0;
        int interval = int.TryParse(context.Request.Query["ms"].ToString(), NumberStyles.None, CultureInfo.InvariantCulture, out int ms) && ms is >= 10 and <= 60_000 ? ms : 1000;
        context.Response.ContentType = "text/event-stream";
        context.Response.Headers.CacheControl = "no-cache";
        var aborted = context.RequestAborted;
        string pid = Environment.ProcessId.ToString(CultureInfo.InvariantCulture);
        try
        {
            while (!aborted.IsCancellationRequested)
            {
                last++;
                await context.Response.WriteAsync($"id: {last}\ndata: pid {pid}\n\n", Encoding.UTF8, aborted);
                await context.Response.Body.FlushAsync(aborted);
                await Task.Delay(interval, aborted);
            }
        }
        catch (OperationCanceledException) when (aborted.IsCancellationRequested)
        {
            // The client left, or the drain ended the stream: the response ends here.
        }
    }
}

/// <summary><c>/hub</c>: the SignalR hub of the sample.</summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Performance", "CA1822:Mark members as static", Justification = "SignalR invokes instance methods only.")]
internal sealed class EchoHub : Hub
{
    /// <summary>Answers with the same message.</summary>
    public string Echo(string message) => message;

    /// <summary>The pid of the process that serves this connection (tests check that clients land on the newest one).</summary>
    public int Pid() => Environment.ProcessId;
}
