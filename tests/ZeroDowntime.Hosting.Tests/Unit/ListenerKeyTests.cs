using System.Net;
using System.Net.Sockets;
using ZeroDowntime.Hosting.Listeners;

namespace ZeroDowntime.Hosting.Tests.Unit;

public sealed class ListenerKeyTests
{
    [Fact]
    public void For_IpEndpoints_KeepTheConfiguredPortAndFamily()
    {
        Assert.Equal("tcp:127.0.0.1:0", ListenerKey.For(new IPEndPoint(IPAddress.Loopback, 0)));
        Assert.Equal("tcp:[::1]:9090", ListenerKey.For(new IPEndPoint(IPAddress.IPv6Loopback, 9090)));
        Assert.Equal("tcp:[::]:80", ListenerKey.For(new IPEndPoint(IPAddress.IPv6Any, 80)));
        Assert.Equal("tcp:0.0.0.0:80", ListenerKey.For(new IPEndPoint(IPAddress.Any, 80)));
    }

    [Fact]
    public void For_RelativeUnixPath_ResolvesAgainstTheCurrentDirectory()
    {
        string expected = "unix:" + Path.Combine(Environment.CurrentDirectory, "app.sock");
        Assert.Equal(expected, ListenerKey.For(new UnixDomainSocketEndPoint("app.sock")));
        Assert.Equal(expected, ListenerKey.For(new UnixDomainSocketEndPoint(Path.Combine(Environment.CurrentDirectory, "app.sock"))));
    }

    [Fact]
    public void For_AbstractUnixSocketOrFileHandle_IsNotHandedOver()
    {
        Assert.Null(ListenerKey.For(new UnixDomainSocketEndPoint("\0abstract")));
        Assert.Null(ListenerKey.For(new Microsoft.AspNetCore.Connections.FileHandleEndPoint(3, Microsoft.AspNetCore.Connections.FileHandleType.Tcp)));
    }
}
