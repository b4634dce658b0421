using System.Collections.Concurrent;

namespace ZeroDowntime.Hosting.NLog.Internal;

/// <summary>
/// Held lines of wrappers that NLog closed while they held (a configuration reload, NLog's shutdown): they wait here
/// for the next configuration's wrapper of the same path, or for the next change of ownership, which writes them with
/// the others. Lines arrive on NLog's path under a target's lock only, so <see cref="Add"/> never blocks (see the lock
/// discipline on <see cref="LogFileHandoff"/>); the rest is called under the handoff's lock.
/// </summary>
internal sealed class HeldLineCarryOver
{
    private readonly ConcurrentQueue<(string Path, HeldLines Held)> _arrived = new();
    private readonly List<(string Path, HeldLines Held)> _waiting = [];

    /// <summary>Keeps the held lines of a closed wrapper of <paramref name="path"/>. Any thread; lock-free.</summary>
    public void Add(string path, HeldLines held) => _arrived.Enqueue((path, held));

    /// <summary>The first lines carried for <paramref name="path"/>, or null. Under the handoff's lock.</summary>
    public HeldLines? Take(string path)
    {
        Collect();
        int index = _waiting.FindIndex(c => string.Equals(c.Path, path, StringComparison.Ordinal));
        if (index < 0)
        {
            return null;
        }

        var held = _waiting[index].Held;
        _waiting.RemoveAt(index);
        return held;
    }

    /// <summary>Every carried set of lines, in the order they came. Under the handoff's lock.</summary>
    public List<(string Path, HeldLines Held)> TakeAll()
    {
        Collect();
        var all = _waiting.ToList();
        _waiting.Clear();
        return all;
    }

    private void Collect()
    {
        while (_arrived.TryDequeue(out var carried))
        {
            _waiting.Add(carried);
        }
    }
}
