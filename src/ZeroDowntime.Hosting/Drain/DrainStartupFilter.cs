using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Microsoft.Net.Http.Headers;
using ZeroDowntime.Hosting.Handoff;
using ZeroDowntime.Hosting.Logging;

namespace ZeroDowntime.Hosting.Drain;

/// <summary>
/// Puts, first in the pipeline, the step that tells keep-alive clients to go while this process drains: each
/// HTTP/1.x response gets <c>Connection: close</c> (the client reconnects, to the successor) and an HTTP/2
/// connection is asked to close (GOAWAY; the client opens a new one). Unlike closing idle connections outright,
/// this never races a request that is already on the wire. With
/// <see cref="ZeroDowntimeOptions.CloseLongLivedConnections"/> the same step makes WebSockets (through the HTTP/1.1 upgrade) and server-sent
/// event streams known to the drain (<see cref="LongLivedConnections"/>).
/// </summary>
internal sealed class DrainStartupFilter(ZeroDowntimeLifetime lifetime, LongLivedConnections longLived, IOptions<ZeroDowntimeOptions> options, ILoggerFactory loggerFactory, Probation.ProbationWatch? probation = null) : IStartupFilter
{
    private readonly ILogger logger = loggerFactory.CreateLogger(LogCategories.Drain);

    public Action<IApplicationBuilder> Configure(Action<IApplicationBuilder> next) => !options.Value.Enabled ? next : app =>
    {
        bool closeLongLived = options.Value.CloseLongLivedConnections;
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

            if (!closeLongLived)
            {
                return nextMiddleware(context);
            }

            if (context.Features.Get<IHttpUpgradeFeature>() is { IsUpgradableRequest: true } upgrade)
            {
                context.Features.Set<IHttpUpgradeFeature>(new DrainUpgradeFeature(upgrade, context, longLived, logger));
            }
            else if (IsEventStreamRequest(context.Request))
            {
                return ServeEventStreamAsync(context, nextMiddleware);
            }

            return nextMiddleware(context);
        });

        // During probation every response counts towards the 5xx ratio (warm-up requests aside); outside it, this step
        // costs one volatile read.
        if (probation is { } watch)
        {
            app.Use((context, nextMiddleware) => watch.ErrorRatio is { } monitor ? RecordAsync(context, nextMiddleware, monitor) : nextMiddleware(context));
        }

        next(app);
    };

    /// <summary>Runs the rest of the pipeline and records its status: an exception that escaped before the response started counts as a 500.</summary>
    private static async Task RecordAsync(HttpContext context, RequestDelegate nextMiddleware, Probation.ErrorRatioMonitor monitor)
    {
        int status = 500;
        try
        {
            await nextMiddleware(context);
            status = context.Response.StatusCode;
        }
        catch when (context.Response.HasStarted)
        {
            status = context.Response.StatusCode;
            throw;
        }
        finally
        {
            monitor.Record(status, context.Features.Get<IZeroDowntimeWarmupFeature>() is not null);
        }
    }

    /// <summary>What an <c>EventSource</c> asks for (the WHATWG spec has it send <c>Accept: text/event-stream</c>).</summary>
    private static bool IsEventStreamRequest(HttpRequest request) =>
        HttpMethods.IsGet(request.Method) && request.Headers.Accept.ToString().Contains("text/event-stream", StringComparison.OrdinalIgnoreCase);

    /// <summary>
    /// Runs an event stream with a <see cref="HttpContext.RequestAborted"/> that the drain also cancels, so that the
    /// application's loop ends and the response ends cleanly (the last chunk, not a reset); the client reconnects with
    /// <c>Last-Event-ID</c>, to the successor: this connection is not kept alive after the response.
    /// </summary>
    private async Task ServeEventStreamAsync(HttpContext context, RequestDelegate nextMiddleware)
    {
        var aborted = context.RequestAborted;
        using var ended = CancellationTokenSource.CreateLinkedTokenSource(aborted);
        using var closeAfterwards = ended.Token.Register(static state =>
            ((HttpContext)state!).Features.Get<IConnectionLifetimeNotificationFeature>()?.RequestClose(), context);
        context.RequestAborted = ended.Token;
        longLived.Add(ended);
        try
        {
            await nextMiddleware(context);
        }
        catch (OperationCanceledException) when (ended.IsCancellationRequested && !aborted.IsCancellationRequested)
        {
            // Ended by the drain: the response is complete as it stands.
        }
        finally
        {
            longLived.Remove(ended);
            context.RequestAborted = aborted;
        }
    }

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
