using System.Diagnostics;
using System.Globalization;
using System.IO.Compression;
using System.Reflection.Metadata;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using System.Xml.Linq;
using Xunit.Abstractions;
using ZeroDowntime.Hosting.FunctionalTests.Infrastructure;
using ZeroDowntime.Hosting.Tests.Infrastructure;

namespace ZeroDowntime.Hosting.FunctionalTests;

/// <summary>
/// What a team that adopts the library does, with the packages that <c>dotnet pack</c> writes: <c>dotnet new web</c>
/// in an empty folder, <c>dotnet add package</c> from a local source, the one line, the port in appsettings.json
/// (<c>Urls</c>), publish to <c>release-1</c> and start it there, then the same build as <c>release-2</c> under
/// <c>ab -c 16</c>: first by its path from another directory, as README showed it (issue 24: it reads no
/// appsettings.json and must not take over: exit 80, the old process serves on), then in its own folder, as README shows
/// it now (it takes over). The packages are packed once per run (<see cref="PackedPackages"/>) with a unique pre-release
/// version and restored into an isolated NUGET_PACKAGES folder, so no cached copy is ever tested.
/// </summary>
public sealed partial class NewUserPackageTests(PackedPackages packages, ITestOutputHelper output) : IClassFixture<PackedPackages>
{
    private const string AppName = "ShopApp";

    private static readonly TimeSpan ToolTimeout = TimeSpan.FromSeconds(60);

    /// <summary>Requests the test sends itself, before the handoff (to v1) and after v1 exited (to v2).</summary>
    private const int Requests = 500;

    [Fact]
    public void Pack_Release_EachPackageHasMetadataReadmeLicenseDocsAndSymbolsWithEmbeddedSources()
    {
        output.WriteLine(packages.Log);
        foreach (string id in PackedPackages.Ids)
        {
            string nupkg = packages.PackagePath(id, ".nupkg");
            string snupkg = packages.PackagePath(id, ".snupkg");
            output.WriteLine($"{Path.GetFileName(nupkg)}: {new FileInfo(nupkg).Length} bytes; {Path.GetFileName(snupkg)}: {new FileInfo(snupkg).Length} bytes");

            using (var zip = ZipFile.OpenRead(nupkg))
            {
                var names = zip.Entries.Select(e => e.FullName).ToHashSet(StringComparer.Ordinal);
                output.WriteLine("  " + string.Join(Environment.NewLine + "  ", zip.Entries.Select(e => $"{e.Length,8} {e.FullName}")));
                foreach (string expected in new[] { "README.md", "LICENSE", "CHANGELOG.md", $"lib/net10.0/{id}.dll", $"lib/net10.0/{id}.xml" })
                {
                    Assert.Contains(expected, names);
                }

                Assert.DoesNotContain(names, n => n.EndsWith(".pdb", StringComparison.Ordinal));
                var metadata = Nuspec(zip, id);
                string Value(string name) => metadata.Elements().FirstOrDefault(e => e.Name.LocalName == name)?.Value ?? "";
                Assert.Equal(packages.Version, Value("version"));
                Assert.Equal("MIT", Value("license"));
                Assert.Equal("expression", metadata.Elements().Single(e => e.Name.LocalName == "license").Attribute("type")?.Value);
                Assert.Equal("README.md", Value("readme"));
                Assert.False(string.IsNullOrWhiteSpace(Value("authors")), "no authors");
                Assert.True(Value("description").Length > 50, "no description");
                Assert.Contains("zero-downtime", Value("tags"), StringComparison.Ordinal);
                Assert.Contains("CHANGELOG.md", Value("releaseNotes"), StringComparison.Ordinal);
                // No repository URL exists yet: none is invented (no projectUrl, no repository url, no Source Link).
                Assert.Empty(Value("projectUrl"));
                Assert.Null(metadata.Elements().FirstOrDefault(e => e.Name.LocalName == "repository")?.Attribute("url"));
            }

            using (var zip = ZipFile.OpenRead(snupkg))
            {
                output.WriteLine("  " + string.Join(Environment.NewLine + "  ", zip.Entries.Select(e => $"{e.Length,8} {e.FullName}")));
                var pdbEntry = zip.GetEntry($"lib/net10.0/{id}.pdb") ?? throw new InvalidOperationException($"{snupkg} has no lib/net10.0/{id}.pdb");
                var (documents, embedded, unmapped, sourceLink) = ReadPdb(pdbEntry);
                output.WriteLine($"  {id}.pdb: {documents} documents, {embedded} with embedded source, {documents - unmapped.Count} under /_/ (deterministic paths), Source Link: {sourceLink}; other paths: {string.Join(", ", unmapped)}");
                Assert.True(documents > 3, $"only {documents} documents in the PDB");
                Assert.Equal(documents, embedded);
                Assert.Empty(unmapped);
                Assert.False(sourceLink, "the PDB carries Source Link, but no repository URL exists");
            }
        }
    }

