using System.Globalization;
using System.Text.RegularExpressions;

namespace ZeroDowntime.Hosting.NLog.Internal;

/// <summary>Expands <see cref="LogFileHandoffOptions.ArchiveFileName"/> for one log file.</summary>
internal sealed partial class ArchiveFileNamer(string pattern)
{
    private const string DefaultTimeFormat = "yyyy-MM-ddTHH-mm-ss";

    /// <summary>Every reason why <paramref name="pattern"/> cannot be used; empty when it can.</summary>
    public static IReadOnlyList<string> Validate(string? pattern)
    {
        var errors = new List<string>();
        if (string.IsNullOrWhiteSpace(pattern))
        {
            errors.Add("ArchiveFileName must not be empty.");
            return errors;
        }

        if (!pattern.Contains("{pid}", StringComparison.Ordinal))
        {
            errors.Add($"ArchiveFileName '{pattern}' must contain {{pid}}, so that the name says which process wrote the file.");
        }

        if (pattern.Contains('/', StringComparison.Ordinal) || pattern.Contains('\\', StringComparison.Ordinal))
        {
            errors.Add($"ArchiveFileName '{pattern}' must be a file name without directories: the archive stays next to the log file.");
        }

        foreach (Match match in Placeholder().Matches(pattern))
        {
            string name = match.Groups["name"].Value;
            if (name is not ("name" or "ext" or "pid" or "time"))
            {
                errors.Add($"ArchiveFileName '{pattern}' has an unknown placeholder {{{name}}}; use {{name}}, {{ext}}, {{pid}} and {{time}} or {{time:format}}.");
            }
            else if (name == "time" && match.Groups["format"].Success)
            {
                try
                {
                    _ = DateTime.UnixEpoch.ToString(match.Groups["format"].Value, CultureInfo.InvariantCulture);
                }
                catch (FormatException)
                {
                    errors.Add($"ArchiveFileName '{pattern}' has an invalid time format '{match.Groups["format"].Value}'.");
                }
            }
        }

        return errors;
    }

    /// <summary>
    /// The full path of the archive of <paramref name="originalPath"/> written by <paramref name="processId"/>, renamed
    /// at <paramref name="utcNow"/>; a free name (a counter is inserted before the extension when one is taken).
    /// </summary>
    public string For(string originalPath, string processId, DateTime utcNow)
    {
        string directory = Path.GetDirectoryName(originalPath) ?? ".";
        string fileName = Path.GetFileName(originalPath);
        string ext = Path.GetExtension(fileName);
        string name = Path.GetFileNameWithoutExtension(fileName);
        string expanded = Placeholder().Replace(pattern, match => match.Groups["name"].Value switch
        {
            "name" => name,
            "ext" => ext,
            "pid" => processId,
            "time" => utcNow.ToString(match.Groups["format"].Success ? match.Groups["format"].Value : DefaultTimeFormat, CultureInfo.InvariantCulture),
            _ => match.Value,
        });

        string candidate = Path.Combine(directory, expanded);
        string candidateExt = Path.GetExtension(expanded);
        string stem = Path.Combine(directory, expanded[..^candidateExt.Length]);
        for (int n = 1; File.Exists(candidate) || string.Equals(candidate, originalPath, StringComparison.Ordinal); n++)
        {
            candidate = $"{stem}.{n.ToString(CultureInfo.InvariantCulture)}{candidateExt}";
        }

        return candidate;
    }

    [GeneratedRegex(@"\{(?<name>[a-z]+)(:(?<format>[^}]+))?\}")]
    private static partial Regex Placeholder();
}
