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
        var clock = Stopwatch.StartNew();
        using var process = Process.Start(info) ?? throw new InvalidOperationException("dotnet did not start");
        using var limit = new CancellationTokenSource(timeout);
        var stdout = process.StandardOutput.ReadToEndAsync(limit.Token);
        var stderr = process.StandardError.ReadToEndAsync(limit.Token);
        try
        {
            await process.WaitForExitAsync(limit.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"zerodowntime {string.Join(' ', arguments.Skip(1))} did not exit within {timeout.TotalSeconds:0} s");
        }

        var elapsed = clock.Elapsed;
        var result = new ToolResult(process.ExitCode, await stdout, await stderr, elapsed);
        output.WriteLine($"$ zerodowntime {string.Join(' ', arguments.SkipWhile(a => a != DllPath).Skip(1))}  -> exit {result.ExitCode} in {elapsed.TotalMilliseconds:0} ms");
        foreach (string line in (result.Stdout + result.Stderr).Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            output.WriteLine("  | " + line);
        }

        return result;
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
        string root = Path.GetFullPath(Path.Combine(SampleApp.SampleDirectory, "..", "..", "..", "..", ".."));
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
