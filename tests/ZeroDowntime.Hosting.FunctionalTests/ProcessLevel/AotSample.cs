using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using Xunit.Abstractions;
using ZeroDowntime.Hosting.FunctionalTests.Infrastructure;

namespace ZeroDowntime.Hosting.FunctionalTests;

/// <summary>
/// Publishes the sample with Native AOT once per test run, into <see cref="SampleApp.AotDirectory"/>, with the
/// documented command; every AOT test awaits the same publish. Bounded: a publish that takes more than 20 minutes fails.
/// </summary>
internal static class AotSample
{
    private static readonly TimeSpan PublishTimeout = TimeSpan.FromMinutes(20);
    private static readonly Lock s_lock = new();
    private static Task<PublishResult>? s_published;

    public static async Task<PublishResult> EnsurePublishedAsync(ITestOutputHelper output)
    {
        Task<PublishResult> published;
        lock (s_lock)
        {
            published = s_published ??= Task.Run(PublishAsync);
        }

        var result = await published;
        output.WriteLine($"AOT sample: {result.Command} ({result.Elapsed.TotalSeconds:0} s, once per test run)");
        return result;
    }

    /// <summary>samples/WebApi.</summary>
    public static string ProjectDirectory { get; } = SampleApp.ProjectDirectory;

    private static async Task<PublishResult> PublishAsync()
    {
        string project = Path.Combine(ProjectDirectory, "WebApi.csproj");
        var info = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = Path.GetDirectoryName(project)!,
        };
        // No build servers or reused nodes: nothing may outlive the publish and hold its output pipes open.
        string[] arguments = ["publish", project, "-c", "Release", "-r", RuntimeInformation.RuntimeIdentifier, "-p:PublishAot=true",
            "-o", SampleApp.AotDirectory, "--disable-build-servers", "-nodeReuse:false", "-clp:NoSummary"];
        foreach (string argument in arguments)
        {
            info.ArgumentList.Add(argument);
        }

        // The test host runs under MSBuild's environment (dotnet test); the publish must not inherit it.
        foreach (string key in info.Environment.Keys.Where(k => k.StartsWith("MSBUILD", StringComparison.OrdinalIgnoreCase)).ToList())
        {
            info.Environment.Remove(key);
        }

        var log = new StringBuilder();
        var stopwatch = Stopwatch.StartNew();
        using var process = new Process { StartInfo = info };
        process.OutputDataReceived += (_, e) => Append(log, e.Data);
        process.ErrorDataReceived += (_, e) => Append(log, e.Data);
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        using var limit = new CancellationTokenSource(PublishTimeout);
        try
        {
            await process.WaitForExitAsync(limit.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"The AOT publish did not finish within {PublishTimeout.TotalMinutes:0} minutes:{Environment.NewLine}{Text(log)}");
        }

        process.WaitForExit(); // flushes the output readers
        string text = Text(log);
        string command = "dotnet " + string.Join(' ', arguments);
        await File.WriteAllTextAsync(Path.Combine(SampleApp.AotDirectory, "..", "aot-publish.log"), command + Environment.NewLine + text);
        if (process.ExitCode != 0 || !File.Exists(SampleApp.AotExecutable))
        {
            throw new InvalidOperationException($"{command} failed with exit code {process.ExitCode}:{Environment.NewLine}{text}");
        }

        return new PublishResult(command, text, stopwatch.Elapsed);
    }

    private static void Append(StringBuilder log, string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (log)
        {
            log.AppendLine(line);
        }
    }

    private static string Text(StringBuilder log)
    {
        lock (log)
        {
            return log.ToString();
        }
    }

    internal sealed record PublishResult(string Command, string Log, TimeSpan Elapsed);
}
