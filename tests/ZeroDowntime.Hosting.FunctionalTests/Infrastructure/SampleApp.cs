using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Reflection;
using System.Text;
using Xunit.Abstractions;

namespace ZeroDowntime.Hosting.Tests.Infrastructure;

/// <summary>
/// One real OS process of the sample app (samples/WebApi). Its output is captured line by line: tests await
/// log events (the library's stable event ids) instead of sleeping, and the output goes to the test log.
/// </summary>
internal sealed class SampleApp : IAsyncDisposable
{
    private static readonly TimeSpan DefaultWait = TimeSpan.FromSeconds(30);
    private readonly Process _process;
    private readonly ITestOutputHelper? _output;
    private readonly string _name;
    private readonly ConcurrentQueue<string> _lines = new();
    private readonly Lock _waitersLock = new();
    private readonly List<(Func<string, bool> Match, TaskCompletionSource<string> Found)> _waiters = [];
    private readonly TaskCompletionSource _exited = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _outputClosed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _closedStreams;
    private readonly Stopwatch _sinceStart;

    private SampleApp(Process process, string name, ITestOutputHelper? output, Stopwatch sinceStart)
    {
        _process = process;
        _name = name;
        _output = output;
        _sinceStart = sinceStart;
    }

    public int Pid => _process.Id;

    public string Name => _name;

    /// <summary>Time since this process was started.</summary>
    public TimeSpan Age => _sinceStart.Elapsed;

    public bool HasExited => _exited.Task.IsCompleted;

    public int ExitCode => _process.ExitCode;

    public IReadOnlyCollection<string> Lines => _lines.ToArray();

    public static string SampleDirectory { get; } = FindSampleDirectory();

