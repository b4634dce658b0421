using ZeroDowntime.Hosting.Interop;

namespace ZeroDowntime.Hosting.Tests.Unit;

/// <summary>Reading the signal masks of <c>/proc/self/status</c> (bit n - 1 for signal n).</summary>
public sealed class SignalMaskTests
{
    [Theory]
    [InlineData("0000000000001007", Libc.SIGHUP, true)] // what a process started by nohup in a background job sees
    [InlineData("0000000000001007", Libc.SIGUSR2, false)]
    [InlineData("0000000000000800", Libc.SIGUSR2, true)]
    [InlineData("\t0000000000000001\n", Libc.SIGHUP, true)]
    [InlineData("0000000000000000", Libc.SIGHUP, false)]
    [InlineData("8000000000000000", 64, true)]
    [InlineData("ffffffffffffffff", 0, false)]
    [InlineData("not hex", Libc.SIGHUP, false)]
    public void IsSignalInMask(string mask, int signal, bool expected) => Assert.Equal(expected, Libc.IsSignalInMask(mask, signal));

    // The .NET runtime ignores SIGPIPE in every process (a write to a closed socket must fail with EPIPE, not kill it),
    // and no process can ignore SIGKILL: both read from this process's own /proc/self/status.
    [Fact]
    public void IsSignalIgnored_ThisProcess_SigpipeYesSigkillNo()
    {
        Assert.True(Libc.IsSignalIgnored(13));
        Assert.False(Libc.IsSignalIgnored(9));
    }
}
