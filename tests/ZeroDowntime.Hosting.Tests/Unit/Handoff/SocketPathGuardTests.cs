using System.Runtime.InteropServices;
using ZeroDowntime.Hosting.Handoff;
using ZeroDowntime.Hosting.Tests.Infrastructure;

namespace ZeroDowntime.Hosting.Tests.Unit;

/// <summary>
/// The handoff socket's location (issue 18 item 11): every directory on the way is judged as it is after this process
/// created what was missing, so nothing planted before that escapes the check, and no directory on the way may be
/// replaceable by another user. Another user is played by uid 65534 (the tests run as root, as CI does).
/// </summary>
public sealed partial class SocketPathGuardTests : IDisposable
{
    private const uint Nobody = 65534;
    private const UnixFileMode Private = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;
    private const UnixFileMode Everyone = (UnixFileMode)0b111_111_111;
    private const UnixFileMode EveryoneSticky = (UnixFileMode)0b001_111_111_111;
    private readonly TestScope _scope = new();

    public void Dispose() => _scope.Dispose();

    // The TOCTOU: in a sticky directory that everyone can write (as /tmp), another user plants a symlink at the name of
    // the socket's directory in the instant between the check and its creation. The link points to a directory of ours,
    // so every check of what it points to passes; but its owner can point it elsewhere at any later deploy.
    [Fact]
    public void EnsureSafe_SymlinkPlantedBetweenCheckAndCreate_IsRefused()
    {
        string shared = SharedStickyDirectory();
        string ours = Directory.CreateDirectory(Path.Combine(_scope.Directory, "ours"), Private).FullName;
        string planted = Path.Combine(shared, "app");

        var ex = Assert.Throws<ZeroDowntimeStartupException>(() => SocketPathGuard.EnsureSafe(Path.Combine(planted, "handoff.sock"), beforeCreate: directory =>
        {
            Assert.Equal(planted, directory);
            File.CreateSymbolicLink(planted, ours);
            Assert.Equal(0, lchown(planted, Nobody, Nobody));
        }));

        Assert.Equal(ZeroDowntimeExitCodes.InvalidConfiguration, ex.ExitCode);
        Assert.Contains("symlink", ex.Message, StringComparison.Ordinal);
        Assert.Contains(Nobody.ToString(System.Globalization.CultureInfo.InvariantCulture), ex.Message, StringComparison.Ordinal);
    }

    // The same instant, a directory instead of a link: another user's directory at the name, which they can empty and
    // fill at will.
    [Fact]
    public void EnsureSafe_DirectoryOfAnotherUserPlantedBetweenCheckAndCreate_IsRefused()
    {
        string shared = SharedStickyDirectory();
        string planted = Path.Combine(shared, "app");

        var ex = Assert.Throws<ZeroDowntimeStartupException>(() => SocketPathGuard.EnsureSafe(Path.Combine(planted, "handoff.sock"), beforeCreate: _ =>
        {
            Directory.CreateDirectory(planted, Private);
            Assert.Equal(0, lchown(planted, Nobody, Nobody));
        }));

        Assert.Equal(ZeroDowntimeExitCodes.InvalidConfiguration, ex.ExitCode);
        Assert.Contains(planted, ex.Message, StringComparison.Ordinal);
    }