    [Fact]
    public void PublicEntryPoints_AnyPlatform_CarryNoSupportedOSPlatformAttribute()
    {
        // Off Linux UseZeroDowntime() logs one warning and leaves Kestrel alone: callers on any platform need no guard.
        var types = new[] { typeof(ZeroDowntimeWebHostBuilderExtensions), typeof(ZeroDowntime.Hosting.NLog.ZeroDowntimeNLogWebHostBuilderExtensions) };
        foreach (var type in types)
        {
            var targets = new List<System.Reflection.ICustomAttributeProvider> { type.Assembly, type };
            targets.AddRange(type.GetMethods(System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.Static));
            foreach (var target in targets)
            {
                Assert.Empty(target.GetCustomAttributes(typeof(System.Runtime.Versioning.SupportedOSPlatformAttribute), inherit: false));
            }

            output.WriteLine($"{type.FullName}: {targets.Count - 2} public method(s), no [SupportedOSPlatform] on them, the type or {type.Assembly.GetName().Name}");
        }
    }

    [Fact]
    public async Task NewWebApp_WithHostingPackage_SecondStartTakesOverUnderAb_NoFailedRequest()
    {
        var total = Stopwatch.StartNew();
        using var scope = new TestScope();
        string publish = await CreateAndPublishAsync(scope, withNLog: false);

        await RunHandoffUnderAbAsync(scope, publish, total, mainCatches: true, (_, _, _) => Task.CompletedTask);
    }

