using System.Runtime.InteropServices;
using System.Text;
using ZeroDowntime.Hosting.Interop;

namespace ZeroDowntime.Cli.Interop;

/// <summary>
/// The few libc calls the supervisor needs. The child is started with posix_spawnp, not System.Diagnostics.Process:
/// Process reaps its own children on SIGCHLD, which would race the supervisor's waitid on any child.
/// </summary>
internal static unsafe partial class Posix
{
    private const int PR_SET_CHILD_SUBREAPER = 36;
    private const int P_ALL = 0;
    private const int WNOHANG = 1;
    private const int WEXITED = 4;
    private const int WNOWAIT = 0x01000000;

    // glibc: siginfo_t is 128 bytes; si_pid is at 16 on 64-bit (after si_signo, si_errno, si_code and padding).
    private const int SigInfoBytes = 128;
    private const int SigInfoPidOffset = 16;
    private const short POSIX_SPAWN_SETSIGDEF = 0x04;
    private const short POSIX_SPAWN_SETSIGMASK = 0x08;

    // glibc: posix_spawnattr_t is 336 bytes and sigset_t 128 on x86-64 and arm64; room to spare.
    private const int SpawnAttrBytes = 1024;

    // glibc: posix_spawn_file_actions_t is 80 bytes on x86-64 and arm64; room to spare.
    private const int SpawnFileActionsBytes = 256;
    private const int SigSetBytes = 256;

    [LibraryImport("libc", SetLastError = true)]
    private static partial int prctl(int option, nuint arg2, nuint arg3, nuint arg4, nuint arg5);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int waitpid(int pid, int* status, int options);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int waitid(int idType, int id, void* info, int options);

    [LibraryImport("libc")]
    private static partial int getpid();

    [LibraryImport("libc")]
    private static partial int posix_spawnp(int* pid, byte* file, void* fileActions, void* attributes, byte** argv, byte** envp);

    [LibraryImport("libc")]
    private static partial int posix_spawn_file_actions_init(void* actions);

    [LibraryImport("libc")]
    private static partial int posix_spawn_file_actions_destroy(void* actions);

    [LibraryImport("libc")]
    private static partial int posix_spawn_file_actions_adddup2(void* actions, int fd, int newFd);

    [LibraryImport("libc")]
    private static partial int posix_spawnattr_init(void* attributes);

    [LibraryImport("libc")]
    private static partial int posix_spawnattr_destroy(void* attributes);

    [LibraryImport("libc")]
    private static partial int posix_spawnattr_setflags(void* attributes, short flags);

    [LibraryImport("libc")]
    private static partial int posix_spawnattr_setsigmask(void* attributes, void* mask);

    [LibraryImport("libc")]
    private static partial int posix_spawnattr_setsigdefault(void* attributes, void* signals);

    [LibraryImport("libc")]
    private static partial int sigemptyset(void* set);

    [LibraryImport("libc")]
    private static partial int sigfillset(void* set);

    [LibraryImport("libc")]
    private static partial int sigdelset(void* set, int signal);

    public static int ProcessId => getpid();

    /// <summary>Orphaned descendants are re-parented to this process (and so reaped by it), as to PID 1.</summary>
    public static int BecomeSubreaper() => prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0 ? 0 : Marshal.GetLastPInvokeError();

    /// <summary>kill(2): 0, or the errno.</summary>
    public static int Kill(int pid, int signal) => Libc.kill(pid, signal) == 0 ? 0 : Marshal.GetLastPInvokeError();

    /// <summary>
    /// Blocks until a child has exited and returns its pid, leaving it a zombie (waitid with WNOWAIT): its pid stays
    /// taken, so no other process can get the number, until <see cref="Reap"/>. (-1, errno) on failure (ECHILD: none left).
    /// </summary>
    public static (int Pid, int Errno) WaitForExitedChild()
    {
        byte* info = stackalloc byte[SigInfoBytes];
        new Span<byte>(info, SigInfoBytes).Clear();
        return waitid(P_ALL, 0, info, WEXITED | WNOWAIT) == 0 ? (*(int*)(info + SigInfoPidOffset), 0) : (-1, Marshal.GetLastPInvokeError());
    }

    /// <summary>Reaps a child that has exited (waitpid without blocking): its raw wait status, or null.</summary>
    public static int? Reap(int pid)
    {
        int status = 0;
        return waitpid(pid, &status, WNOHANG) == pid ? status : null;
    }

    /// <summary>A shell's view of a wait status: the exit code, or 128 + the signal that killed it.</summary>
    public static int ExitCode(int status) => (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f);

    public static string Describe(int status) => (status & 0x7f) == 0
        ? $"exited with code {(status >> 8) & 0xff}"
        : $"was killed by signal {status & 0x7f}{((status & 0x80) != 0 ? " (core dumped)" : "")}";

    /// <summary>
    /// posix_spawnp with an empty signal mask and default dispositions (.NET ignores SIGPIPE; an exec'd program must
    /// not inherit that): the pid, or 0 and the error number.
    /// </summary>
    public static (int Pid, int Errno) Spawn(IReadOnlyList<string> argv, IReadOnlyList<string> environment) => Spawn(argv, environment, []);

