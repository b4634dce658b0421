using System.Net;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using ZeroDowntime.Hosting.Logging;

namespace ZeroDowntime.Hosting.Listeners;

/// <summary>
/// Wraps Kestrel's QUIC transport (registered only where msquic is available) so that every HTTP/3 endpoint says
/// at start that it is not handed over: a QUIC listener is a UDP socket owned by msquic, whose connection state
/// lives in the process and cannot be passed on. It binds as before; each version binds its own.
/// </summary>
internal sealed class Http3HandoffNotice(IMultiplexedConnectionListenerFactory inner, ILogger logger, IOptions<ZeroDowntimeOptions>? options = null)
    : IMultiplexedConnectionListenerFactory, IConnectionListenerFactorySelector
{
    public bool CanBind(EndPoint endpoint) => inner is not IConnectionListenerFactorySelector selector || selector.CanBind(endpoint);

    public ValueTask<IMultiplexedConnectionListener> BindAsync(EndPoint endpoint, IFeatureCollection? features = null, CancellationToken cancellationToken = default)
    {
        if (options?.Value.Enabled ?? true)
        {
            logger.Http3NotHandedOver(ListenerKey.Describe(endpoint));
        }

        return inner.BindAsync(endpoint, features, cancellationToken);
    }

    /// <summary>Replaces every registered multiplexed transport with a wrapped one.</summary>
    public static void Decorate(IServiceCollection services)
    {
        for (int i = 0; i < services.Count; i++)
        {
            var descriptor = services[i];
            if (descriptor.ServiceType != typeof(IMultiplexedConnectionListenerFactory) || descriptor.IsKeyedService)
            {
                continue;
            }

            services[i] = ServiceDescriptor.Describe(
                typeof(IMultiplexedConnectionListenerFactory),
                sp => new Http3HandoffNotice(CreateInner(sp, descriptor), sp.GetRequiredService<ILoggerFactory>().CreateLogger(LogCategories.Listeners),
                    sp.GetRequiredService<IOptions<ZeroDowntimeOptions>>()),
                descriptor.Lifetime);
        }
    }

    private static IMultiplexedConnectionListenerFactory CreateInner(IServiceProvider services, ServiceDescriptor descriptor) =>
        (IMultiplexedConnectionListenerFactory)(descriptor.ImplementationInstance
            ?? descriptor.ImplementationFactory?.Invoke(services)
            ?? ActivatorUtilities.CreateInstance(services, descriptor.ImplementationType!));
}
