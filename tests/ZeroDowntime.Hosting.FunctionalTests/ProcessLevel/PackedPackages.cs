using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text;
using Xunit.Abstractions;

namespace ZeroDowntime.Hosting.FunctionalTests;

/// <summary>
/// The packages of this checkout, packed once per test run like a release (Release, ContinuousIntegrationBuild) but
/// with a unique pre-release version, into a temporary folder that serves as the local package source; the build output
/// of that pack goes to artifacts/&lt;run&gt;/ (ignored by git, removed afterwards), not to the repository's bin/obj. Consumers restore into their own
/// NUGET_PACKAGES folder under it.
/// </summary>
public sealed class PackedPackages : IAsyncLifetime
{
    public const string NLogWebVersion = "6.3.0";

    public static readonly string[] Ids = ["ZeroDowntime.Hosting", "ZeroDowntime.Hosting.NLog"];

    private readonly StringBuilder _log = new();
    private string? _artifacts;

    public PackedPackages()
    {
        WorkDirectory = Path.Combine(Path.GetTempPath(), "zdt-pack-" + Guid.NewGuid().ToString("N")[..10]);
        Version = $"0.1.0-ci.{DateTime.UtcNow:yyyyMMddHHmmss}.{Guid.NewGuid().ToString("N")[..8]}";
    }

    public string WorkDirectory { get; }

    /// <summary>Version of this run's packages: Directory.Build.props's VersionPrefix and a unique suffix.</summary>
    public string Version { get; }

    public string FeedDirectory => Path.Combine(WorkDirectory, "feed");

    public string NuGetPackagesDirectory => Path.Combine(WorkDirectory, "nuget-packages");

    public string Log
    {
        get
        {
            lock (_log)
            {
                return _log.ToString();
            }
        }
    }

    public string PackagePath(string id, string extension) => Path.Combine(FeedDirectory, $"{id}.{Version}{extension}");

    public async Task InitializeAsync()
    {
        Directory.CreateDirectory(FeedDirectory);
        string root = RepositoryRoot();
        string suffix = Version["0.1.0-".Length..];
        var stopwatch = Stopwatch.StartNew();
        // Build output under the repository's ignored artifacts/ folder (inside the source root, so that generated
        // files get deterministic /_/ paths as in a release pack), never in the bin/obj folders other builds use.
        _artifacts = Path.Combine(root, "artifacts", Path.GetFileName(WorkDirectory));
        foreach (string id in Ids)
        {
            await DotnetAsync(null, root, "pack", Path.Combine(root, "src", id, id + ".csproj"), "-c", "Release", "-o", FeedDirectory,
                "--artifacts-path", _artifacts, $"-p:VersionSuffix={suffix}", "-p:ContinuousIntegrationBuild=true");
        }

        Append($"packed {string.Join(", ", Ids)} {Version} in {stopwatch.Elapsed.TotalSeconds:0.0} s into {FeedDirectory}: " +
            string.Join(", ", Directory.GetFiles(FeedDirectory).Order(StringComparer.Ordinal).Select(f => $"{Path.GetFileName(f)} ({new FileInfo(f).Length} bytes)")));
        foreach (string id in Ids)
        {
            foreach (string extension in new[] { ".nupkg", ".snupkg" })
            {
                if (!File.Exists(PackagePath(id, extension)))
                {
                    throw new InvalidOperationException($"dotnet pack did not write {PackagePath(id, extension)}:\n{Log}");
                }
            }
        }
    }

    public Task DisposeAsync()
    {
        foreach (string? directory in new[] { WorkDirectory, _artifacts })
        {
            try
            {
                if (directory is not null && Directory.Exists(directory))
                {
                    Directory.Delete(directory, recursive: true);
                }
            }
            catch (IOException)
            {
            }
        }

        return Task.CompletedTask;
    }

    /// <summary>
    /// Runs the dotnet CLI (bounded) in an environment like a new user's, except NUGET_PACKAGES, and without build
    /// servers that would outlive the command; its output goes to the test log, and a non-zero exit fails.
    /// </summary>
    public async Task<string> DotnetAsync(ITestOutputHelper? output, string workingDirectory, params string[] arguments)
    {
        var info = new ProcessStartInfo("dotnet")
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string argument in arguments)
        {
            info.ArgumentList.Add(argument);
        }

        bool build = arguments[0] is "pack" or "restore" or "publish" or "build";
        if (build)
        {
            info.ArgumentList.Add("-nodeReuse:false");
            info.ArgumentList.Add("-p:UseSharedCompilation=false");
            info.ArgumentList.Add("-p:UseRazorBuildServer=false");
        }

        // The test host's own MSBuild and VSTest variables belong to this build, not to the user's.
        foreach (string key in info.Environment.Keys.Where(k => k.StartsWith("MSBuild", StringComparison.OrdinalIgnoreCase)
                     || k.StartsWith("VSTEST", StringComparison.OrdinalIgnoreCase) || k.StartsWith("DOTNET_HOST_PATH", StringComparison.Ordinal)).ToList())
        {
            info.Environment.Remove(key);
        }

        info.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        info.Environment["DOTNET_NOLOGO"] = "1";
        info.Environment["DOTNET_SKIP_FIRST_TIME_EXPERIENCE"] = "1";
        info.Environment["DOTNET_CLI_USE_MSBUILD_SERVER"] = "0";
        info.Environment["MSBUILDDISABLENODEREUSE"] = "1";
        if (arguments[0] != "pack")
        {
            info.Environment["NUGET_PACKAGES"] = NuGetPackagesDirectory;
        }

        var lines = new ConcurrentQueue<string>();
        var stopwatch = Stopwatch.StartNew();
        using var process = new Process { StartInfo = info };
        process.OutputDataReceived += (_, e) => Add(e.Data);
        process.ErrorDataReceived += (_, e) => Add(e.Data is null ? null : "stderr: " + e.Data);
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(4));
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"dotnet {string.Join(' ', arguments)} did not finish within 4 minutes:\n{string.Join('\n', lines)}");
        }

        string text = string.Join('\n', lines);
        string summary = $"dotnet {string.Join(' ', arguments)}: exit {process.ExitCode} in {stopwatch.Elapsed.TotalSeconds:0.0} s";
        Write(output, summary);
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{summary}\n{text}");
        }

        return text;

        void Add(string? line)
        {
            if (line is not null)
            {
                lines.Enqueue(line);
                Write(output, "  " + line);
            }
        }
    }

    /// <summary>To the test's log, or (for the fixture's own commands) to <see cref="Log"/>.</summary>
    private void Write(ITestOutputHelper? output, string line)
    {
        if (output is null)
        {
            Append(line);
            return;
        }

        try
        {
            output.WriteLine(line);
        }
        catch (InvalidOperationException)
        {
        }
    }

    private void Append(string line)
    {
        lock (_log)
        {
            _log.AppendLine(line);
        }
    }

    private static string RepositoryRoot()
    {
        var directory = new DirectoryInfo(AppContext.BaseDirectory);
        while (directory is not null && !File.Exists(Path.Combine(directory.FullName, "Hosting.sln")))
        {
            directory = directory.Parent;
        }

        return directory?.FullName ?? throw new InvalidOperationException("Cannot find the repository root (Hosting.sln) above " + AppContext.BaseDirectory);
    }
}
