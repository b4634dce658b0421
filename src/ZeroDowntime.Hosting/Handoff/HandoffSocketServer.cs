using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using ZeroDowntime.Hosting.Interop;
using ZeroDowntime.Hosting.Logging;

namespace ZeroDowntime.Hosting.Handoff;

/// <summary>
/// The listening end of the handoff socket. It is bound under a temporary name, restricted to the owner, and
/// then renamed over the configured path: <c>rename(2)</c> is atomic, so a successor that connects always finds
/// either the old server or the new one, never no file. The process that is replaced never unlinks the path,
/// because by then it names its successor's socket.
/// </summary>
internal sealed class HandoffSocketServer(string socketPath, ILogger logger, TimeProvider time) : IDisposable
{
    /// <summary>
    /// The length of the temporary name in the socket's directory ('.' and 10 random hex digits): no longer than most
    /// file names, so that the temporary path fits <c>sun_path</c> wherever the configured one does (validation checks both).
    /// </summary>
    internal const int TemporaryNameLength = 11;

    private Socket? _listener;
    private CancellationTokenSource? _stopping;
    private Task _acceptLoop = Task.CompletedTask;
    private UnixFileIdentity? _identity;

    public void Start(Func<Socket, Task> handleConnection)
    {
        // A random name: nobody can occupy it in advance (in a sticky directory another user could squat a
        // predictable one and stop the handoff server from starting).
        string temporary = TemporaryPathFor(socketPath);
        var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            listener.Bind(new UnixDomainSocketEndPoint(temporary));

            // Owner-only before listen(): until listen() nobody can connect, so nobody slips in before the chmod.
            if (Libc.chmod(temporary, 0b110_000_000) != 0)
            {
                throw new IOException($"chmod 0600 {temporary} failed (errno {System.Runtime.InteropServices.Marshal.GetLastPInvokeError()}).");
            }

            listener.Listen(16);
            if (Libc.rename(temporary, socketPath) != 0)
            {
                throw new IOException($"rename {temporary} -> {socketPath} failed (errno {System.Runtime.InteropServices.Marshal.GetLastPInvokeError()}).");
            }
        }
        catch
        {
            listener.Dispose();
            File.Delete(temporary);
            throw;
        }

        // The file now at the path is ours (nobody else renames over it before this process hands over): only that
        // file is ever removed by Stop, whatever the path names by then.
        _identity = UnixFileIdentity.Of(socketPath);
        _listener = listener;
        _stopping = new CancellationTokenSource();
        var stopping = _stopping.Token;
        _acceptLoop = BackgroundWork.Start("handoff socket accept loop", () => AcceptLoopAsync(listener, handleConnection, stopping), logger);
        logger.ServingHandoffSocket(socketPath);
    }

    /// <summary>Stops accepting handoff connections. <paramref name="removeFile"/> only on a plain shutdown.</summary>
    public void Stop(bool removeFile)
    {
        var listener = Interlocked.Exchange(ref _listener, null);
        if (listener is null)
        {
            return;
        }

        _stopping?.Cancel();

        // The socket was bound to the temporary name, which rename() consumed, so disposing it unlinks nothing
        // that exists; the configured path is removed below only if it still names this process's socket. Once this
        // listener is closed, a newcomer finds the file stale, starts fresh and renames its own socket over the path
        // (and on ext4 that socket may even get the freed inode number): by name, or by inode alone, this would remove it.
        listener.Dispose();
        if (removeFile && _identity is { } identity)
        {
            switch (UnixSocketFile.RemoveIfSame(socketPath, identity))
            {
                case (UnixSocketFileRemoval.Removed, _):
                    logger.HandoffSocketRemoved(socketPath);
                    break;
                case (UnixSocketFileRemoval.Kept, _):
                    logger.UnixSocketFileKept(socketPath);
                    break;
                case (UnixSocketFileRemoval.Displaced or UnixSocketFileRemoval.Failed, var detail):
                    logger.UnixSocketFileNotRemoved(socketPath, detail!);
                    break;
            }
        }
    }

    /// <summary>True while the path still names the socket this process serves (a successor has not renamed its own over it).</summary>
    public bool PathNamesThisSocket => _listener is not null && _identity is { } identity
        && UnixFileIdentity.Of(socketPath) is { } now && identity.IsSameFile(now);

    public void Dispose() => Stop(removeFile: false);

    internal static string TemporaryPathFor(string socketPath) => UnixSocketFile.AsidePathFor(socketPath);

    private async Task AcceptLoopAsync(Socket listener, Func<Socket, Task> handleConnection, CancellationToken stopping)
    {
        while (!stopping.IsCancellationRequested)
        {
            Socket connection;
            try
            {
                connection = await listener.AcceptAsync(stopping);
            }
            catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException
                || ex is SocketException { SocketErrorCode: SocketError.OperationAborted })
            {
                return;
            }
            catch (SocketException ex)
            {
                // EMFILE and friends: log, and do not spin while the condition lasts.
                logger.HandoffServerFailed(ex);
                await Task.Delay(TimeSpan.FromMilliseconds(100), time, CancellationToken.None);
                continue;
            }

            // Each connection on its own: a peer that says nothing must not delay the next one.
            _ = BackgroundWork.Start("handoff connection", () => handleConnection(connection), logger);
        }
    }
}
