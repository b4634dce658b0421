using System.Net;
using System.Net.Sockets;
using ZeroDowntime.Hosting.Listeners;

namespace ZeroDowntime.Hosting.Tests.Unit;

public sealed class ListenerKeyTests
{
    [Fact]
    public void For_IpEndpoints_KeepTheConfiguredPortAndFamily()
    {
        Assert.Equal("tcp:127.0.0.1:0", ListenerKey.For(new IPEndPoint(IPAddress.Loopback, 0))?.ToString());
        Assert.Equal("tcp:[::1]:9090", ListenerKey.For(new IPEndPoint(IPAddress.IPv6Loopback, 9090))?.ToString());
        Assert.Equal("tcp:[::]:80", ListenerKey.For(new IPEndPoint(IPAddress.IPv6Any, 80))?.ToString());
        Assert.Equal("tcp:0.0.0.0:80", ListenerKey.For(new IPEndPoint(IPAddress.Any, 80))?.ToString());
        var key = ListenerKey.For(new IPEndPoint(IPAddress.Loopback, 8080))!;
        Assert.Equal((ListenerTransport.Tcp, new IPEndPoint(IPAddress.Loopback, 8080), null, 1), (key.Transport, key.Tcp, key.UnixPath, key.Occurrence));
    }

    [Fact]
    public void For_RelativeUnixPath_ResolvesAgainstTheCurrentDirectory()
    {
        string path = Path.Combine(Environment.CurrentDirectory, "app.sock");
        Assert.Equal("unix:" + path, ListenerKey.For(new UnixDomainSocketEndPoint("app.sock"))?.ToString());
        Assert.Equal("unix:" + path, ListenerKey.For(new UnixDomainSocketEndPoint(path))?.ToString());
        Assert.Equal(path, ListenerKey.For(new UnixDomainSocketEndPoint("app.sock"))?.UnixPath);
        Assert.Equal(ListenerTransport.Unix, ListenerKey.For(new UnixDomainSocketEndPoint("app.sock"))?.Transport);
    }

    [Fact]
    public void For_AbstractUnixSocketOrFileHandleOfNoListener_IsNotHandedOver()
    {
        Assert.Null(ListenerKey.For(new UnixDomainSocketEndPoint("\0abstract")));
        using var notListening = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        Assert.Null(ListenerKey.For(new Microsoft.AspNetCore.Connections.FileHandleEndPoint((ulong)notListening.Handle, Microsoft.AspNetCore.Connections.FileHandleType.Tcp)));
        Assert.Null(ListenerKey.For(new Microsoft.AspNetCore.Connections.FileHandleEndPoint(987_654, Microsoft.AspNetCore.Connections.FileHandleType.Tcp)));
    }

    // Issue 21: Kestrel's ListenHandle and UseSystemd() give a listening socket as a file handle; it is handed over
    // like any other listener, under the key of the address it is bound to.
    [Fact]
    public void For_FileHandleOfAListeningSocket_IsTheKeyOfItsBoundAddress()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen();
        int port = ((IPEndPoint)listener.LocalEndPoint!).Port;
        var handle = new Microsoft.AspNetCore.Connections.FileHandleEndPoint((ulong)listener.Handle, Microsoft.AspNetCore.Connections.FileHandleType.Tcp);
        Assert.Equal($"tcp:127.0.0.1:{port}", ListenerKey.For(handle)?.ToString());
    }

    // Wire compatibility: every form that the string keys of earlier builds took (ListenerKey.For plus the registry's
    // "#n" for a repeated endpoint) must parse to a key that formats back to the very same text, and equal the key
    // this build computes for the same endpoint.
    [Theory]
    [InlineData("tcp:127.0.0.1:0")]
    [InlineData("tcp:0.0.0.0:80")]
    [InlineData("tcp:127.0.0.1:0#2")]
    [InlineData("tcp:127.0.0.1:5000#13")]
    [InlineData("tcp:[::]:80")]
    [InlineData("tcp:[::1]:9090#2")]
    [InlineData("tcp:[fe80::1%2]:443")]
    [InlineData("tcp:[::ffff:10.0.0.1]:8080")]
    [InlineData("unix:/run/app/http.sock")]
    [InlineData("unix:/tmp/odd#2.sock")]
    [InlineData("unix:/tmp/a b/c:d.sock")]
    public void Parse_EveryStringFormOfEarlierBuilds_FormatsBackToTheSameText(string text)
    {
        var key = ListenerKey.Parse(text);

        Assert.Equal(text, key.ToString());
        Assert.NotEqual(ListenerTransport.Unrecognized, key.Transport);
        Assert.Equal(key, ListenerKey.Parse(text));
        Assert.Equal(key.GetHashCode(), ListenerKey.Parse(text).GetHashCode());
    }

    [Fact]
    public void Parse_KeyOfAnEndpoint_EqualsTheKeyComputedForIt()
    {
        var endpoint = new IPEndPoint(IPAddress.Loopback, 0);
        var key = ListenerKey.For(endpoint)!;

        Assert.Equal(key, ListenerKey.Parse("tcp:127.0.0.1:0"));
        Assert.Equal(ListenerKey.Parse("tcp:127.0.0.1:0#2"), key.WithOccurrence(2));
        Assert.Equal(2, ListenerKey.Parse("tcp:127.0.0.1:0#2").Occurrence);
        Assert.NotEqual(key, key.WithOccurrence(2));
        Assert.Equal(key, key.WithOccurrence(2).WithOccurrence(1));
        Assert.Equal("/tmp/odd#2.sock", ListenerKey.Parse("unix:/tmp/odd#2.sock").UnixPath); // '#' is part of a Unix path
    }

    // A key from a newer (or broken) build that this one does not understand must not fail the handoff: it is kept
    // verbatim, matches no endpoint of ours (so it is closed as unused) and has no file to delete.
    [Theory]
    [InlineData("")]
    [InlineData("pipe:/x")]
    [InlineData("tcp:")]
    [InlineData("tcp:127.0.0.1")]
    [InlineData("tcp:127.0.0.1:65536")]
    [InlineData("tcp:127.0.0.1:-1")]
    [InlineData("tcp:127.0.0.1:80#1")]
    [InlineData("tcp:127.0.0.1:80#02")]
    [InlineData("tcp:127.0.0.1:080")]
    [InlineData("tcp:::1:80")]
    [InlineData("tcp:localhost:80")]
    [InlineData("unix:relative.sock")]
    [InlineData("unix:")]
    public void Parse_UnknownForm_IsUnrecognizedAndKeptVerbatim(string text)
    {
        var key = ListenerKey.Parse(text);

        Assert.Equal(ListenerTransport.Unrecognized, key.Transport);
        Assert.Equal(text, key.ToString());
        Assert.Null(key.UnixPath);
        Assert.Null(key.Tcp);
        Assert.NotEqual(ListenerKey.For(new IPEndPoint(IPAddress.Loopback, 80)), key);
    }

    [Fact]
    public void WithOccurrence_UnixKey_Throws()
    {
        var key = ListenerKey.Parse("unix:/run/app.sock");

        Assert.Throws<InvalidOperationException>(() => key.WithOccurrence(2));
        Assert.Throws<ArgumentOutOfRangeException>(() => ListenerKey.Parse("tcp:127.0.0.1:80").WithOccurrence(0));
    }
}
