using System.Diagnostics;
using System.Globalization;
using Xunit.Abstractions;
using ZeroDowntime.Hosting.FunctionalTests.Infrastructure;
using ZeroDowntime.Hosting.Tests.Infrastructure;
using static ZeroDowntime.Hosting.FunctionalTests.Infrastructure.Handoff;

namespace ZeroDowntime.Hosting.FunctionalTests;

/// <summary>
/// Upgrading the library itself must never need downtime: the sample built from the last landed release before the
/// protocol bump (it speaks only handoff protocol v1) hands over to this build (v2) and back, under load, with 0
/// failed requests.
/// </summary>
public sealed class ProtocolCompatibilityTests(ITestOutputHelper output, PreviousReleaseBuild previous) : IClassFixture<PreviousReleaseBuild>
{
    [Fact]
    public async Task ProtocolV1Build_HandsOverToThisBuildAndBack_UnderLoad_NoRequestFails()
    {
        using var scope = new TestScope();
        var thisBuild = scope.Config();
        var v1Build = thisBuild with { SampleDirectory = previous.SampleDirectory };

        var old = await StartFirstAsync("v1-protocol1", v1Build, output);
        await using var load = HttpLoad.Start(scope.BaseUri, workers: 4, newConnectionPerRequest: true);
        await load.WaitForMoreSuccessesAsync(200);

        var (current, oldExit) = await HandOverAsync(old, "v2-this-build", thisBuild, output);
        await old.DisposeAsync();
        Assert.Equal(0, oldExit);
        await current.WaitForEventAsync(Events.SpeakingOlderVersion); // it greeted in v2, was refused, spoke v1
        await load.WaitForMoreSuccessesAsync(200);

        var (back, currentExit) = await HandOverAsync(current, "v3-protocol1", v1Build, output);
        await using var _ = back;
        await current.DisposeAsync();
        Assert.Equal(0, currentExit);
        await load.WaitForMoreSuccessesAsync(200);
        await load.StopAsync();

        output.WriteLine($"load: {load}");
        load.AssertNoFailures();
        Assert.Equal(3, load.ResponsesByBody.Count);
        using var client = new HttpClient();
        Assert.Equal(back.Pid.ToString(CultureInfo.InvariantCulture), await client.GetStringAsync(new Uri(scope.BaseUri, "/pid")));
    }
}

/// <summary>
/// The sample as built from <see cref="Commit"/>, the last landed commit before the bump to protocol v2 (its library
/// speaks only v1), exported with <c>git archive</c> and built once per test run.
/// </summary>
public sealed class PreviousReleaseBuild : IDisposable
{
    public const string Commit = "613adf0372f436f56fde91cbe369071e41f24eaf";

    private readonly string _root = Path.Combine(Path.GetTempPath(), "zdt-prev-" + Guid.NewGuid().ToString("N")[..8]);

    public PreviousReleaseBuild()
    {
        string repository = Path.GetFullPath(Path.Combine(SampleApp.SampleDirectory, "..", "..", "..", "..", ".."));
        Directory.CreateDirectory(_root);
        Run("/bin/sh", ["-c", $"git -C '{repository}' archive {Commit} | tar -x -C '{_root}'"], TimeSpan.FromMinutes(2));
        SampleDirectory = Path.Combine(_root, "out");
        Run("dotnet", ["build", Path.Combine(_root, "samples", "WebApi", "WebApi.csproj"), "-c", "Release", "-o", SampleDirectory,
            "-nodeReuse:false", "-p:UseSharedCompilation=false"], TimeSpan.FromMinutes(10));
    }

    public string SampleDirectory { get; }

    public void Dispose()
    {
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
