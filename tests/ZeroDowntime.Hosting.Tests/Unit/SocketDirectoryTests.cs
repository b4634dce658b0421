using ZeroDowntime.Hosting.Handoff;


namespace ZeroDowntime.Hosting.Tests.Unit;

/// <summary>The handoff socket's directory where it cannot be created (issue 24, item 4: a read-only root filesystem).</summary>
public sealed class SocketDirectoryTests
{
    [Fact]
    public void EnsureSafe_DirectoryCannotBeCreated_FailsWithExit78NamingTheDirectory_NotAnUnhandledIOException()
    {
        // sysfs refuses mkdir to everyone, root included (EPERM), as a read-only root filesystem does (EROFS).
        string directory = "/sys/zerodowntime-test-" + Guid.NewGuid().ToString("N")[..8];
        var ex = Assert.Throws<ZeroDowntimeStartupException>(() => SocketPathGuard.EnsureSafe(directory + "/handoff.sock"));

        Assert.Equal(ZeroDowntimeExitCodes.InvalidConfiguration, ex.ExitCode);
        Assert.Contains($"its directory {directory} cannot be created", ex.Message, StringComparison.Ordinal);
        Assert.Contains("ZeroDowntime:SocketPath", ex.Message, StringComparison.Ordinal);
        Assert.False(Directory.Exists(directory));
    }
}
