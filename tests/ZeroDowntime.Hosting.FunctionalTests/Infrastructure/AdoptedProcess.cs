using System.Runtime.InteropServices;
using ZeroDowntime.Hosting.Tests.Infrastructure;

namespace ZeroDowntime.Hosting.FunctionalTests.Infrastructure;

/// <summary>
/// A process the test did not start (a successor that the running server started itself on an upgrade): signalled by
/// pid, its exit awaited through a pidfd (pidfd_open(2) becomes readable when the process exits), and killed on
/// dispose so that a failed test leaves nothing running.
/// </summary>
internal sealed partial class AdoptedProcess(int pid) : IDisposable
{
    public int Pid { get; } = pid;

    /// <summary>Gone, or a zombie. One read of /proc: a check for the directory first raced a reap between the two.</summary>
    public bool HasExited
    {
        get
        {
            try
            {
                return File.ReadAllText($"/proc/{Pid}/stat").Split(") ")[^1].StartsWith('Z');
            }
            catch (Exception ex) when (ex is DirectoryNotFoundException or FileNotFoundException or IOException)
            {
                return true; // reaped
            }
        }
    }

    public void Signal(int signal) => Posix.Kill(Pid, signal);

    /// <summary>
    /// Stops a process the test did not start (a successor started by the old process): SIGTERM, then at most 40 s for
    /// its exit; what goes wrong is written to <paramref name="output"/>, never thrown (this runs in a test's finally).
    /// </summary>
    public static async Task StopIfAliveAsync(int pid, Xunit.Abstractions.ITestOutputHelper output)
    {
        if (pid <= 0 || !ProcessWatch.IsAlive(pid))
        {
            return;
        }

        using var process = new AdoptedProcess(pid);
        try
        {
            process.Signal(Posix.SIGTERM);
            await process.WaitForExitAsync(TimeSpan.FromSeconds(40));
        }
        catch (Exception ex) when (ex is TimeoutException or InvalidOperationException)
        {
            output.WriteLine($"pid {pid}: {ex.Message}");
        }
    }

    /// <summary>Waits (bounded) until the process has exited.</summary>
    public async Task WaitForExitAsync(TimeSpan timeout)
    {
        int fd = pidfd_open(Pid, 0);
        if (fd < 0)
        {
            return; // already gone (ESRCH)
        }

        try
        {
            bool exited = await Task.Run(() =>
            {
                var poll = new PollFd { Fd = fd, Events = 1 /* POLLIN */ };
                return Poll(ref poll, 1, (int)timeout.TotalMilliseconds) > 0;
            });
            if (!exited && !HasExited)
            {
                throw new TimeoutException($"pid {Pid} did not exit within {timeout.TotalSeconds:0} s.");
            }
        }
        finally
        {
            close(fd);
        }
    }

    public void Dispose()
    {
        if (!HasExited)
        {
            kill(Pid, Posix.SIGKILL);
        }
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct PollFd
    {
        public int Fd;
        public short Events;
        public short Revents;
    }

    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true)]
    private static partial int syscall(long number, int pid, uint flags);

    private static int pidfd_open(int pid, uint flags) => syscall(434 /* SYS_pidfd_open, x64 and arm64 */, pid, flags);

    [LibraryImport("libc", EntryPoint = "poll", SetLastError = true)]
    private static partial int Poll(ref PollFd fds, ulong count, int timeout);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int close(int fd);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int kill(int pid, int signal);
}
