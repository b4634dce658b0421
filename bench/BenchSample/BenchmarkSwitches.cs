using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using ZeroDowntime.Sample;

// The app's own assembly is always among the hosting startup assemblies: this runs inside WebApplication.CreateBuilder,
// so the sample's Program.cs stays as users copy it.
[assembly: HostingStartup(typeof(BenchmarkSwitches))]

namespace ZeroDowntime.Sample;

/// <summary>
/// Switches that only the benchmark's build of the sample has (bench/BenchSample: the sample's sources plus this file);
/// none is set by default and none touches the library.
/// <list type="bullet">
/// <item><c>Sample:ReusePort=true</c> binds every TCP listener with <c>SO_REUSEPORT</c> (.NET's <c>ReuseAddress</c>
/// on Linux), so that a second process can bind the same port while the first one still serves: the
/// "overlap" baseline that the library is compared with. It requires <c>ZeroDowntime:Enabled=false</c>, because the
/// library binds its listeners itself.</item>
/// <item><c>Sample:LogFirstRequest=true</c> logs, once, the wall-clock time at which this process answered its first
/// request (event 1001), so that the benchmark can tell when a new version started serving.</item>
/// </list>
/// </summary>
internal sealed partial class BenchmarkSwitches : IHostingStartup
{
    public void Configure(IWebHostBuilder builder) => builder.ConfigureServices((context, services) =>
    {
        var configuration = context.Configuration;
        if (configuration.GetValue("Sample:ReusePort", false))
        {
            if (configuration.GetValue("ZeroDowntime:Enabled", true))
            {
                throw new InvalidOperationException("Sample:ReusePort=true needs ZeroDowntime:Enabled=false: with handoffs enabled the library binds the listeners.");
            }

            services.Configure<SocketTransportOptions>(options => options.CreateBoundListenSocket = BindWithReusePort);
        }

        if (configuration.GetValue("Sample:LogFirstRequest", false))
        {
            services.AddSingleton<IStartupFilter, FirstRequestLogger>();
        }
    });

    private static Socket BindWithReusePort(EndPoint endpoint)
    {
        if (endpoint is not IPEndPoint ip)
        {
            return SocketTransportOptions.CreateDefaultBoundListenSocket(endpoint);
        }

        var socket = new Socket(ip.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            if (ip.Address.Equals(IPAddress.IPv6Any))
            {
                socket.DualMode = true;
            }

            // On Linux .NET sets SO_REUSEADDR and SO_REUSEPORT for this option.
            socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            socket.Bind(ip);
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    private sealed partial class FirstRequestLogger(ILogger<FirstRequestLogger> logger) : IStartupFilter
    {
        private int _served;

        public Action<IApplicationBuilder> Configure(Action<IApplicationBuilder> next) => app =>
        {
            app.Use((context, nextMiddleware) =>
            {
                if (Volatile.Read(ref _served) == 0 && Interlocked.Exchange(ref _served, 1) == 0)
                {
                    context.Response.OnCompleted(() =>
                    {
                        LogFirstRequest(logger, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
                        return Task.CompletedTask;
                    });
                }

                return nextMiddleware(context);
            });
            next(app);
        };

        [LoggerMessage(1001, LogLevel.Information, "First request served at unix ms {UnixMs}", EventName = "FirstRequestServed")]
        private static partial void LogFirstRequest(ILogger logger, long unixMs);
    }
}