    public static SampleApp Start(string name, SampleConfig config, ITestOutputHelper? output)
    {
        string sampleDirectory = config.SampleDirectory ?? SampleDirectory;
        var info = new ProcessStartInfo(config.Launcher.Count > 0 ? config.Launcher[0] : "dotnet")
        {
            WorkingDirectory = sampleDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        if (config.Launcher.Count > 0)
        {
            foreach (string arg in config.Launcher.Skip(1))
            {
                info.ArgumentList.Add(arg);
            }

            info.ArgumentList.Add("dotnet");
        }

        info.ArgumentList.Add(config.RelativeEntryPoint ? "WebApi.dll" : Path.Combine(sampleDirectory, "WebApi.dll"));
        foreach (string arg in config.Arguments)
        {
            info.ArgumentList.Add(arg);
        }

        info.Environment["DOTNET_ENVIRONMENT"] = "Production";
        info.Environment["ASPNETCORE_ENVIRONMENT"] = "Production";
        info.Environment["Logging__Console__FormatterName"] = "simple";
        info.Environment["Logging__Console__FormatterOptions__SingleLine"] = "true";
        info.Environment["Logging__Console__FormatterOptions__TimestampFormat"] = "HH:mm:ss.fff ";
        info.Environment["Logging__LogLevel__Microsoft.AspNetCore"] = "Warning";
        info.Environment["ZeroDowntime__SocketPath"] = config.SocketPath;
        info.Environment["Logs__Directory"] = Path.Combine(Path.GetDirectoryName(config.SocketPath)!, "logs");
        info.Environment.Remove("ASPNETCORE_URLS");
        if (config.RelativeEntryPoint)
        {
            // As a shell started in /srv/app/current names it: the successor launcher re-resolves it from $PWD.
            info.Environment["PWD"] = sampleDirectory;
        }

        return Launch(name, config, output, info);
    }

    /// <summary>
    /// The folder the Native AOT build of the sample is published to (samples/WebApi/bin/aot, beside the JIT build);
    /// ProcessLevel/AotTests publishes it there once per test run.
    /// </summary>
    public static string AotDirectory { get; } = Path.GetFullPath(Path.Combine(SampleDirectory, "..", "..", "aot"));

    /// <summary>The Native AOT executable of the sample in <see cref="AotDirectory"/>.</summary>
    public static string AotExecutable => Path.Combine(AotDirectory, "WebApi");

    /// <summary>
    /// Starts the Native AOT build of the sample (<see cref="AotExecutable"/>, which must have been published) with the
    /// same arguments, environment and working directory conventions as <see cref="Start"/>: same contract, another
    /// compiler.
    /// </summary>
    public static SampleApp StartAot(string name, SampleConfig config, ITestOutputHelper? output)
    {
        if (!File.Exists(AotExecutable))
        {
            throw new InvalidOperationException($"The AOT sample is not published: {AotExecutable} is missing.");
        }

        var info = new ProcessStartInfo(AotExecutable)
        {
            WorkingDirectory = AotDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string arg in config.Arguments)
        {
            info.ArgumentList.Add(arg);
        }

        info.Environment["DOTNET_ENVIRONMENT"] = "Production";
        info.Environment["ASPNETCORE_ENVIRONMENT"] = "Production";
        info.Environment["Logging__Console__FormatterName"] = "simple";
        info.Environment["Logging__Console__FormatterOptions__SingleLine"] = "true";
        info.Environment["Logging__Console__FormatterOptions__TimestampFormat"] = "HH:mm:ss.fff ";
        info.Environment["Logging__LogLevel__Microsoft.AspNetCore"] = "Warning";
        info.Environment["ZeroDowntime__SocketPath"] = config.SocketPath;
        info.Environment["Logs__Directory"] = Path.Combine(Path.GetDirectoryName(config.SocketPath)!, "logs");
        info.Environment.Remove("ASPNETCORE_URLS");
        return Launch(name, config, output, info);
    }

    /// <summary>Applies the test's own environment on top, starts the process and reads its output line by line.</summary>
    private static SampleApp Launch(string name, SampleConfig config, ITestOutputHelper? output, ProcessStartInfo info)
    {
        foreach (var (key, value) in config.Environment)
        {
            info.Environment[key] = value;
        }

        var stopwatch = Stopwatch.StartNew();
        var process = new Process { StartInfo = info, EnableRaisingEvents = true };
        var app = new SampleApp(process, name, output, stopwatch);
        process.OutputDataReceived += (_, e) => app.OnLine(e.Data);
        process.ErrorDataReceived += (_, e) => app.OnLine(e.Data is null ? null : "stderr: " + e.Data);
        process.Exited += (_, _) => app._exited.TrySetResult();
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return app;
    }

    /// <summary>Starts the JIT build (<see cref="Start"/>) or the Native AOT build (<see cref="StartAot"/>).</summary>
    public static SampleApp Start(string name, SampleConfig config, ITestOutputHelper? output, bool aot) =>
        aot ? StartAot(name, config, output) : Start(name, config, output);

    /// <summary>Waits for a line from the library's log with this event id (see ZeroDowntimeLog).</summary>
    public Task<string> WaitForEventAsync(int eventId, TimeSpan? timeout = null) =>
        WaitForLineAsync(line => line.Contains($"ZeroDowntime.Hosting.", StringComparison.Ordinal) && line.Contains($"[{eventId}]", StringComparison.Ordinal),
            $"event {eventId}", timeout);

    /// <summary>Lines logged so far: a mark for <see cref="WaitForEventCountAsync"/> and friends.</summary>
    public int LineCount => _lines.Count;

    /// <summary>True for a line of the library's log with this event id.</summary>
    public static bool IsEvent(string line, int eventId) =>
        line.Contains("ZeroDowntime.Hosting.", StringComparison.Ordinal) && line.Contains($"[{eventId}]", StringComparison.Ordinal);

    /// <summary>How many lines with this event id the process has logged so far.</summary>
    public int CountEvent(int eventId) => _lines.Count(l => IsEvent(l, eventId));

    /// <summary>
    /// Waits for the <paramref name="count"/>-th line with this event id (an event that a process logs more than
    /// once, such as 13 at first start and again after a revocation).
    /// </summary>
    public Task<string> WaitForEventCountAsync(int eventId, int count, TimeSpan? timeout = null)
    {
        // Every line is offered to the predicate exactly once and in order (existing ones, then new ones under the lock).
        int seen = 0;
        return WaitForLineAsync(line => IsEvent(line, eventId) && ++seen >= count, $"event {eventId} for the {count}. time", timeout);
    }

    /// <summary>
    /// Waits for the <paramref name="count"/>-th line with this event id in this process's output, even after it
    /// exited: a successor it started itself (an upgrade) writes to the same pipes until the output closes.
    /// </summary>
    public Task<string> WaitForOutputEventAsync(int eventId, int count, TimeSpan timeout)
    {
        int seen = 0;
        return WaitForOutputLineAsync(line => IsEvent(line, eventId) && ++seen >= count, $"event {eventId} for the {count}. time", timeout);
    }

    /// <summary>The first line, logged before or after the call, that matches (each line is offered once, in order).</summary>
    private Task<string> Watch(Func<string, bool> match)
    {
        lock (_waitersLock)
        {
            if (_lines.FirstOrDefault(match) is { } existing)
            {
                return Task.FromResult(existing);
            }

            var found = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
            _waiters.Add((match, found));
            return found.Task;
        }
    }

    public async Task<string> WaitForLineAsync(Func<string, bool> match, string description, TimeSpan? timeout = null)
    {
        var found = Watch(match);
        if (found.IsCompleted)
        {
            return await found;
        }

        var limit = timeout ?? DefaultWait;
        var winner = await Task.WhenAny(found, _exited.Task, Task.Delay(limit));
        if (winner == found)
        {
            return await found;
        }

        // The process may have logged the line just before exiting: give the output pipe a moment to drain.
        if (winner == _exited.Task && await Task.WhenAny(found, Task.Delay(TimeSpan.FromSeconds(2))) == found)
        {
            return await found;
        }

        throw new TimeoutException(winner == _exited.Task
            ? $"{_name} (pid {Pid}) exited with code {_process.ExitCode} before logging {description}."
            : $"{_name} (pid {Pid}) did not log {description} within {limit.TotalSeconds:0} s.");
    }

    /// <summary>
    /// Waits for a line on this process's output pipes, which successors it started inherit: unlike
    /// <see cref="WaitForLineAsync"/>, this process's exit ends the wait only when no process holds the pipes any more.
    /// </summary>
    public async Task<string> WaitForOutputLineAsync(Func<string, bool> match, string description, TimeSpan? timeout = null)
    {
        var found = Watch(match);
        if (found.IsCompleted)
        {
            return await found;
        }

        var limit = timeout ?? DefaultWait;
        var winner = await Task.WhenAny(found, _outputClosed.Task, Task.Delay(limit));
        return winner == found || found.IsCompleted
            ? await found
            : throw new TimeoutException(winner == _outputClosed.Task
                ? $"The output of {_name} (pid {Pid}) and its successors ended before {description}."
                : $"{_name} (pid {Pid}) and its successors did not log {description} within {limit.TotalSeconds:0} s.");
    }

    public async Task<int> WaitForExitAsync(TimeSpan? timeout = null)
    {
        var limit = timeout ?? DefaultWait;
        if (await Task.WhenAny(_exited.Task, Task.Delay(limit)) != _exited.Task)
        {
            throw new TimeoutException($"{_name} (pid {Pid}) did not exit within {limit.TotalSeconds:0} s.");
        }

        // Let the output readers finish: end of stream on both pipes, unless a successor this process started itself
        // (an upgrade) holds them open, in which case its lines keep arriving here and the wait ends at its bound.
        await Task.WhenAny(_outputClosed.Task, Task.Delay(TimeSpan.FromSeconds(2)));
        return _process.ExitCode;
    }

    public void Signal(int signal) => Posix.Kill(Pid, signal);

    public async ValueTask DisposeAsync()
    {
        if (!HasExited)
        {
            try
            {
                _process.Kill(entireProcessTree: true);
                await WaitForExitAsync(TimeSpan.FromSeconds(10));
            }
            catch (Exception ex) when (ex is InvalidOperationException or TimeoutException or System.ComponentModel.Win32Exception)
            {
            }
        }

        _process.Dispose();
    }

    private void OnLine(string? line)
    {
        if (line is null)
        {
            if (Interlocked.Increment(ref _closedStreams) == 2)
            {
                _outputClosed.TrySetResult();
            }

            return;
        }

        string stamped = $"[{_sinceStart.Elapsed.TotalSeconds,7:0.000}s {_name} {SafePid()}] {line}";
        try
        {
            _output?.WriteLine(stamped);
        }
        catch (InvalidOperationException)
        {
            // The test has finished; nobody reads its output any more.
        }

        lock (_waitersLock)
        {
            _lines.Enqueue(line);
            for (int i = _waiters.Count - 1; i >= 0; i--)
            {
                if (_waiters[i].Match(line))
                {
                    _waiters[i].Found.TrySetResult(line);
                    _waiters.RemoveAt(i);
                }
            }
        }
    }

    private string SafePid()
    {
        try
        {
            return _process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture);
        }
        catch (InvalidOperationException)
        {
            return "?";
        }
    }

