using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Net.Http.Headers;

namespace ZeroDowntime.Hosting.Lifecycle;

/// <summary>
/// Puts, first in the pipeline, the step that tells keep-alive clients to go while this process drains: each
/// HTTP/1.x response gets <c>Connection: close</c> (the client reconnects, to the successor) and an HTTP/2
/// connection is asked to close (GOAWAY; the client opens a new one). Unlike closing idle connections outright,
/// this never races a request that is already on the wire.
/// </summary>
internal sealed class DrainStartupFilter(ZeroDowntimeLifetime lifetime) : IStartupFilter
{
    public Action<IApplicationBuilder> Configure(Action<IApplicationBuilder> next) => app =>
    {
        app.Use((context, nextMiddleware) =>
        {
            if (lifetime.IsDraining)
            {
                SayGoodbye(context);
            }
            else
            {
                // The drain may begin while this request runs; decide when the response starts.
                context.Response.OnStarting(static state =>
                {
                    var (lifetime, context) = ((ZeroDowntimeLifetime, HttpContext))state;
                    if (lifetime.IsDraining)
                    {
                        SayGoodbye(context);
                    }

                    return Task.CompletedTask;
                }, (lifetime, context));
            }

            return nextMiddleware(context);
        });
        next(app);
    };

    private static void SayGoodbye(HttpContext context)
    {
        if (HttpProtocol.IsHttp2(context.Request.Protocol) || HttpProtocol.IsHttp3(context.Request.Protocol))
        {
            context.Features.Get<IConnectionLifetimeNotificationFeature>()?.RequestClose();
        }
        else if (!context.Response.HasStarted)
        {
            context.Response.Headers[HeaderNames.Connection] = "close";
        }
    }
}