    // An ancestor that other users can write (no sticky bit) lets them rename the socket's directory away and put their
    // own in its place: later handoffs would find their socket (refused by uid) instead of ours.
    [Fact]
    public void EnsureSafe_AncestorWritableByOthersWithoutStickyBit_IsRefused()
    {
        string open = Directory.CreateDirectory(Path.Combine(_scope.Directory, "open")).FullName;
        File.SetUnixFileMode(open, Everyone);
        string app = Directory.CreateDirectory(Path.Combine(open, "app"), Private).FullName;

        var ex = Assert.Throws<ZeroDowntimeStartupException>(() => SocketPathGuard.EnsureSafe(Path.Combine(app, "handoff.sock")));

        Assert.Equal(ZeroDowntimeExitCodes.InvalidConfiguration, ex.ExitCode);
        Assert.Contains($"{open} (mode 777)", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void EnsureSafe_AncestorWritableByItsGroup_IsRefused()
    {
        string group = Directory.CreateDirectory(Path.Combine(_scope.Directory, "group")).FullName;
        File.SetUnixFileMode(group, (UnixFileMode)0b111_111_101);
        string app = Directory.CreateDirectory(Path.Combine(group, "app"), Private).FullName;

        var ex = Assert.Throws<ZeroDowntimeStartupException>(() => SocketPathGuard.EnsureSafe(Path.Combine(app, "handoff.sock")));

        Assert.Contains($"{group} (mode 775)", ex.Message, StringComparison.Ordinal);
    }

    // A sticky directory is fine only if its owner is this user or root: its owner can remove the sticky bit.
    [Fact]
    public void EnsureSafe_StickyAncestorOwnedByAnotherUser_IsRefused()
    {
        string shared = SharedStickyDirectory();
        Assert.Equal(0, lchown(shared, Nobody, Nobody));

        var ex = Assert.Throws<ZeroDowntimeStartupException>(() => SocketPathGuard.EnsureSafe(Path.Combine(shared, "app", "handoff.sock")));

        Assert.Contains($"{shared} belongs to uid {Nobody}", ex.Message, StringComparison.Ordinal);
    }

    // As the default /tmp/zerodowntime-<uid>/: a sticky directory of root's, in which this process creates its own.
    [Fact]
    public void EnsureSafe_StickyAncestorOfRoot_CreatesThePrivateDirectories()
    {
        string shared = SharedStickyDirectory();
        string socketPath = Path.Combine(shared, "app", "nested", "handoff.sock");

        SocketPathGuard.EnsureSafe(socketPath);

        Assert.Equal(Private, File.GetUnixFileMode(Path.Combine(shared, "app")));
        Assert.Equal(Private, File.GetUnixFileMode(Path.Combine(shared, "app", "nested")));
    }

    // Bad input gets a clear error (exit 78), never a crash: a regular file where a directory must be.
    [Fact]
    public void EnsureSafe_RegularFileOnTheWay_FailsWithInvalidConfiguration()
    {
        string file = Path.Combine(_scope.Directory, "file");
        File.WriteAllText(file, "not a directory");

        var ex = Assert.Throws<ZeroDowntimeStartupException>(() => SocketPathGuard.EnsureSafe(Path.Combine(file, "app", "handoff.sock")));

        Assert.Equal(ZeroDowntimeExitCodes.InvalidConfiguration, ex.ExitCode);
        Assert.Contains($"{file} is not a directory", ex.Message, StringComparison.Ordinal);
    }

    // ".." after a symlink is resolved as the kernel does (from the link's target), not by the text of the path.
    [Fact]
    public void EnsureSafe_DotDotAfterSymlink_JudgesWhatTheKernelResolves()
    {
        string open = Directory.CreateDirectory(Path.Combine(_scope.Directory, "open")).FullName;
        File.SetUnixFileMode(open, Everyone);
        string inner = Directory.CreateDirectory(Path.Combine(open, "inner"), Private).FullName;
        string link = Path.Combine(_scope.Directory, "link");
        File.CreateSymbolicLink(link, inner);

        // Textually /scope/app; for the kernel /scope/open/app, in the directory everyone can write.
        var ex = Assert.Throws<ZeroDowntimeStartupException>(() => SocketPathGuard.EnsureSafe(link + "/../app/handoff.sock"));

        Assert.Contains($"{open} (mode 777)", ex.Message, StringComparison.Ordinal);
    }

    private string SharedStickyDirectory()
    {
        string shared = Directory.CreateDirectory(Path.Combine(_scope.Directory, "shared")).FullName;
        File.SetUnixFileMode(shared, EveryoneSticky);
        return shared;
    }

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int lchown(string path, uint owner, uint group);

    // Item 10: a symlink on the way to the socket that another user owns could be retargeted by them at will.
    [Fact]
    public void EnsureSafe_SymlinkedDirectoryOwnedByAnotherUser_IsRefused()
    {
        string real = Path.Combine(_scope.Directory, "real");
        Directory.CreateDirectory(real, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        string link = Path.Combine(_scope.Directory, "link");
        File.CreateSymbolicLink(link, real);
        Assert.Equal(0, lchown(link, 65534, 65534));

        var ex = Assert.Throws<ZeroDowntimeStartupException>(() => SocketPathGuard.EnsureSafe(Path.Combine(link, "handoff.sock")));

        Assert.Equal(ZeroDowntimeExitCodes.InvalidConfiguration, ex.ExitCode);
        Assert.Contains("65534", ex.Message, StringComparison.Ordinal);
        Assert.Contains("symlink", ex.Message, StringComparison.OrdinalIgnoreCase);
    }

    // Item 10: a link of our own, but in a directory that others can write (no sticky bit): they can replace it.
    [Fact]
    public void EnsureSafe_SymlinkInDirectoryOthersCanWrite_IsRefused()
    {
        string real = Path.Combine(_scope.Directory, "real");
        Directory.CreateDirectory(real, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        string open = Path.Combine(_scope.Directory, "open");
        Directory.CreateDirectory(open);
        File.SetUnixFileMode(open, (UnixFileMode)0b111_111_111);
        string link = Path.Combine(open, "link");
        File.CreateSymbolicLink(link, real);

        var ex = Assert.Throws<ZeroDowntimeStartupException>(() => SocketPathGuard.EnsureSafe(Path.Combine(link, "handoff.sock")));

        Assert.Contains(open, ex.Message, StringComparison.Ordinal);
    }

    // Item 10: links of our own in directories only we (or root) can write stay fine, as does /var/run -> /run.
    [Fact]
    public void EnsureSafe_OwnSymlinkInPrivateDirectory_IsAccepted()
    {
        string real = Path.Combine(_scope.Directory, "real");
        Directory.CreateDirectory(real, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        string link = Path.Combine(_scope.Directory, "link");
        File.CreateSymbolicLink(link, real);

        SocketPathGuard.EnsureSafe(Path.Combine(link, "handoff.sock"));
    }
}
