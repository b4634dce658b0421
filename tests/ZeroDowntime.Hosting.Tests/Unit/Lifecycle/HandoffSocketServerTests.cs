using System.Net.Sockets;
using ZeroDowntime.Hosting.Lifecycle;
using ZeroDowntime.Hosting.Tests.Infrastructure;

namespace ZeroDowntime.Hosting.Tests.Unit.Lifecycle;

/// <summary>The handoff socket's own file: served by rename, removed on a plain shutdown only while it is still ours.</summary>
public sealed class HandoffSocketServerTests : IDisposable
{
    private readonly TestScope _scope = new();

    public void Dispose() => _scope.Dispose();

    [Fact]
    public void Stop_RemoveFile_PathStillOurs_RemovesIt()
    {
        var logger = new RecordingLogger<HandoffSocketServerTests>();
        using var server = new HandoffSocketServer(_scope.SocketPath, logger, TimeProvider.System);
        server.Start(static socket => { socket.Dispose(); return Task.CompletedTask; });

        server.Stop(removeFile: true);

        Assert.False(File.Exists(_scope.SocketPath));
        Assert.Single(logger.Named("HandoffSocketRemoved"));
    }

    // Issue 18 item 2 (the handoff socket's side): the coordinator's StopAsync stops the server again, and a newcomer may
    // have put its own socket at the path by then (rename, as every server does). Only our own file is ever removed.
    [Fact]
    public void Stop_RemoveFile_NewcomerRenamedItsSocketOverThePath_LeavesIt()
    {
        var logger = new RecordingLogger<HandoffSocketServerTests>();
        using var server = new HandoffSocketServer(_scope.SocketPath, logger, TimeProvider.System);
        server.Start(static socket => { socket.Dispose(); return Task.CompletedTask; });
        using var newcomer = new HandoffSocketServer(_scope.SocketPath, new RecordingLogger<HandoffSocketServerTests>(), TimeProvider.System);
        newcomer.Start(static socket => { socket.Dispose(); return Task.CompletedTask; });

        server.Stop(removeFile: true);

        Assert.True(File.Exists(_scope.SocketPath));
        using (var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
        {
            client.Connect(new UnixDomainSocketEndPoint(_scope.SocketPath));
        }

        Assert.Empty(logger.Named("HandoffSocketRemoved"));
        Assert.Single(logger.Named("UnixSocketFileKept"));
    }
}
