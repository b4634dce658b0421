using ZeroDowntime.Hosting.Warmup;

namespace ZeroDowntime.Hosting.Tests.Unit;

/// <summary>
/// The JIT profile's file next to the handoff socket: used when it is missing (this process records one) or this
/// user's regular file; anything else planted at the name is left alone, so the runtime neither reads it nor writes
/// through it at exit.
/// </summary>
public sealed class JitProfileTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("zd-jitprofile-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Fact]
    public void PathFor_IsNextToTheSocket() =>
        Assert.Equal("/run/webapi/handoff.sock.jitprofile", JitProfile.PathFor("/run/webapi/handoff.sock"));

    [Fact]
    public void Inspect_NoFile_IsUsableAndEmpty()
    {
        var found = JitProfile.Inspect(Path.Combine(_directory, "handoff.sock.jitprofile"));
        Assert.True(found.Usable);
        Assert.Equal(0, found.Bytes);
    }

    [Fact]
    public void Inspect_ThisUsersRegularFile_IsUsableWithItsSize()
    {
        string path = Path.Combine(_directory, "handoff.sock.jitprofile");
        File.WriteAllBytes(path, new byte[1234]);

        var found = JitProfile.Inspect(path);

        Assert.True(found.Usable);
        Assert.Equal(1234, found.Bytes);
    }

    [Fact]
    public void Inspect_SymlinkAtTheName_IsNotUsed()
    {
        string target = Path.Combine(_directory, "victim");
        File.WriteAllBytes(target, new byte[10]);
        string path = Path.Combine(_directory, "handoff.sock.jitprofile");
        File.CreateSymbolicLink(path, target);

        Assert.False(JitProfile.Inspect(path).Usable); // the runtime would write its profile through it at exit
    }

    [Fact]
    public void Inspect_DirectoryAtTheName_IsNotUsed()
    {
        string path = Path.Combine(_directory, "handoff.sock.jitprofile");
        Directory.CreateDirectory(path);

        Assert.False(JitProfile.Inspect(path).Usable);
    }
}
