using System.Diagnostics;
using System.Reflection;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Xunit.Abstractions;
using ZeroDowntime.Hosting.Tests.Infrastructure;

namespace ZeroDowntime.Hosting.FunctionalTests.Infrastructure;

/// <summary>The <c>zerodowntime</c> tool (src/ZeroDowntime.Cli), run as a process: <c>dotnet ZeroDowntime.Cli.dll ...</c>.</summary>
internal static class ZeroDowntimeTool
{
    public static string DllPath { get; } = FindDll();

    /// <summary>Runs the tool to its end (bounded) and returns its exit code, output and wall time.</summary>
    public static Task<ToolResult> RunAsync(ITestOutputHelper output, TimeSpan timeout, params string[] arguments) =>
        RunProcessAsync(output, timeout, "dotnet", [DllPath, .. arguments]);

    /// <summary>Runs the tool as uid 65534 (setpriv, as <see cref="OtherUser"/>).</summary>
    public static Task<ToolResult> RunAsOtherUserAsync(ITestOutputHelper output, TimeSpan timeout, params string[] arguments) =>
        RunProcessAsync(output, timeout, "setpriv",
            [$"--reuid={OtherUser.Uid}", $"--regid={OtherUser.Uid}", "--clear-groups", DotnetPath(), DllPath, .. arguments]);

    private static async Task<ToolResult> RunProcessAsync(ITestOutputHelper output, TimeSpan timeout, string program, IReadOnlyList<string> arguments)
    {
        await using var tool = Start(output, program, arguments);
        return await tool.WaitForExitAsync(timeout);
    }

    /// <summary>
    /// Starts <paramref name="program"/> (the tool, or a launcher such as unshare(1) followed by the tool) and leaves it
    /// running: for a test that signals it while it runs. Its output is read to the end and logged by
    /// <see cref="StartedTool.WaitForExitAsync"/>, or on dispose (a failed test), which kills what is left.
    /// </summary>
    public static StartedTool Start(ITestOutputHelper output, string program, IReadOnlyList<string> arguments, IReadOnlyDictionary<string, string>? environment = null)
    {
        var info = new ProcessStartInfo(program)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string arg in arguments)
        {
            info.ArgumentList.Add(arg);
        }

        info.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        foreach (var (name, value) in environment ?? new Dictionary<string, string>())
        {
            info.Environment[name] = value;
        }

        var process = Process.Start(info) ?? throw new InvalidOperationException($"{program} did not start");
        return new StartedTool(process, output, string.Join(' ', arguments.SkipWhile(a => a != DllPath).Skip(1)));
    }

    /// <summary>The dotnet host this test runs under (setpriv needs a path).</summary>
    public static string DotnetPath()
    {
        string? host = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH");
        if (!string.IsNullOrEmpty(host) && File.Exists(host))
        {
            return host;
        }

        foreach (string directory in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':'))
        {
            string candidate = Path.Combine(directory, "dotnet");
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        return "/usr/bin/dotnet";
    }

    private static string FindDll()
    {
        string configuration = typeof(ZeroDowntimeTool).Assembly.GetCustomAttribute<AssemblyConfigurationAttribute>()?.Configuration ?? "Debug";
        string root = SampleApp.RepositoryRoot;
        string dll = Path.Combine(root, "src", "ZeroDowntime.Cli", "bin", configuration, "net10.0", "ZeroDowntime.Cli.dll");
        return File.Exists(dll) ? dll : throw new InvalidOperationException($"The tool is not built: {dll} is missing.");
    }
}

internal sealed record ToolResult(int ExitCode, string Stdout, string Stderr, TimeSpan Elapsed)
{
    /// <summary>The one JSON object of <c>--json</c>.</summary>
    public JsonElement Json
    {
        get
        {
            using var document = JsonDocument.Parse(Stdout);
            return document.RootElement.Clone();
        }
    }
}

/// <summary>The tool as a running process (see <see cref="ZeroDowntimeTool.Start"/>).</summary>
internal sealed class StartedTool : IAsyncDisposable
{
    private readonly Process _process;
    private readonly ITestOutputHelper _output;
    private readonly string _command;
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly Task<string> _stdout;
    private readonly Task<string> _stderr;
    private readonly Task _exited;
    private ToolResult? _result;

    public StartedTool(Process process, ITestOutputHelper output, string command)
    {
        _process = process;
        _output = output;
        _command = command;
        _stdout = process.StandardOutput.ReadToEndAsync();
        _stderr = process.StandardError.ReadToEndAsync();
        _exited = process.WaitForExitAsync();
    }

    public int Pid => _process.Id;

    /// <summary>Completes when the process has exited (for a wait that must fail fast when it exits early).</summary>
    public Task Exited => _exited;

    /// <summary>Waits (bounded) for the exit and the end of its output; kills the process tree when it does not exit.</summary>
    public async Task<ToolResult> WaitForExitAsync(TimeSpan timeout)
    {
        try
        {
            await _exited.WaitAsync(timeout);
        }
        catch (TimeoutException)
        {
            _process.Kill(entireProcessTree: true);
            await LogAsync(-1);
            throw new TimeoutException($"zerodowntime {_command} did not exit within {timeout.TotalSeconds:0} s");
        }

        var elapsed = _clock.Elapsed;
        await Task.WhenAll(_stdout, _stderr).WaitAsync(TimeSpan.FromSeconds(10)); // a process it left behind may hold the pipes
        _result = new ToolResult(_process.ExitCode, await _stdout, await _stderr, elapsed);
        await LogAsync(_result.ExitCode);
        return _result;
    }

