using System.Globalization;
using System.Text.RegularExpressions;
using Xunit.Abstractions;

namespace ZeroDowntime.Hosting.FunctionalTests.Infrastructure;

/// <summary>The log files of one test's log directory, parsed.</summary>
internal sealed partial class LogFiles
{
    private LogFiles(List<LogFile> all) => All = all;

    public List<LogFile> All { get; }

    public LogFile? Current => All.SingleOrDefault(f => f.Name == "webapi.log");

    public List<LogFile> Archives => All.Where(f => f.Name != "webapi.log").ToList();

    public static LogFiles Read(string directory)
    {
        var files = new List<LogFile>();
        foreach (string path in Directory.GetFiles(directory, "webapi*.log").Order(StringComparer.Ordinal))
        {
            string name = Path.GetFileName(path);
            int? namedPid = null;
            if (name != "webapi.log")
            {
                var archive = ArchiveName().Match(name);
                Assert.True(archive.Success, $"{name} is not named as documented (webapi.yyyy-MM-ddTHH-mm-ss.<pid>.log)");
                namedPid = int.Parse(archive.Groups["pid"].Value, CultureInfo.InvariantCulture);
            }

            var lines = File.ReadAllLines(path);
            var pids = lines.Select(l => LineStart().Match(l)).Where(m => m.Success)
                .Select(m => int.Parse(m.Groups["pid"].Value, CultureInfo.InvariantCulture)).ToHashSet();
            files.Add(new LogFile(name, namedPid, lines, [.. pids.Order()]));
        }

        return new LogFiles(files);
    }

    public Dictionary<int, int> MarkerCounts()
    {
        var counts = new Dictionary<int, int>();
        foreach (var match in All.SelectMany(f => f.Lines).Select(l => Marker().Match(l)).Where(m => m.Success))
        {
            int id = int.Parse(match.Groups["id"].Value, CultureInfo.InvariantCulture);
            counts[id] = counts.GetValueOrDefault(id) + 1;
        }

        return counts;
    }

    public string Describe() =>
        $"{All.Count} log file(s), {All.Sum(f => f.Lines.Count)} lines, {MarkerCounts().Count} distinct markers:{Environment.NewLine}"
        + string.Join(Environment.NewLine, All.Select(f => $"  {f.Name}: {f.Lines.Count} lines, {f.Lines.Count(l => Marker().IsMatch(l))} markers, pids {string.Join(",", f.Pids)}"));

    /// <summary>"category|message" of a file line, as <see cref="ConsoleCategoryAndMessage"/> gives it for a console line.</summary>
    public static string? CategoryAndMessage(string line)
    {
        var parts = line.Split('|', 5);
        return parts.Length == 5 && LineStart().IsMatch(line) ? parts[3] + "|" + parts[4] : null;
    }

    /// <summary>The event id of a file line (files have none): that of the console line of the process with its text.</summary>
    public static int? EventIdOf(string line, SampleApp app)
    {
        string? key = CategoryAndMessage(line);
        if (key is null)
        {
            return null;
        }

        foreach (string console in app.Lines)
        {
            var match = ConsoleLine().Match(console);
            if (match.Success && match.Groups["cat"].Value + "|" + match.Groups["msg"].Value == key)
            {
                return int.Parse(match.Groups["id"].Value, CultureInfo.InvariantCulture);
            }
        }

        return null;
    }

    public static int? MarkerId(string line)
    {
        var match = Marker().Match(line);
        return match.Success ? int.Parse(match.Groups["id"].Value, CultureInfo.InvariantCulture) : null;
    }

    [GeneratedRegex(@"^webapi\.\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}\.(?<pid>\d+)\.log$")]
    private static partial Regex ArchiveName();

    [GeneratedRegex(@"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{4}\|(?<pid>\d+)\|")]
    private static partial Regex LineStart();

    [GeneratedRegex(@"\|ZeroDowntime\.Sample\.LogMarker\|log-marker (?<id>-?\d+)$")]
    private static partial Regex Marker();

    /// <summary>Every line that <paramref name="app"/> wrote to its console from the library and the host is in <paramref name="file"/>.</summary>
    public static void AssertEveryLibraryLineIn(SampleApp app, LogFile file, ITestOutputHelper output)
    {
        var written = file.Lines.Select(LogFiles.CategoryAndMessage).Where(l => l is not null).ToHashSet(StringComparer.Ordinal);
        var expected = app.Lines.Select(ConsoleCategoryAndMessage).Where(l => l is not null && (l.StartsWith("ZeroDowntime.", StringComparison.Ordinal) || l.StartsWith("Microsoft.Hosting.Lifetime|", StringComparison.Ordinal))).ToList();
        var lost = expected.Where(l => !written.Contains(l!)).ToList();
        output.WriteLine($"{app.Name}: {expected.Count} console lines of the library and host, {lost.Count} missing from {file.Name}");
        Assert.True(lost.Count == 0, $"{app.Name} (pid {app.Pid}): {lost.Count} of {expected.Count} lines missing from {file.Name}, first: {string.Join(" || ", lost.Take(10))}");
        Assert.True(expected.Count >= 8, $"{app.Name}: only {expected.Count} console lines parsed");
    }

    /// <summary>"category|message" of a console line, as <see cref="CategoryAndMessage"/> gives it for a file line.</summary>
    public static string? ConsoleCategoryAndMessage(string line)
    {
        var match = ConsoleLine().Match(line);
        return match.Success ? match.Groups["cat"].Value + "|" + match.Groups["msg"].Value : null;
    }

    /// <summary>A line of the console's simple single-line formatter as SampleApp configures it.</summary>
    [GeneratedRegex(@"^\d\d:\d\d:\d\d\.\d{3} (?:info|warn|fail|crit): (?<cat>[^\[ ]+)\[(?<id>\d+)\] (?<msg>.*)$")]
    private static partial Regex ConsoleLine();
}

internal sealed record LogFile(string Name, int? NamedPid, IReadOnlyList<string> Lines, IReadOnlyList<int> Pids);
