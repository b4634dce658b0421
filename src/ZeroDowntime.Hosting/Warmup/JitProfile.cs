using System.Runtime;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;
using ZeroDowntime.Hosting.Interop;
using ZeroDowntime.Hosting.Logging;

namespace ZeroDowntime.Hosting.Warmup;

/// <summary>
/// The runtime's multi-core JIT (<see cref="ProfileOptimization"/>) between the generations of one app: every process
/// records which methods it compiled, over its whole life, into <c>&lt;SocketPath&gt;.jitprofile</c> (the runtime writes
/// it when the process exits), and the next process to start reads the last one written and compiles those methods
/// ahead on a background thread (at nice 19, so that it takes only what the serving predecessor leaves idle) while it
/// starts. A successor is started while its predecessor serves, so a profile of an earlier generation of the same app
/// is there from the second successor on: the code that a successor would otherwise compile only after Ready (the
/// library's own commit, the first real connections, and later the drain) is compiled during its start-up instead. The
/// warm-up requests cover the request path; this covers what no request runs. Nothing under Native AOT (nothing is
/// compiled); the runtime itself uses it only with two or more CPUs.
/// </summary>
internal static class JitProfile
{
    private static int s_started;

    /// <summary>Where the profile of the app served at <paramref name="socketPath"/> is kept.</summary>
    public static string PathFor(string socketPath) => socketPath + ".jitprofile";

    /// <summary>
    /// Starts recording (and playing the earlier profile back), once per process. The directory is the handoff socket's,
    /// which <see cref="Handoff.SocketPathGuard"/> has checked: no other user can write to it. A file at the name that is
    /// not this user's regular file (a symlink, another owner's file) is left alone, and no profile is used.
    /// </summary>
    public static void Start(string socketPath, ILogger logger)
    {
        if (!RuntimeFeature.IsDynamicCodeSupported)
        {
            return; // Native AOT: nothing is compiled at run time
        }

        string path = PathFor(socketPath);
        var found = Inspect(path);
        if (!found.Usable)
        {
            logger.JitProfileRefused(path, found.Owner);
            return;
        }

        if (Interlocked.Exchange(ref s_started, 1) == 1)
        {
            return; // one profile per process, as the runtime allows
        }

        StartAtLowestPriority(path);
        if (found.Bytes > 0)
        {
            logger.JitProfilePlayed(path, found.Bytes, Environment.ProcessorCount);
        }
        else
        {
            logger.JitProfileRecording(path);
        }
    }

    /// <summary>
    /// Starts the profile from a thread of its own at nice 19, which then ends. The runtime's thread that compiles the
    /// earlier profile ahead is created by that call and inherits its nice value (Linux copies it to every new thread),
    /// so it takes only CPU that the serving predecessor leaves idle: on two cores, at normal priority, it took the
    /// predecessor's second core while the successor started. Raising one's own nice value needs no privilege; no
    /// thread that serves requests is touched, and the one that is ends with its work (what it has not compiled by
    /// then is compiled on first use, as without a profile).
    /// </summary>
    private static void StartAtLowestPriority(string path)
    {
        var starter = new Thread(() =>
        {
            if (OperatingSystem.IsLinux())
            {
                _ = Libc.setpriority(Libc.PRIO_PROCESS, Libc.gettid(), LowestPriority);
            }

            ProfileOptimization.SetProfileRoot(Path.GetDirectoryName(path)!);
            ProfileOptimization.StartProfile(Path.GetFileName(path));
        })
        {
            IsBackground = true,
            Name = "ZeroDowntime JIT profile",
        };
        starter.Start();
        starter.Join();
    }

    private const int LowestPriority = 19;

    /// <summary>
    /// What is at <paramref name="path"/>: nothing (usable, 0 bytes), this user's regular file (usable, its size), or
    /// something else (a symlink, a directory, another user's file: not usable, with its owner).
    /// </summary>
    internal static (bool Usable, long Bytes, uint Owner) Inspect(string path)
    {
        if (!OperatingSystem.IsLinux() || Libc.TryStat(path) is not { } file)
        {
            return (true, 0, 0);
        }

        bool usable = (file.Mode & Libc.S_IFMT) == Libc.S_IFREG && file.Uid == Libc.geteuid();
        return (usable, usable ? (long)file.Size : 0, file.Uid);
    }
}
