using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Xunit.Abstractions;

namespace ZeroDowntime.Hosting.FunctionalTests;

/// <summary>The real dotnet-counters tool (NuGet tool package), installed once per test run into a folder of its own.</summary>
internal static class DotnetCounters
{
    private static readonly SemaphoreSlim s_install = new(1);
    private static string? s_tool;

    public static async Task<string> InstallAsync(ITestOutputHelper output)
    {
        await s_install.WaitAsync();
        try
        {
            if (s_tool is not null)
            {
                return s_tool;
            }

            string folder = Path.Combine(Path.GetTempPath(), "zdt-tools-" + Environment.ProcessId.ToString(CultureInfo.InvariantCulture));
            string tool = Path.Combine(folder, "dotnet-counters");
            if (!File.Exists(tool))
            {
                string result = await RunAsync("dotnet", ["tool", "install", "dotnet-counters", "--version", "10.0.750501", "--tool-path", folder], TimeSpan.FromMinutes(5));
                output.WriteLine(result);
            }

            return s_tool = tool;
        }
        finally
        {
            s_install.Release();
        }
    }

    /// <summary>Reads the ZeroDowntime.Hosting meter of a live process for a few seconds; the last value of each series.</summary>
    public static async Task<IReadOnlyList<(string Name, string Tags, double Value)>> CollectAsync(string tool, int pid, string directory, ITestOutputHelper output)
    {
        string file = Path.Combine(directory, "counters.json");
        string result = await RunAsync(tool, ["collect", "-p", pid.ToString(CultureInfo.InvariantCulture), "--counters", "ZeroDowntime.Hosting",
            "--format", "json", "-o", file, "--refresh-interval", "1", "--duration", "00:00:00:04"], TimeSpan.FromMinutes(1));
        output.WriteLine(result);
        using var document = JsonDocument.Parse(await File.ReadAllTextAsync(file));
        var last = new Dictionary<(string, string), double>();
        foreach (var e in document.RootElement.GetProperty("Events").EnumerateArray())
        {
            string name = e.GetProperty("name").GetString()!;
            int unit = name.IndexOf(" (", StringComparison.Ordinal); // "zerodowntime.generation ({generation})"
            name = unit < 0 ? name : name[..unit];
            string tags = e.TryGetProperty("tags", out var t) ? t.GetString() ?? "" : "";
            last[(name, tags)] = e.GetProperty("value").GetDouble();
        }

        var values = last.Select(kv => (kv.Key.Item1, kv.Key.Item2, kv.Value)).ToArray();
        foreach (var (name, tags, value) in values)
        {
            output.WriteLine($"dotnet-counters: {name} [{tags}] = {value}");
        }

        return values;
    }

    private static async Task<string> RunAsync(string file, string[] arguments, TimeSpan timeout)
    {
        var info = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string argument in arguments)
        {
            info.ArgumentList.Add(argument);
        }

        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var deadline = new CancellationTokenSource(timeout);
        await process.WaitForExitAsync(deadline.Token);
        string text = $"{file} {string.Join(' ', arguments)}: exit {process.ExitCode}\n{await stdout}{await stderr}";
        return process.ExitCode == 0 ? text : throw new InvalidOperationException(text);
    }
}
