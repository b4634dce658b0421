using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Reflection;
using Microsoft.Extensions.Logging;
using Xunit.Abstractions;
using ZeroDowntime.Hosting.Tests.Infrastructure;

namespace ZeroDowntime.Hosting.FunctionalTests.Infrastructure;

/// <summary>
/// One real OS process of the sample app (samples/WebApi). It logs to the console as JSON (<c>Logs:ConsoleJson</c>),
/// one <see cref="LogLine"/> per line: tests await log events by id and name (<see cref="Events"/>) instead of
/// sleeping, and the output goes to the test log as readable text.
/// </summary>
internal sealed class SampleApp : IAsyncDisposable
{
    private static readonly TimeSpan DefaultWait = TimeSpan.FromSeconds(30);
    private readonly Process _process;
    private readonly ITestOutputHelper? _output;
    private readonly string _name;
    private readonly ConcurrentQueue<LogLine> _lines = new();
    private readonly Lock _waitersLock = new();
    private readonly List<(Func<LogLine, bool> Match, TaskCompletionSource<LogLine> Found)> _waiters = [];
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

    /// <summary>The output so far as readable text (a log line as the simple console formatter writes it).</summary>
    public IReadOnlyCollection<string> Lines => _lines.Select(l => l.Text).ToArray();

    /// <summary>The output so far, parsed.</summary>
    public IReadOnlyCollection<LogLine> Entries => _lines.ToArray();

    /// <summary>The lines of this event logged so far.</summary>
    public IReadOnlyList<LogLine> EventsOf(EventId expected) => _lines.Where(l => l.Is(expected)).ToList();

    public static string SampleDirectory { get; } = FindSampleDirectory();

    /// <summary>The repository's root (the folder of Hosting.sln).</summary>
    public static string RepositoryRoot { get; } = FindRepositoryRoot();

    /// <summary>samples/WebApi, the sample's project folder.</summary>
    public static string ProjectDirectory => Path.Combine(RepositoryRoot, "samples", "WebApi");

