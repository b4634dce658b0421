using System.Diagnostics;
using System.Text;

namespace ZeroDowntime.Hosting.NLog.Internal;

/// <summary>
/// The rendered lines of one log file that a process may not write yet: the first <c>maxInMemory</c> in memory, the
/// rest appended to a side file. Nothing is dropped: if the side file cannot be written, lines stay in memory.
/// Not thread-safe: the owning target serializes calls.
/// </summary>
internal sealed class HeldLines(int maxInMemory, string spillPath, Encoding encoding) : IDisposable
{
    private readonly List<string> _memory = [];
    private readonly long _started = Stopwatch.GetTimestamp();
    private FileStream? _spill;
    private bool _spillFailed;

    /// <summary>Lines held so far (in memory and in the side file).</summary>
    public int Count => _memory.Count + Spilled;

    /// <summary>Lines that went to the side file.</summary>
    public int Spilled { get; private set; }

    /// <summary>Time since holding started.</summary>
    public TimeSpan Age => Stopwatch.GetElapsedTime(_started);

    /// <summary>Holds one rendered line (with its line ending).</summary>
    public void Add(string text)
    {
        if (_memory.Count < maxInMemory || _spillFailed)
        {
            _memory.Add(text);
            return;
        }

        try
        {
            if (_spill is null)
            {
                Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(spillPath))!);
                _spill = new FileStream(spillPath, FileMode.Create, FileAccess.ReadWrite, FileShare.Read | FileShare.Delete);
            }

            _spill.Write(encoding.GetBytes(text));
            Spilled++;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            _spillFailed = true;
            _memory.Add(text);
        }
    }

    /// <summary>Appends every held line, in the order they came, to <paramref name="path"/>; then forgets them.</summary>
    public void WriteTo(string path)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        using (var destination = new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete, 64 * 1024))
        {
            // Memory holds the oldest lines: the side file starts only once memory is full. Lines past the bound are
            // in memory only if the side file failed, and then they are younger than every spilled line.
            int firstAfterSpill = Math.Min(maxInMemory, _memory.Count);
            for (int i = 0; i < firstAfterSpill; i++)
            {
                destination.Write(encoding.GetBytes(_memory[i]));
            }

            if (_spill is not null)
            {
                _spill.Position = 0;
                _spill.CopyTo(destination);
            }

            for (int i = firstAfterSpill; i < _memory.Count; i++)
            {
                destination.Write(encoding.GetBytes(_memory[i]));
            }
        }

        Clear();
    }

    public void Dispose() => Clear();

    private void Clear()
    {
        _memory.Clear();
        Spilled = 0;
        if (_spill is not null)
        {
            _spill.Dispose();
            _spill = null;
            try
            {
                File.Delete(spillPath);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
            }
        }
    }
}
