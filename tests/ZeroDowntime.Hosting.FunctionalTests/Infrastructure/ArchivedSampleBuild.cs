using System.Diagnostics;
using ZeroDowntime.Hosting.FunctionalTests.Infrastructure;

namespace ZeroDowntime.Hosting.FunctionalTests;

/// <summary>
/// The sample as built from an earlier commit of this repository, exported with <c>git archive</c> and built once per
/// test run (a class fixture).
/// </summary>
public abstract class ArchivedSampleBuild : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "zdt-prev-" + Guid.NewGuid().ToString("N")[..8]);

    protected ArchivedSampleBuild(string commit)
    {
        string repository = SampleApp.RepositoryRoot;
        Directory.CreateDirectory(_root);
        Run("/bin/sh", ["-c", $"git -C '{repository}' archive {commit} | tar -x -C '{_root}'"], TimeSpan.FromMinutes(2));
        SampleDirectory = Path.Combine(_root, "out");
        Run("dotnet", ["build", Path.Combine(_root, "samples", "WebApi", "WebApi.csproj"), "-c", "Release", "-o", SampleDirectory,
            "-nodeReuse:false", "-p:UseSharedCompilation=false"], TimeSpan.FromMinutes(10));
    }

    public string SampleDirectory { get; }

    public void Dispose()
    {
        GC.SuppressFinalize(this);
        try
        {
            Directory.Delete(_root, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    private static void Run(string file, string[] arguments, TimeSpan timeout)
    {
        var info = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string argument in arguments)
        {
            info.ArgumentList.Add(argument);
        }

        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} {string.Join(' ', arguments)} did not finish within {timeout}.");
        }

        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{file} {string.Join(' ', arguments)} exited {process.ExitCode}:\n{stdout.Result}\n{stderr.Result}");
        }
    }
}
