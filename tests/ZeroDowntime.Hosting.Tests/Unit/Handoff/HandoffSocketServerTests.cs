using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using ZeroDowntime.Hosting.Handoff;
using ZeroDowntime.Hosting.Interop;
using ZeroDowntime.Hosting.Tests.Infrastructure;

namespace ZeroDowntime.Hosting.Tests.Unit;

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

    // Item 1: the handoff socket is served for every path that validation accepts, up to sun_path's 107 bytes.
    [Fact]
    public void HandoffSocketServer_PathOf107Bytes_IsServed()
    {
        string path = PathOfLength(107, fileNamePrefix: "handoff-");
        var logger = new RecordingLogger<HandoffSocketServerTests>();
        using var server = new HandoffSocketServer(path, logger, TimeProvider.System);

        server.Start(static socket => { socket.Dispose(); return Task.CompletedTask; });

        Assert.Equal(Libc.S_IFSOCK, Libc.TryStat(path)!.Value.Mode & Libc.S_IFMT);
        using var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        client.Connect(new UnixDomainSocketEndPoint(path));
    }

    // Item 1: whatever escapes a background task of the library is logged at Critical (never unobserved).
    [Fact]
    public async Task HandoffSocketServer_HandlerThrows_IsLoggedAtCritical()
    {
        var logger = new RecordingLogger<HandoffSocketServerTests>();
        using var server = new HandoffSocketServer(Path.Combine(_scope.Directory, "guard.sock"), logger, TimeProvider.System);
        var handled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        server.Start(socket =>
        {
            socket.Dispose();
            handled.SetResult();
            throw new InvalidOperationException("boom from a handler");
        });

        using var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await client.ConnectAsync(new UnixDomainSocketEndPoint(Path.Combine(_scope.Directory, "guard.sock")));
        await handled.Task.WaitAsync(TimeSpan.FromSeconds(10));

        var entry = await logger.WaitForAsync(e => e.Level == LogLevel.Critical, TimeSpan.FromSeconds(10));
        Assert.Equal("BackgroundTaskFailed", entry.EventId.Name);
        Assert.Equal("boom from a handler", entry.Exception?.Message);
    }

    private string PathOfLength(int bytes, string fileNamePrefix)
    {
        string directory = _scope.Directory;
        int fileLength = bytes - directory.Length - 1;
        string padded = Path.Combine(directory, new string('d', Math.Max(1, fileLength - 80)));
        if (fileLength > 80)
        {
            Directory.CreateDirectory(padded);
            directory = padded;
            fileLength = bytes - directory.Length - 1;
        }

        string path = Path.Combine(directory, fileNamePrefix + new string('x', fileLength - fileNamePrefix.Length));
        Assert.Equal(bytes, System.Text.Encoding.UTF8.GetByteCount(path));
        return path;
    }
}