    private static string FindSampleDirectory()
    {
        string configuration = typeof(SampleApp).Assembly.GetCustomAttribute<AssemblyConfigurationAttribute>()?.Configuration ?? "Debug";
        var directory = new DirectoryInfo(AppContext.BaseDirectory);
        while (directory is not null && !File.Exists(Path.Combine(directory.FullName, "Hosting.sln")))
        {
            directory = directory.Parent;
        }

        if (directory is null)
        {
            throw new InvalidOperationException("Cannot find the repository root (Hosting.sln) above " + AppContext.BaseDirectory);
        }

        string sample = Path.Combine(directory.FullName, "samples", "WebApi", "bin", configuration, "net10.0");
        return File.Exists(Path.Combine(sample, "WebApi.dll"))
            ? sample
            : throw new InvalidOperationException($"The sample is not built: {sample}/WebApi.dll is missing.");
    }
}

/// <summary>How to start one sample process.</summary>
internal sealed record SampleConfig(string SocketPath, IReadOnlyList<string> Arguments)
{
    public Dictionary<string, string> Environment { get; init; } = [];

    /// <summary>Another build of the sample (an earlier release, for protocol compatibility); null: this one.</summary>
    public string? SampleDirectory { get; init; }

    /// <summary>
    /// Start as <c>dotnet WebApi.dll</c> in the sample directory with <c>PWD</c> set to it (a release started in
    /// <c>/srv/app/current</c>), not with the dll's absolute path.
    /// </summary>
    public bool RelativeEntryPoint { get; init; }

