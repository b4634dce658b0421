using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.Logging;
using Xunit.Abstractions;
using ZeroDowntime.Hosting.Tests.Infrastructure;

namespace ZeroDowntime.Hosting.FunctionalTests;

/// <summary>
/// One process of the published new-user app, started like an operator would: <c>cd release-1 &amp;&amp; dotnet ShopApp.dll</c>,
/// or from <c>workingDirectory</c> by its path (<c>dotnet /.../release-2/ShopApp.dll</c>). Its port is in its appsettings.json.
/// </summary>
internal sealed class PublishedApp : IAsyncDisposable
{
    private readonly Process _process;
    private readonly string _name;
    private readonly ITestOutputHelper _output;
    private readonly Stopwatch _age = Stopwatch.StartNew();
    private readonly Lock _lock = new();
    private readonly List<string> _lines = [];
    private readonly List<(Func<string, bool> Match, TaskCompletionSource<string> Found)> _waiters = [];
    private readonly TaskCompletionSource _exited = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private PublishedApp(Process process, string name, ITestOutputHelper output)
    {
        _process = process;
        _name = name;
        _output = output;
    }

    public int Pid => _process.Id;

    public bool HasExited => _exited.Task.IsCompleted;

    /// <summary>The output so far, as written (stderr lines prefixed "stderr: ").</summary>
    public IReadOnlyList<string> Lines
    {
        get
        {
            lock (_lock)
            {
                return _lines.ToArray();
            }
        }
    }

    public static PublishedApp Start(string name, string publishDirectory, TestScope scope, ITestOutputHelper output,
        string? workingDirectory = null, Dictionary<string, string>? environment = null)
    {
        var info = new ProcessStartInfo("dotnet")
        {
            WorkingDirectory = workingDirectory ?? publishDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        info.ArgumentList.Add(workingDirectory is null ? "ShopApp.dll" : Path.Combine(publishDirectory, "ShopApp.dll"));
        info.Environment.Remove("ASPNETCORE_URLS");
        info.Environment.Remove("ASPNETCORE_HTTP_PORTS");
        // Kestrel's default (localhost:5000) may be held by another program on a shared machine: a release that reads no
        // appsettings.json binds this port of its own instead, as HTTP_PORTS says (Urls wins over it where it is read).
        info.Environment["ASPNETCORE_HTTP_PORTS"] = TestScope.FreePort().ToString(CultureInfo.InvariantCulture);
        info.Environment["ASPNETCORE_ENVIRONMENT"] = "Production";
        info.Environment["ZeroDowntime__SocketPath"] = scope.SocketPath;
        // Microsoft's json console formatter, one object per line: the tests match the library's events by id in the
        // library's categories (a new user's app has no formatter of the sample's, which adds the event name).
        info.Environment["Logging__Console__FormatterName"] = "json";
        info.Environment["Logging__Console__FormatterOptions__TimestampFormat"] = "O";
        // The app's own per-request lines go to its log file, not to the console (and the test log).
        info.Environment["Logging__Console__LogLevel__Program"] = "Warning";
        foreach (var (key, value) in environment ?? [])
        {
            info.Environment[key] = value;
        }

        var process = new Process { StartInfo = info, EnableRaisingEvents = true };
        var app = new PublishedApp(process, name, output);
        process.OutputDataReceived += (_, e) => app.OnLine(e.Data);
        process.ErrorDataReceived += (_, e) => app.OnLine(e.Data is null ? null : "stderr: " + e.Data);
        process.Exited += (_, _) => app._exited.TrySetResult();
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return app;
    }

    /// <summary>Waits (bounded) for an event of the library with this id (in a ZeroDowntime.Hosting category).</summary>
    public async Task<string> WaitForEventAsync(EventId expected, TimeSpan? timeout = null)
    {
        int eventId = expected.Id;
        bool Match(string line) => FunctionalTests.Infrastructure.LogLine.Parse(line) is { } entry && entry.EventId == eventId &&
            entry.Category?.StartsWith("ZeroDowntime.Hosting.", StringComparison.Ordinal) == true;
        var found = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_lock)
        {
            string? existing = _lines.FirstOrDefault(Match);
            if (existing is not null)
            {
                return existing;
            }

            _waiters.Add((Match, found));
        }

        var limit = timeout ?? TimeSpan.FromSeconds(30);
        var winner = await Task.WhenAny(found.Task, _exited.Task, Task.Delay(limit));
        if (winner == found.Task || (winner == _exited.Task && await Task.WhenAny(found.Task, Task.Delay(TimeSpan.FromSeconds(2))) == found.Task))
        {
            return await found.Task;
        }

        throw new TimeoutException(winner == _exited.Task
            ? $"{_name} (pid {Pid}) exited with code {_process.ExitCode} before logging event {eventId}."
            : $"{_name} (pid {Pid}) did not log event {eventId} within {limit.TotalSeconds:0} s.");
    }

    public async Task<int> WaitForExitAsync(TimeSpan timeout)
    {
        if (await Task.WhenAny(_exited.Task, Task.Delay(timeout)) != _exited.Task)
        {
            throw new TimeoutException($"{_name} (pid {Pid}) did not exit within {timeout.TotalSeconds:0} s.");
        }

        _process.WaitForExit();
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
            return;
        }

        try
        {
            _output.WriteLine($"[{_age.Elapsed.TotalSeconds,7:0.000}s {_name}] {FunctionalTests.Infrastructure.LogLine.Parse(line).Text}");
        }
        catch (InvalidOperationException)
        {
        }

        lock (_lock)
        {
            _lines.Add(line);
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
}
