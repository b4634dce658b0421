using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.SignalR;
using Microsoft.Extensions.Logging;

namespace ZeroDowntime.Hosting.Drain;

/// <summary>
/// Stands in for Kestrel's HTTP/1.1 upgrade of one request, so that the stream of every WebSocket that ASP.NET Core's
/// WebSocket middleware accepts goes through a <see cref="DrainingWebSocketStream"/>. (The WebSocket middleware sets its
/// own WebSocket feature later in the pipeline than this library's step, so the upgrade is the place to stand.)
/// SignalR's WebSockets are left alone: SignalR closes its connections itself, with a close message that lets its
/// clients reconnect.
/// </summary>
internal sealed class DrainUpgradeFeature(IHttpUpgradeFeature inner, HttpContext context, LongLivedConnections connections, ILogger logger) : IHttpUpgradeFeature
{
    public bool IsUpgradableRequest => inner.IsUpgradableRequest;

    public async Task<Stream> UpgradeAsync()
    {
        var stream = await inner.UpgradeAsync();
        connections.MarkUpgraded(context.Connection.Id);
        if (!IsWebSocket(context.Request) || context.GetEndpoint()?.Metadata.GetMetadata<HubMetadata>() is not null)
        {
            return stream;
        }

        var draining = new DrainingWebSocketStream(stream, context, connections, logger);
        connections.Add(draining);
        return draining;
    }

    private static bool IsWebSocket(HttpRequest request) =>
        string.Equals(request.Headers.Upgrade.ToString(), "websocket", StringComparison.OrdinalIgnoreCase);
}
