using ZeroDowntime.Cli.Interop;
using ZeroDowntime.Hosting.Interop;

namespace ZeroDowntime.Cli;

/// <summary>
/// The fd store of <c>zerodowntime run</c>, the service manager's side of sd_pid_notify_with_fds(3) as systemd implements
/// it: <c>FDSTORE=1</c> with <c>FDNAME=</c> keeps the descriptors that came with the datagram (one copy per socket:
/// the same socket stored again, by a successor after a handoff, is recognised by its inode and closed), and
/// <c>FDSTOREREMOVE=1</c> with <c>FDNAME=</c> closes every kept descriptor of that name. The app's library stores each
/// listener it serves; after a crash the supervisor starts the app again with them as <c>LISTEN_FDS</c>. Not
/// thread-safe: the supervisor calls it under its lock.
/// </summary>
internal sealed class ListenerStore : IDisposable
{
    /// <summary>The most descriptors kept (the child's <c>$FDSTORE</c>): more are closed at once, as systemd does.</summary>
    public const int Capacity = 48;

    /// <summary>
    /// Kept descriptors are moved to this number or above, so that copying them to 3, 4, ... in a child never
    /// overwrites one still to be copied (<see cref="Posix.Spawn(IReadOnlyList{string}, IReadOnlyList{string}, IReadOnlyList{int})"/>).
    /// </summary>
    private const int LowestKeptFd = 64;

    private const int FDupFdCloExec = 1030;
    private const int AtEmptyPath = 0x1000;

    private readonly List<Kept> _kept = [];

    /// <summary>How many descriptors are kept.</summary>
    public int Count => _kept.Count;

    /// <summary>
    /// Handles the fd-store lines of one datagram and takes ownership of <paramref name="fds"/>: each is kept or closed.
    /// Returns what happened, for the log, or null when the datagram was not about the store.
    /// </summary>
    public string? Handle(IReadOnlyList<string> lines, List<int> fds, bool accepting)
    {
        bool store = lines.Contains("FDSTORE=1");
        bool remove = lines.Contains("FDSTOREREMOVE=1");
        string name = lines.LastOrDefault(l => l.StartsWith("FDNAME=", StringComparison.Ordinal)) is { } line ? line[7..] : "stored";
        string? result = null;
        if (remove)
        {
            int removed = 0;
            foreach (var kept in _kept.Where(k => k.Name == name).ToArray())
            {
                Libc.close(kept.Fd);
                _kept.Remove(kept);
                removed++;
            }

            result = $"FDSTOREREMOVE {name}: closed {removed} kept socket(s), {_kept.Count} left";
        }

        if (store && fds.Count > 0)
        {
            int added = 0;
            int known = 0;
            foreach (int fd in fds)
            {
                var identity = Identity(fd);
                if (!accepting || identity is null || _kept.Count >= Capacity)
                {
                    Libc.close(fd);
                    continue;
                }

                if (_kept.Any(k => k.Identity == identity))
                {
                    known++;
                    Libc.close(fd);
                    continue;
                }

                int moved = Libc.fcntl(fd, FDupFdCloExec, LowestKeptFd);
                Libc.close(fd);
                if (moved >= 0)
                {
                    _kept.Add(new Kept(name, moved, identity.Value));
                    added++;
                }
            }

            result = accepting
                ? $"FDSTORE {name}: kept {added} new socket(s){(known > 0 ? $", {known} kept already" : "")}, {_kept.Count} in all"
                : $"FDSTORE {name}: closed (stopping)";
        }
        else
        {
            FdPassing.CloseAll(fds);
        }

        fds.Clear();
        return result;
    }

    /// <summary>The descriptors in the order they were stored, and their names as <c>LISTEN_FDNAMES</c> says them.</summary>
    public (IReadOnlyList<int> Fds, string Names) ForRestart() =>
        (_kept.Select(k => k.Fd).ToArray(), string.Join(':', _kept.Select(k => k.Name)));

    /// <summary>Closes every kept descriptor: nobody will serve them, so the kernel refuses their clients now.</summary>
    public void CloseAll()
    {
        foreach (var kept in _kept)
        {
            Libc.close(kept.Fd);
        }

        _kept.Clear();
    }

    public void Dispose() => CloseAll();

    /// <summary>The socket's device and inode (statx on the descriptor), or null when it is no socket.</summary>
    private static unsafe (uint Major, uint Minor, ulong Inode)? Identity(int fd)
    {
        Libc.StatX stat;
        if (Libc.statx(fd, "", AtEmptyPath, Libc.STATX_BASIC_STATS, &stat) != 0 || (stat.Mode & Libc.S_IFMT) != Libc.S_IFSOCK)
        {
            return null;
        }

        return (stat.DevMajor, stat.DevMinor, stat.Inode);
    }

    private readonly record struct Kept(string Name, int Fd, (uint Major, uint Minor, ulong Inode) Identity);
}
