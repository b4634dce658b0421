using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.SignalR;

namespace ZeroDowntime.Hosting.Drain;

/// <summary>
/// Makes every SignalR connection known to the drain, which closes it the way SignalR closes a connection it was asked
/// to close: <see cref="IConnectionLifetimeNotificationFeature.RequestClose"/> on the connection, to which the hub
/// answers with a close message that allows a reconnect, so clients with automatic reconnect move to the successor.
/// Registered as a hub filter for every hub; it does nothing in apps without SignalR.
/// </summary>
internal sealed class SignalRDrainFilter(LongLivedConnections connections) : IHubFilter
{
    public async Task OnConnectedAsync(HubLifetimeContext context, Func<HubLifetimeContext, Task> next)
    {
        await next(context);
        if (context.Context.Features.Get<IConnectionLifetimeNotificationFeature>() is { } lifetime)
        {
            connections.AddSignalR(context.Context.ConnectionId, lifetime);
            if (connections.IsClosingSignalR)
            {
                lifetime.RequestClose();
            }
        }
    }

    public async Task OnDisconnectedAsync(HubLifetimeContext context, Exception? exception, Func<HubLifetimeContext, Exception?, Task> next)
    {
        connections.RemoveSignalR(context.Context.ConnectionId);
        await next(context, exception);
    }
}