    [Fact]
    public async Task NewWebApp_WithNLogPackage_LogFileHandedOver_NoLineLost()
    {
        var total = Stopwatch.StartNew();
        using var scope = new TestScope();
        string publish = await CreateAndPublishAsync(scope, withNLog: true);

        await RunHandoffUnderAbAsync(scope, publish, total, mainCatches: false, (v1, v2, answered) =>
        {
            string logs = Path.Combine(scope.Directory, "logs");
            var files = Directory.GetFiles(logs, "*.log").Order(StringComparer.Ordinal).ToList();
            output.WriteLine($"log files: {string.Join(", ", files.Select(f => $"{Path.GetFileName(f)} ({File.ReadAllLines(f).Length} lines)"))}");

            // One file handed over: webapi.log is the new process's, one archive (its name carries the pid) the old one's.
            Assert.Equal(2, files.Count);
            string current = Path.Combine(logs, "webapi.log");
            Assert.Contains(current, files);
            string archive = files.Single(f => f != current);
            Assert.Matches($@"^webapi\.\d{{4}}-\d\d-\d\dT\d\d-\d\d-\d\d\.{v1.Pid}\.log$", Path.GetFileName(archive));
            var currentLines = LogLine.ReadAll(current);
            var archiveLines = LogLine.ReadAll(archive);
            Assert.All(currentLines, l => Assert.Equal(v2.Pid, l.Pid));
            Assert.All(archiveLines, l => Assert.Equal(v1.Pid, l.Pid));

            // The old process wrote its lines after the rename (drain, exit) into the archive; the new one's held
            // start-up lines come first in webapi.log.
            Assert.Contains(archiveLines, l => l.Message.StartsWith("Drain finished", StringComparison.Ordinal));
            Assert.Contains("Found 1 NLog file target(s)", currentLines[0].Message, StringComparison.Ordinal);

            // No line lost: each process numbers the requests it served, every number 1..n is in its file exactly once,
            // and together they are at least every request that ab and the test's own client saw answered.
            long served = 0;
            foreach (var (name, lines) in new[] { ("v1", archiveLines), ("v2", currentLines) })
            {
                var numbers = lines.Select(l => ServedLine().Match(l.Message)).Where(m => m.Success)
                    .Select(m => long.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture)).ToList();
                long max = numbers.Count == 0 ? 0 : numbers.Max();
                output.WriteLine($"{name}: {numbers.Count} 'served' lines, highest number {max}");
                Assert.True(numbers.Count > 0, $"{name} logged no request");
                Assert.Equal(Enumerable.Range(1, (int)max).Select(n => (long)n), numbers.Order());
                served += max;
            }

            Assert.True(served >= answered, $"{served} requests logged, but {answered} were answered");
            Assert.Empty(Directory.GetFiles(logs, "*.held", new EnumerationOptions { AttributesToSkip = 0 }));
            return Task.CompletedTask;
        });
    }

    /// <summary>The steps of README's "Use it in your app": new project, package, the one line, the section, publish.</summary>
    private async Task<string> CreateAndPublishAsync(TestScope scope, bool withNLog)
    {
        var step = Stopwatch.StartNew();
        string project = Path.Combine(scope.Directory, AppName);
        await packages.DotnetAsync(output, scope.Directory, "new", "web", "--name", AppName, "--output", project, "--no-restore", "--no-update-check");
        // The local folder that dotnet pack wrote as a package source of the app, as README says (nuget.org, here
        // its mirror, still serves the dependencies).
        await packages.DotnetAsync(output, project, "new", "nugetconfig", "--no-update-check");
        await packages.DotnetAsync(output, project, "nuget", "add", "source", packages.FeedDirectory, "-n", "zerodowntime", "--configfile", "nuget.config");

        string program = Path.Combine(project, "Program.cs");
        string code = File.ReadAllText(program);
        const string CreateBuilder = "var builder = WebApplication.CreateBuilder(args);";
        Assert.Contains(CreateBuilder, code, StringComparison.Ordinal);
        var settings = JsonNode.Parse(File.ReadAllText(Path.Combine(project, "appsettings.json")))!.AsObject();
        // The port is the app's configuration, as a real app has it, not a command-line argument: so the content root
        // decides whether a release finds it.
        settings["Urls"] = $"http://127.0.0.1:{scope.Port}";
        settings["ZeroDowntime"] = new JsonObject
        {
            ["HandoffTimeout"] = "00:01:00",
            ["DrainTimeout"] = "00:00:30",
            ["IdleConnectionGracePeriod"] = "00:00:02",
        };

        if (!withNLog)
        {
            await packages.DotnetAsync(output, project, "add", "package", "ZeroDowntime.Hosting", "--version", packages.Version, "--no-restore");
            // Main as many templates write it (Serilog's): it catches what the host throws and returns an int. The
            // library's exit codes must hold anyway.
            const string Run = "app.Run();";
            Assert.Contains(Run, code, StringComparison.Ordinal);
            code = "using ZeroDowntime.Hosting;\n" + code
                .Replace(CreateBuilder, CreateBuilder + "\nbuilder.WebHost.UseZeroDowntime();", StringComparison.Ordinal)
                .Replace(Run, """
                    try
                    {
                        app.Run();
                        return 0;
                    }
                    catch (Exception ex)
                    {
                        Console.Error.WriteLine($"Host terminated unexpectedly: {ex.Message}");
                        return 1;
                    }
                    """, StringComparison.Ordinal);
        }
        else
        {
            await packages.DotnetAsync(output, project, "add", "package", "ZeroDowntime.Hosting.NLog", "--version", packages.Version, "--no-restore");
            await packages.DotnetAsync(output, project, "add", "package", "NLog.Web.AspNetCore", "--version", PackedPackages.NLogWebVersion, "--no-restore");
            const string Route = "app.MapGet(\"/\", () => \"Hello World!\");";
            Assert.Contains(Route, code, StringComparison.Ordinal);
            code = "using NLog.Web;\nusing ZeroDowntime.Hosting;\nusing ZeroDowntime.Hosting.NLog;\n" + code
                .Replace(CreateBuilder, CreateBuilder + "\nbuilder.WebHost.UseZeroDowntime().UseZeroDowntimeNLog();\nbuilder.Host.UseNLog();", StringComparison.Ordinal)
                .Replace(Route, """
                    long served = 0;
                    app.MapGet("/", (ILogger<Program> logger) =>
                    {
                        logger.LogInformation("served {Number}", Interlocked.Increment(ref served));
                        return "Hello World!";
                    });
                    """, StringComparison.Ordinal);
            settings["NLog"] = JsonNode.Parse("""
                {
                  "throwConfigExceptions": true,
                  "targets": {
                    "file": {
                      "type": "File",
                      "fileName": "LOGS/webapi.log",
                      "layout": "${longdate}|${processid}|${level:uppercase=true}|${logger}|${message:withexception=true}"
                    }
                  },
                  "rules": [
                    { "logger": "Microsoft.AspNetCore.*", "finalMinLevel": "Warn" },
                    { "logger": "*", "minLevel": "Info", "writeTo": "file" }
                  ]
                }
                """.Replace("LOGS", Path.Combine(scope.Directory, "logs"), StringComparison.Ordinal)); // outside the releases, shared by all
        }

        File.WriteAllText(program, code);
        File.WriteAllText(Path.Combine(project, "appsettings.json"), settings.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }));
        output.WriteLine("Program.cs:\n" + code);

        await packages.DotnetAsync(output, project, "restore");
        string publish = Path.Combine(scope.Directory, "release-1");
        await packages.DotnetAsync(output, project, "publish", "-c", "Release", "-o", publish, "--no-restore");
        Assert.True(File.Exists(Path.Combine(publish, "ZeroDowntime.Hosting.dll")), "the published app has no ZeroDowntime.Hosting.dll");
        string restored = Path.Combine(packages.NuGetPackagesDirectory, "zerodowntime.hosting", packages.Version.ToLowerInvariant());
        Assert.True(Directory.Exists(restored), $"the package was not restored from this run's pack into {restored}");
        // The next version: the same build, published to a folder of its own.
        CopyDirectory(publish, Path.Combine(scope.Directory, "release-2"));
        output.WriteLine($"new project, packages, restore and publish: {step.Elapsed.TotalSeconds:0.0} s");
        return publish;
    }

    /// <summary>
    /// Starts release-1 in its folder, then release-2 under ab: first by its path from another directory (refused, exit
    /// 80; with <paramref name="mainCatches"/> also a start with a value that cannot be parsed: exit 78, though Main
    /// returns 1), then in its folder: the old one exits 0, the new one serves.
    /// </summary>
    private async Task RunHandoffUnderAbAsync(TestScope scope, string publish, Stopwatch total, bool mainCatches, Func<PublishedApp, PublishedApp, long, Task> verify)
    {
        string release2 = Path.Combine(scope.Directory, "release-2");
        await using var v1 = PublishedApp.Start("v1", publish, scope, output);
        await v1.WaitForEventAsync(Events.ServingHandoffSocket);
        PublishedApp? v2 = null;
        try
        {
            // A new connection per request (HTTP/1.0, no keep-alive); -r: count errors and carry on.
            await using var ab = LoadTool.Start("ab", "-r", "-c", "16", "-t", "120", "-n", "100000000", "-s", "30", new Uri(scope.BaseUri, "/").ToString());
            await v1.WaitForEventAsync(Events.FirstConnectionAccepted);
            // Some load on v1 first: the test's own requests, answered while ab runs alongside (the client and its
            // keep-alive connection are gone before the handoff, so v1's drain has no idle connection to wait for).
            await GetManyAsync(scope.BaseUri, Requests);

            // As README showed it: dotnet /srv/myapp/release-2/MyApp.dll, from another directory. Its content root is that
            // directory: no appsettings.json, so Kestrel's default port instead of the app's. It must not take over.
            await using (var byPath = PublishedApp.Start("v2-by-path", release2, scope, output, workingDirectory: scope.Directory))
            {
                int code = await byPath.WaitForExitAsync(TimeSpan.FromSeconds(60));
                string refusal = await byPath.WaitForEventAsync(Events.NoEndpointKept);
                output.WriteLine($"release-2 started by path from {scope.Directory}: exit {code}");
                Assert.Equal(ZeroDowntimeExitCodes.NoEndpointKept, code); // with mainCatches, Main returned 0 meanwhile
                Assert.Contains($"tcp:127.0.0.1:{scope.Port}", refusal, StringComparison.Ordinal);
                Assert.Contains(Path.Combine(scope.Directory, "appsettings.json") + " (not found)", refusal, StringComparison.Ordinal);
            }

            await v1.WaitForEventAsync(Events.SuccessorFailed);
            Assert.False(v1.HasExited, "v1 exited after the refused successor");

            if (mainCatches)
            {
                // A start-up failure of the library that Main catches (it returns 1): the exit code still says why.
                await using var invalid = PublishedApp.Start("v2-invalid", release2, scope, output, environment: new() { ["ZeroDowntime__HandoffTimeout"] = "one minute" });
                Assert.Equal(ZeroDowntimeExitCodes.InvalidConfiguration, await invalid.WaitForExitAsync(TimeSpan.FromSeconds(60)));
                Assert.Contains(invalid.Lines, l => l.Contains("Host terminated unexpectedly", StringComparison.Ordinal) && l.Contains("ZeroDowntime:HandoffTimeout 'one minute'", StringComparison.Ordinal));
            }

            // As README shows it now: in its own folder (cd release-2 && dotnet ShopApp.dll).
            var handoff = Stopwatch.StartNew();
            v2 = PublishedApp.Start("v2", release2, scope, output);
            await v2.WaitForEventAsync(Events.Committed);
            await v2.WaitForEventAsync(Events.ServingHandoffSocket);
            int oldExit = await v1.WaitForExitAsync(TimeSpan.FromSeconds(60));
            output.WriteLine($"v1 (pid {v1.Pid}) exited {oldExit} {handoff.Elapsed.TotalMilliseconds:0} ms after v2 (pid {v2.Pid}) started");
            Assert.Equal(0, oldExit);
            await v2.WaitForEventAsync(Events.FirstConnectionAccepted);
            Assert.False(ab.HasExited, "ab stopped before the handoff was done: " + ab.Output);

            // v1 is gone: whatever answers now is v2 (ab keeps running meanwhile).
            await GetManyAsync(scope.BaseUri, Requests);

            string text = await ab.InterruptAsync(ToolTimeout);
            output.WriteLine(text);
            var result = LoadTool.AbResult.Parse(text);
            output.WriteLine($"ab -c 16: {result.Complete} complete, {result.Failed} failed, {result.Non2xx} non-2xx (release-2 by path refused, then in its folder took over); the test's client: {Requests} answers from v1 before the handoff, {Requests} from v2 after v1 exited; v1 exit {oldExit}");
            Assert.True(result.Complete > 100, $"ab completed only {result.Complete} requests");
            Assert.True(result.Failed == 0 && result.Non2xx == 0, $"ab: {result}");
            Assert.False(v2.HasExited, "v2 exited");

            // Stop v2 as an operator would (SIGTERM: a plain shutdown, exit 0), so that its log is complete.
            v2.Signal(Posix.SIGTERM);
            Assert.Equal(0, await v2.WaitForExitAsync(TimeSpan.FromSeconds(30)));
            await verify(v1, v2, result.Complete + (2 * Requests));
            output.WriteLine($"whole test: {total.Elapsed.TotalSeconds:0.0} s");
        }
        finally
        {
            if (v2 is not null)
            {
                await v2.DisposeAsync();
            }
        }
    }

    private static void CopyDirectory(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (string file in Directory.EnumerateFiles(from))
        {
            File.Copy(file, Path.Combine(to, Path.GetFileName(file)));
        }

        foreach (string directory in Directory.EnumerateDirectories(from))
        {
            CopyDirectory(directory, Path.Combine(to, Path.GetFileName(directory)));
        }
    }

    private static async Task GetManyAsync(Uri uri, int count)
    {
        using var client = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        for (int i = 0; i < count; i++)
        {
            using var response = await client.GetAsync(uri);
            Assert.Equal("Hello World!", await response.Content.ReadAsStringAsync());
        }
    }

    private static XElement Nuspec(ZipArchive zip, string id)
    {
        var entry = zip.GetEntry($"{id}.nuspec") ?? throw new InvalidOperationException($"no {id}.nuspec");
        using var stream = entry.Open();
        return XDocument.Load(stream).Root!.Elements().Single(e => e.Name.LocalName == "metadata");
    }

    private static (int Documents, int Embedded, List<string> Unmapped, bool SourceLink) ReadPdb(ZipArchiveEntry entry)
    {
        var embeddedSource = new Guid("0E8A571B-6926-466E-B4AD-8AB04611F5FE");
        var sourceLink = new Guid("CC110556-A091-4D38-9FEC-25AB9A351A6A");
        using var copy = new MemoryStream();
        using (var stream = entry.Open())
        {
            stream.CopyTo(copy);
        }

        copy.Position = 0;
        using var provider = MetadataReaderProvider.FromPortablePdbStream(copy);
        var reader = provider.GetMetadataReader();
        int documents = 0, embedded = 0;
        var unmapped = new List<string>();
        foreach (var handle in reader.Documents)
        {
            documents++;
            string name = reader.GetString(reader.GetDocument(handle).Name);
            unmapped.AddRange(name.StartsWith("/_/", StringComparison.Ordinal) ? [] : [name]);
            foreach (var info in reader.GetCustomDebugInformation(handle))
            {
                embedded += reader.GetGuid(reader.GetCustomDebugInformation(info).Kind) == embeddedSource ? 1 : 0;
            }
        }

        bool hasSourceLink = reader.GetCustomDebugInformation(EntityHandle.ModuleDefinition)
            .Any(info => reader.GetGuid(reader.GetCustomDebugInformation(info).Kind) == sourceLink);
        return (documents, embedded, unmapped, hasSourceLink);
    }

    [GeneratedRegex(@"^served (\d+)$")]
    private static partial Regex ServedLine();

    /// <summary>One line of the NLog layout <c>${longdate}|${processid}|${level}|${logger}|${message}</c>.</summary>
    private sealed record LogLine(int Pid, string Message)
    {
        public static List<LogLine> ReadAll(string path) => File.ReadAllLines(path)
            .Where(l => l.Length > 0)
            .Select(l => l.Split('|', 5))
            .Where(parts => parts.Length == 5)
            .Select(parts => new LogLine(int.Parse(parts[1], CultureInfo.InvariantCulture), parts[4]))
            .ToList();
    }
}
