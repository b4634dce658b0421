using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace ZeroDowntime.Hosting.Tests.Unit;

public sealed class Http3NoticeTests
{
    [Fact]
    public async Task MultiplexedTransport_IsWrapped_LogsThatHttp3IsNotHandedOver_AndStillBinds()
    {
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { ApplicationName = "Http3App" });
        var fake = new FakeQuicFactory();
        builder.Services.AddSingleton<Microsoft.AspNetCore.Connections.IMultiplexedConnectionListenerFactory>(fake);
        var logs = new ListLoggerProvider();
        builder.Logging.AddProvider(logs);
        builder.WebHost.UseZeroDowntime();
        using var app = builder.Build();

        var factories = app.Services.GetServices<Microsoft.AspNetCore.Connections.IMultiplexedConnectionListenerFactory>().ToArray();
        var wrapped = Assert.Single(factories, f => f.GetType().Name == "Http3HandoffNotice");
        await wrapped.BindAsync(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 4433));

        Assert.Equal(1, fake.Binds);
        Assert.Contains(logs.Messages, m => m.EventName == "Http3NotHandedOver" && m.Text.Contains("127.0.0.1:4433", StringComparison.Ordinal));
    }

    private sealed class FakeQuicFactory : Microsoft.AspNetCore.Connections.IMultiplexedConnectionListenerFactory
    {
        public int Binds { get; private set; }

        public ValueTask<Microsoft.AspNetCore.Connections.IMultiplexedConnectionListener> BindAsync(System.Net.EndPoint endpoint, Microsoft.AspNetCore.Http.Features.IFeatureCollection? features = null, CancellationToken cancellationToken = default)
        {
            Binds++;
            return ValueTask.FromResult<Microsoft.AspNetCore.Connections.IMultiplexedConnectionListener>(null!);
        }
    }
}