    public static SampleApp Start(string name, SampleConfig config, ITestOutputHelper? output)
    {
        string sampleDirectory = config.SampleDirectory ?? SampleDirectory;
        var info = new ProcessStartInfo(config.Launcher.Count > 0 ? config.Launcher[0] : "dotnet")
        {
            WorkingDirectory = config.WorkingDirectory ?? sampleDirectory,
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
        info.Environment["Logs__ConsoleJson"] = "true";
        if (config.SampleDirectory is not null)
        {
            // A sample built from an earlier commit (ProtocolCompatibilityTests) has no Logs:ConsoleJson: it logs JSON
            // through Microsoft's formatter, which carries the event id only (LogLine takes the name from Events).
            info.Environment["Logging__Console__FormatterName"] = "json";
        }

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
    public static string AotDirectory { get; } = Path.Combine(RepositoryRoot, "samples", "WebApi", "bin", "aot");

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
        info.Environment["Logs__ConsoleJson"] = "true";
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

    /// <summary>Waits for a line of this event (its id and name, see <see cref="Events"/>).</summary>
    public Task<LogLine> WaitForEventAsync(EventId expected, TimeSpan? timeout = null) =>
        WaitForEntryAsync(line => line.Is(expected), Describe(expected), timeout);

    /// <summary>Lines logged so far: a mark for <see cref="WaitForEventCountAsync"/> and friends.</summary>
    public int LineCount => _lines.Count;

    /// <summary>How many lines of this event the process has logged so far.</summary>
    public int CountEvent(EventId expected) => _lines.Count(l => l.Is(expected));

    /// <summary>
    /// Waits for the <paramref name="count"/>-th line of this event (an event that a process logs more than once,
    /// such as ServingHandoffSocket at first start and again after a revocation).
    /// </summary>
    public Task<LogLine> WaitForEventCountAsync(EventId expected, int count, TimeSpan? timeout = null)
    {
        // Every line is offered to the predicate exactly once and in order (existing ones, then new ones under the lock).
        int seen = 0;
        return WaitForEntryAsync(line => line.Is(expected) && ++seen >= count, $"{Describe(expected)} for the {count}. time", timeout);
    }

    /// <summary>
    /// Waits for the <paramref name="count"/>-th line of this event in this process's output, even after it exited: a
    /// successor it started itself (an upgrade) writes to the same pipes until the output closes.
    /// </summary>
    public Task<LogLine> WaitForOutputEventAsync(EventId expected, int count, TimeSpan timeout)
    {
        int seen = 0;
        return WaitForOutputEntryAsync(line => line.Is(expected) && ++seen >= count, $"{Describe(expected)} for the {count}. time", timeout);
    }

    private static string Describe(EventId expected) => $"event {expected.Id} {expected.Name}";

    /// <summary>The first line, logged before or after the call, that matches (each line is offered once, in order).</summary>
    private Task<LogLine> Watch(Func<LogLine, bool> match)
    {
        lock (_waitersLock)
        {
            if (_lines.FirstOrDefault(match) is { } existing)
            {
                return Task.FromResult(existing);
            }

            var found = new TaskCompletionSource<LogLine>(TaskCreationOptions.RunContinuationsAsynchronously);
            _waiters.Add((match, found));
            return found.Task;
        }
    }

    /// <summary>Waits for a line whose readable text matches (output that is not an event, such as a crash).</summary>
    public async Task<string> WaitForLineAsync(Func<string, bool> match, string description, TimeSpan? timeout = null) =>
        (await WaitForEntryAsync(line => match(line.Text), description, timeout)).Text;

    public async Task<LogLine> WaitForEntryAsync(Func<LogLine, bool> match, string description, TimeSpan? timeout = null)
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
    public async Task<string> WaitForOutputLineAsync(Func<string, bool> match, string description, TimeSpan? timeout = null) =>
        (await WaitForOutputEntryAsync(line => match(line.Text), description, timeout)).Text;

    public async Task<LogLine> WaitForOutputEntryAsync(Func<LogLine, bool> match, string description, TimeSpan? timeout = null)
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

        var entry = LogLine.Parse(line);
        string stamped = $"[{_sinceStart.Elapsed.TotalSeconds,7:0.000}s {_name} {SafePid()}] {entry.Text}";
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
            _lines.Enqueue(entry);
            for (int i = _waiters.Count - 1; i >= 0; i--)
            {
                if (_waiters[i].Match(entry))
                {
                    _waiters[i].Found.TrySetResult(entry);
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
        // The test build of the sample (ZeroDowntimeTestBuild=true: the fault seam compiled in), built by this project.
        string sample = Path.Combine(FindRepositoryRoot(), "samples", "WebApi", "bin", "testbuild", configuration, "net10.0");
        return File.Exists(Path.Combine(sample, "WebApi.dll"))
            ? sample
            : throw new InvalidOperationException($"The sample is not built: {sample}/WebApi.dll is missing.");
    }

    private static string FindRepositoryRoot()
    {
        var directory = new DirectoryInfo(AppContext.BaseDirectory);
        while (directory is not null && !File.Exists(Path.Combine(directory.FullName, "Hosting.sln")))
        {
            directory = directory.Parent;
        }

        if (directory is null)
        {
            throw new InvalidOperationException("Cannot find the repository root (Hosting.sln) above " + AppContext.BaseDirectory);
        }

        return directory.FullName;
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

    /// <summary>
    /// The process's working directory, and so its content root (where it reads appsettings.json); null: the sample
    /// directory. Another one starts the sample by its path from elsewhere (<c>dotnet /srv/app/release-2/WebApi.dll</c>).
    /// </summary>
    public string? WorkingDirectory { get; init; }

    /// <summary>A command that runs <c>dotnet WebApi.dll ...</c> (its first element is the program), e.g. a supervisor.</summary>
    public IReadOnlyList<string> Launcher { get; init; } = [];

    /// <summary>
    /// Pauses the sample at a step of the handoff (<c>ZERODOWNTIME_FAULT_PAUSE</c>: after-receive, before-ready,
    /// after-ready, in-release...) until it gets SIGCONT or is killed; event 90 says it paused.
    /// </summary>
    public SampleConfig WithFaultPause(string step) => With("ZERODOWNTIME_FAULT_PAUSE", step);

    public SampleConfig With(string key, string value)
    {
        var environment = new Dictionary<string, string>(Environment) { [key] = value };
        return this with { Environment = environment };
    }
}

/// <summary>The sample's configuration for one <see cref="TestScope"/>: its socket path and port.</summary>
internal static class TestScopeConfig
{
    public static SampleConfig Config(this TestScope scope, params string[] extraArguments) =>
        new(scope.SocketPath, ["--urls", $"http://127.0.0.1:{scope.Port}", .. extraArguments]);
}