    /// <summary>A command that runs <c>dotnet WebApi.dll ...</c> (its first element is the program), e.g. a supervisor.</summary>
    public IReadOnlyList<string> Launcher { get; init; } = [];

    public SampleConfig With(string key, string value)
    {
        var environment = new Dictionary<string, string>(Environment) { [key] = value };
        return this with { Environment = environment };
    }
}

/// <summary>A fresh, short socket path and free ports for one test.</summary>
internal sealed class TestScope : IDisposable
{
    public TestScope()
    {
        Directory = Path.Combine(Path.GetTempPath(), "zdt-" + Guid.NewGuid().ToString("N")[..10]);
        System.IO.Directory.CreateDirectory(Directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        SocketPath = Path.Combine(Directory, "handoff.sock");
        Port = FreePort();
    }

    public string Directory { get; }

    public string SocketPath { get; }

    public int Port { get; }

    public Uri BaseUri => new($"http://127.0.0.1:{Port}");

    public SampleConfig Config(params string[] extraArguments) =>
        new(SocketPath, ["--urls", $"http://127.0.0.1:{Port}", .. extraArguments]);

    /// <summary>A port that no other test of this run gets and no client connection can occupy (see <see cref="Ports"/>).</summary>
    public static int FreePort() => Ports.Next();

    public void Dispose()
    {
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}

internal static partial class Posix
{
    public const int SIGHUP = 1;
    public const int SIGKILL = 9;
    public const int SIGTERM = 15;
    public const int SIGSTOP = 19;
    public const int SIGCONT = 18;

    [System.Runtime.InteropServices.LibraryImport("libc", SetLastError = true)]
    private static partial int kill(int pid, int signal);

    public static void Kill(int pid, int signal)
    {
        if (kill(pid, signal) != 0)
        {
            throw new InvalidOperationException($"kill({pid}, {signal}) failed: errno {System.Runtime.InteropServices.Marshal.GetLastPInvokeError()}");
        }
    }

    public static string Describe(Exception ex)
    {
        var text = new StringBuilder(ex.GetType().Name).Append(": ").Append(ex.Message);
        for (var inner = ex.InnerException; inner is not null; inner = inner.InnerException)
        {
            text.Append(" -> ").Append(inner.GetType().Name).Append(": ").Append(inner.Message);
        }

        return text.ToString();
    }
}
