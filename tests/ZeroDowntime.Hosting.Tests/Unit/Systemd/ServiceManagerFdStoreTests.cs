using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using ZeroDowntime.Hosting.Interop;
using ZeroDowntime.Hosting.Systemd;
using ZeroDowntime.Hosting.Tests.Infrastructure;
using static ZeroDowntime.Hosting.Tests.Unit.ListenerTestKit;

namespace ZeroDowntime.Hosting.Tests.Unit;

/// <summary>Issue 21: the FDSTORE=1 / FDSTOREREMOVE=1 datagrams, read the way systemd reads them (recvmsg).</summary>
public sealed class ServiceManagerFdStoreTests : IDisposable
{
    private readonly TestScope _scope = new();
    private readonly Socket _keeper = new(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
    private readonly string _path;

    public ServiceManagerFdStoreTests()
    {
        _path = Path.Combine(_scope.Directory, "notify.sock");
        _keeper.Bind(new UnixDomainSocketEndPoint(_path));
    }

    [Fact]
    public void Store_EachServingListenerOnce_WithItsKeyAndTheSocketItself_RemoveByName()
    {
        var registry = Registry();
        var endPoint = new IPEndPoint(IPAddress.Loopback, 0);
        var entry = registry.Acquire(endPoint, Key(endPoint), Transport());
        var store = new ServiceManagerFdStore(_path, storeLimit: null, NullLogger.Instance, TimeProvider.System);
        Assert.True(store.Enabled);

        store.Store(registry);
        store.Store(registry); // stored already: nothing more is sent
        store.Remove(entry.Key);

        var (text, fds) = ReceiveOne();
        Assert.Equal("FDSTORE=1\nFDNAME=tcp%3A127.0.0.1%3A0", text);
        Assert.Equal([Inode(entry.Fd)], fds.Select(Inode));
        FdPassing.CloseAll(fds);
        (text, fds) = ReceiveOne();
        Assert.Equal("FDSTOREREMOVE=1\nFDNAME=tcp%3A127.0.0.1%3A0", text);
        Assert.Empty(fds);
        Assert.False(_keeper.Poll(0, SelectMode.SelectRead), "one FDSTORE=1 per listener, however often the owner stores");
        registry.CloseAll(removeUnixFiles: false);
    }

    [Theory]
    [InlineData("0")]
    [InlineData(null)]
    public void Enabled_OnlyWithANotifySocketAndAStore(string? limit)
    {
        Assert.Equal(limit is null, new ServiceManagerFdStore(_path, limit, NullLogger.Instance, TimeProvider.System).Enabled);
        Assert.False(new ServiceManagerFdStore(null, "16", NullLogger.Instance, TimeProvider.System).Enabled);
        Assert.True(new ServiceManagerFdStore(_path, "16", NullLogger.Instance, TimeProvider.System).Enabled);
    }

    public void Dispose()
    {
        _keeper.Dispose();
        _scope.Dispose();
    }

    private (string Text, List<int> Fds) ReceiveOne()
    {
        Assert.True(_keeper.Poll(Bounded, SelectMode.SelectRead), "a datagram");
        var buffer = new byte[4096];
        var fds = new List<int>();
        var result = FdPassing.Receive(_keeper, buffer, fds);
        Assert.Equal(ReceiveStatus.Data, result.Status);
        return (Encoding.UTF8.GetString(buffer, 0, result.Length), fds);
    }

    private static unsafe ulong Inode(int fd)
    {
        Libc.StatX stat;
        Assert.Equal(0, Libc.statx(fd, "", 0x1000 /* AT_EMPTY_PATH */, Libc.STATX_BASIC_STATS, &stat));
        return stat.Inode;
    }
}