    private async Task LogAsync(int exitCode)
    {
        _output.WriteLine($"$ zerodowntime {_command}  -> exit {exitCode} in {_clock.Elapsed.TotalMilliseconds:0} ms");
        string text;
        try
        {
            await Task.WhenAll(_stdout, _stderr).WaitAsync(TimeSpan.FromSeconds(5));
            text = await _stdout + await _stderr;
        }
        catch (TimeoutException)
        {
            text = "(its output was not closed within 5 s)";
        }

        foreach (string line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            _output.WriteLine("  | " + line);
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_result is null && !_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _exited.WaitAsync(TimeSpan.FromSeconds(10));
            await LogAsync(-1);
        }

        _process.Dispose();
    }
}

/// <summary>
/// Release folders as a deployment lays them out: copies of the sample build under releases/, and a <c>current</c>
/// symlink switched atomically (a new link renamed over it).
/// </summary>
internal sealed partial class Releases
{
    public Releases(TestScope scope)
    {
        Root = Path.Combine(scope.Directory, "app");
        Directory.CreateDirectory(Path.Combine(Root, "releases"));
        Current = Path.Combine(Root, "current");
    }

    public string Root { get; }

    /// <summary>The <c>current</c> symlink.</summary>
    public string Current { get; }

    /// <summary>A copy of the sample build whose appsettings.json is changed by <paramref name="edit"/>.</summary>
    public string Create(string name, Action<JsonNode>? edit = null)
    {
        string release = Path.Combine(Root, "releases", name);
        Copy(SampleApp.SampleDirectory, release);
        if (edit is not null)
        {
            string settings = Path.Combine(release, "appsettings.json");
            var json = JsonNode.Parse(File.ReadAllText(settings)) ?? throw new InvalidDataException(settings);
            edit(json);
            File.WriteAllText(settings, json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }), Encoding.UTF8);
        }

        return release;
    }

    /// <summary>Points <c>current</c> at <paramref name="release"/>: <c>ln -s release current.tmp &amp;&amp; mv -T current.tmp current</c>.</summary>
    public void Switch(string release)
    {
        string temporary = Current + ".tmp";
        File.Delete(temporary);
        File.CreateSymbolicLink(temporary, release);

        // rename(2) replaces the link itself, atomically (File.Move follows a link to a directory and refuses it).
        if (rename(temporary, Current) != 0)
        {
            throw new IOException($"rename({temporary}, {Current}) failed: errno {System.Runtime.InteropServices.Marshal.GetLastPInvokeError()}");
        }
    }

    [System.Runtime.InteropServices.LibraryImport("libc", SetLastError = true, StringMarshalling = System.Runtime.InteropServices.StringMarshalling.Utf8)]
    private static partial int rename(string oldPath, string newPath);

    private static void Copy(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (string file in Directory.EnumerateFiles(from))
        {
            File.Copy(file, Path.Combine(to, Path.GetFileName(file)));
        }

        foreach (string directory in Directory.EnumerateDirectories(from))
        {
            if (Path.GetFileName(directory) != "logs")
            {
                Copy(directory, Path.Combine(to, Path.GetFileName(directory)));
            }
        }
    }
}

/// <summary>What /proc says about processes this test did not start (see also <see cref="AdoptedProcess"/>).</summary>
internal static class ProcessWatch
{
    /// <summary>True while the process exists and is not a zombie.</summary>
    public static bool IsAlive(int pid) => State(pid) is { } state && state != 'Z' && state != 'X';

    /// <summary>The state letter of /proc/PID/stat (R, S, Z, ...), or null when there is no such process.</summary>
    public static char? State(int pid)
    {
        try
        {
            string stat = File.ReadAllText($"/proc/{pid}/stat");
            return stat[stat.LastIndexOf(')') + 2];
        }
        catch (IOException)
        {
            return null;
        }
    }

    /// <summary>The parent pid, or 0.</summary>
    public static int ParentOf(int pid)
    {
        try
        {
            string stat = File.ReadAllText($"/proc/{pid}/stat");
            string[] fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            return int.Parse(fields[1], System.Globalization.CultureInfo.InvariantCulture);
        }
        catch (IOException)
        {
            return 0;
        }
    }

    /// <summary>Every process whose parent is <paramref name="pid"/>, with its state.</summary>
    public static List<(int Pid, char State)> ChildrenOf(int pid)
    {
        var children = new List<(int, char)>();
        foreach (string directory in Directory.EnumerateDirectories("/proc"))
        {
            if (int.TryParse(Path.GetFileName(directory), out int candidate) && ParentOf(candidate) == pid && State(candidate) is { } state)
            {
                children.Add((candidate, state));
            }
        }

        return children;
    }

    /// <summary>The pid in the innermost PID namespace (last field of NSpid), for a process seen from outside.</summary>
    public static int InnerPid(int pid)
    {
        string? line = File.ReadLines($"/proc/{pid}/status").FirstOrDefault(l => l.StartsWith("NSpid:", StringComparison.Ordinal));
        return line is null ? pid : int.Parse(line.Split('\t', ' ', StringSplitOptions.RemoveEmptyEntries)[^1], System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>The directory a process runs in (what /proc/PID/cwd points to).</summary>
    public static string? WorkingDirectory(int pid) => new DirectoryInfo($"/proc/{pid}/cwd").LinkTarget;
}
