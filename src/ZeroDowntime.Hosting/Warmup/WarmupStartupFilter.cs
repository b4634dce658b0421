using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.Options;
using ZeroDowntime.Hosting.Listeners;

namespace ZeroDowntime.Hosting.Warmup;

/// <summary>
/// First in the pipeline when a warm-up is configured: counts the warm-up requests that reach the app (see
/// <see cref="WarmupConnectionFeature"/>). After the warm-up it costs one read of a field per request.
/// </summary>
internal sealed class WarmupStartupFilter(IOptions<ZeroDowntimeOptions> options) : IStartupFilter
{
    private volatile bool _warmingUp = options.Value.Warmup is { Enabled: true, Requests.Count: > 0 };

    /// <summary>The warm-up is over: requests are no longer looked at.</summary>
    public void Finished() => _warmingUp = false;

    public Action<IApplicationBuilder> Configure(Action<IApplicationBuilder> next) => !options.Value.Enabled ? next : app =>
    {
        app.Use(next => context =>
        {
            if (_warmingUp && context.Features.Get<IZeroDowntimeWarmupFeature>() is WarmupConnectionFeature warmup)
            {
                warmup.OnReachedApp();
            }

            return next(context);
        });
        next(app);
    };
}
