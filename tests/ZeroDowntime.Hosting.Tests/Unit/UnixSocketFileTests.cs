using System.Net.Sockets;
using Xunit.Abstractions;
using ZeroDowntime.Hosting.Interop;
using ZeroDowntime.Hosting.Tests.Infrastructure;

namespace ZeroDowntime.Hosting.Tests.Unit;

/// <summary>
/// Removing a Unix socket file only if the path still names the file this process bound (issue 18 item 2): real
/// sockets in a temporary directory; the race is forced through the seam between the comparison and the removal.
/// </summary>
public sealed class UnixSocketFileTests(ITestOutputHelper output) : IDisposable
{
    private readonly TestScope _scope = new();

    public void Dispose() => _scope.Dispose();

    [Fact]
    public void RemoveIfSame_PathNamesTheBoundFile_RemovesIt()
    {
        string path = Path.Combine(_scope.Directory, "own.sock");
        using var own = Listen(path);
        var identity = UnixFileIdentity.Of(path)!.Value;

        Assert.Equal((UnixSocketFileRemoval.Removed, null), UnixSocketFile.RemoveIfSame(path, identity));

        Assert.False(File.Exists(path));
        Assert.Empty(AsideFiles());
    }

    [Fact]
    public void RemoveIfSame_NothingAtThePath_IsGone()
    {
        string path = Path.Combine(_scope.Directory, "gone.sock");
        using (Listen(path))
        {
        }

        var identity = new UnixFileIdentity(1, 2, 3, 4, 5, IsBirthTime: true);
        Assert.Equal((UnixSocketFileRemoval.Gone, null), UnixSocketFile.RemoveIfSame(path, identity));
    }

    // The old process stopped listening; a newcomer found its file stale, removed it and bound its own at the same path.
    // On ext4 the new file gets the freed inode number (the old check compared only device and inode): it must stay.
    [Fact]
    public void RemoveIfSame_AnotherSocketBoundAtThePathSince_KeepsItEvenWithTheInodeNumberReused()
    {
        string path = Path.Combine(_scope.Directory, "reused.sock");
        UnixFileIdentity old;
        using (Listen(path))
        {
            old = UnixFileIdentity.Of(path)!.Value;
        }

        using var newcomer = Listen(path);
        var now = UnixFileIdentity.Of(path)!.Value;
        output.WriteLine($"old inode {old.Inode}, newcomer's inode {now.Inode} ({(old.Inode == now.Inode ? "reused" : "not reused")}), birth time kept: {now.IsBirthTime}");

        Assert.Equal((UnixSocketFileRemoval.Kept, null), UnixSocketFile.RemoveIfSame(path, old));

        Assert.Equal(now, UnixFileIdentity.Of(path));
        AssertAccepts(path, newcomer);
    }

    // The race that comparing and then unlinking by name leaves open: the newcomer replaces the file in the instant
    // between the comparison and the removal. Its file is what the rename takes off the path: it is put back at once.
    [Fact]
    public void RemoveIfSame_NewcomerBindsInTheInstantBetweenComparisonAndRemoval_ItsFileIsPutBack()
    {
        string path = Path.Combine(_scope.Directory, "raced.sock");
        var old = Listen(path);
        var identity = UnixFileIdentity.Of(path)!.Value;
        Socket? newcomer = null;
        try
        {
            var (outcome, detail) = UnixSocketFile.RemoveIfSame(path, identity, afterCheck: () =>
            {
                old.Dispose(); // unlinks the old file, as a newcomer's stale-file removal does
                newcomer = Listen(path);
            });

            Assert.Equal(UnixSocketFileRemoval.Kept, outcome);
            Assert.Null(detail);
            Assert.NotNull(newcomer);
            Assert.False(identity.IsSameFile(UnixFileIdentity.Of(path)!.Value));
            AssertAccepts(path, newcomer);
            Assert.Empty(AsideFiles());
        }
        finally
        {
            old.Dispose();
            newcomer?.Dispose();
        }
    }

    // Birth time decides where device and inode agree; without a birth time, the change time does, except across the
    // rename that RemoveIfSame does itself.
    [Fact]
    public void IsSameFile_SameDeviceAndInode_DecidedByTheTime()
    {
        var born = new UnixFileIdentity(8, 1, 4711, 1_800_000_000, 5, IsBirthTime: true);
        Assert.True(born.IsSameFile(born));
        Assert.False(born.IsSameFile(born with { Nanoseconds = 6 }));
        Assert.False(born.IsSameFile(born with { Nanoseconds = 6 }, renamedSince: true));
        Assert.False(born.IsSameFile(born with { Inode = 4712 }));
        Assert.False(born.IsSameFile(born with { DevMinor = 2 }));

        var changed = born with { IsBirthTime = false };
        Assert.False(changed.IsSameFile(changed with { Seconds = 1_800_000_001 }));
        Assert.True(changed.IsSameFile(changed with { Seconds = 1_800_000_001 }, renamedSince: true));
        Assert.False(changed.IsSameFile(changed with { Inode = 4712 }, renamedSince: true));
    }

    private static Socket Listen(string path)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        socket.Bind(new UnixDomainSocketEndPoint(path));
        socket.Listen();
        return socket;
    }

    private static void AssertAccepts(string path, Socket listener)
    {
        using var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        client.Connect(new UnixDomainSocketEndPoint(path));
        using var accepted = listener.Accept();
        Assert.NotNull(accepted);
    }

    private string[] AsideFiles() => Directory.GetFiles(_scope.Directory, ".*");
}