    /// <summary>
    /// <see cref="Spawn(IReadOnlyList{string}, IReadOnlyList{string})"/>, with <paramref name="inherited"/>[i] as the
    /// child's descriptor 3 + i (dup2 in the child, which clears close-on-exec on the copy): systemd's LISTEN_FDS
    /// layout. Every source must be above 2 + its count, so that no dup2 overwrites a source still to be copied.
    /// </summary>
    public static (int Pid, int Errno) Spawn(IReadOnlyList<string> argv, IReadOnlyList<string> environment, IReadOnlyList<int> inherited)
    {
        var strings = new List<nint>();
        byte* attributes = (byte*)NativeMemory.AllocZeroed(SpawnAttrBytes);
        byte* mask = (byte*)NativeMemory.AllocZeroed(SigSetBytes);
        byte* defaults = (byte*)NativeMemory.AllocZeroed(SigSetBytes);
        byte** args = (byte**)NativeMemory.AllocZeroed((nuint)(argv.Count + 1), (nuint)sizeof(nint));
        byte** env = (byte**)NativeMemory.AllocZeroed((nuint)(environment.Count + 1), (nuint)sizeof(nint));
        try
        {
            for (int i = 0; i < argv.Count; i++)
            {
                args[i] = Utf8(argv[i], strings);
            }

            for (int i = 0; i < environment.Count; i++)
            {
                env[i] = Utf8(environment[i], strings);
            }

            int error = posix_spawnattr_init(attributes);
            if (error != 0)
            {
                return (0, error);
            }

            try
            {
                error = sigemptyset(mask) | sigfillset(defaults) | sigdelset(defaults, Libc.SIGKILL) | sigdelset(defaults, Libc.SIGSTOP)
                    | posix_spawnattr_setsigmask(attributes, mask) | posix_spawnattr_setsigdefault(attributes, defaults)
                    | posix_spawnattr_setflags(attributes, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
                if (error != 0)
                {
                    return (0, 22); // EINVAL: signal-set calls report no errno
                }

                byte* actions = (byte*)NativeMemory.AllocZeroed(SpawnFileActionsBytes);
                try
                {
                    error = posix_spawn_file_actions_init(actions);
                    if (error != 0)
                    {
                        return (0, error);
                    }

                    for (int i = 0; i < inherited.Count && error == 0; i++)
                    {
                        error = posix_spawn_file_actions_adddup2(actions, inherited[i], 3 + i);
                    }

                    int pid = 0;
                    if (error == 0)
                    {
                        error = posix_spawnp(&pid, args[0], inherited.Count > 0 ? actions : null, attributes, args, env);
                    }

                    _ = posix_spawn_file_actions_destroy(actions);
                    return error == 0 ? (pid, 0) : (0, error);
                }
                finally
                {
                    NativeMemory.Free(actions);
                }
            }
            finally
            {
                _ = posix_spawnattr_destroy(attributes);
            }
        }
        finally
        {
            foreach (nint s in strings)
            {
                NativeMemory.Free((void*)s);
            }

            NativeMemory.Free(args);
            NativeMemory.Free(env);
            NativeMemory.Free(mask);
            NativeMemory.Free(defaults);
            NativeMemory.Free(attributes);
        }
    }

    private static byte* Utf8(string value, List<nint> allocated)
    {
        int length = Encoding.UTF8.GetByteCount(value);
        byte* buffer = (byte*)NativeMemory.Alloc((nuint)length + 1);
        allocated.Add((nint)buffer);
        Encoding.UTF8.GetBytes(value, new Span<byte>(buffer, length));
        buffer[length] = 0;
        return buffer;
    }

    public static string ErrorText(int errno) => Marshal.GetPInvokeErrorMessage(errno);

    /// <summary>True when <paramref name="pid"/> is a child of this process, or a child's child, and so on (/proc).</summary>
    public static bool IsDescendant(int pid)
    {
        int self = getpid();

        // An ancestor can exit and be reaped (by this very process) between two reads of the chain: its children are
        // then this subreaper's, so walk again from the start (a few times at most) rather than call it a stranger.
        for (int attempt = 0; attempt < 4; attempt++)
        {
            bool vanished = false;
            for (int current = pid, depth = 0; current > 1 && depth < 64; depth++)
            {
                int parent = ParentOf(current);
                if (parent == self)
                {
                    return true;
                }

                if (parent == 0)
                {
                    vanished = current != pid;
                    break;
                }

                current = parent;
            }

            if (!vanished)
            {
                return false;
            }
        }

        return false;
    }

    private static int ParentOf(int pid) => ProcessIdentity.TryRead(pid, out _, out _, out int parent) ? parent : 0;

    /// <summary>The pids whose parent is this process (from /proc), for a signal when the main pid is unknown or gone.</summary>
    public static List<int> DirectChildren()
    {
        int self = getpid();
        var children = new List<int>();
        foreach (string directory in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(directory), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int pid))
            {
                continue;
            }

            if (ProcessIdentity.TryRead(pid, out _, out _, out int parent) && parent == self)
            {
                children.Add(pid);
            }
        }

        return children;
    }
}
