
namespace ZeroDowntime.Hosting.Warmup;

/// <summary>One request of <see cref="ZeroDowntimeWarmupOptions.Requests"/>: <c>METHOD /path</c>, then header lines.</summary>
internal sealed record WarmupRequest(string Method, string PathAndQuery, IReadOnlyList<KeyValuePair<string, string>> Headers)
{
    /// <summary>How the request is named in logs and in a handoff's failure reason.</summary>
    public override string ToString() => $"{Method} {PathAndQuery}";

    /// <summary>Parses <paramref name="text"/>; on failure <paramref name="error"/> says what to write instead.</summary>
    public static WarmupRequest? Parse(string? text, out string? error)
    {
        error = null;
        string[] lines = (text ?? "").Replace("\r", "", StringComparison.Ordinal).Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (lines.Length == 0)
        {
            error = "is empty; write METHOD /path, for example GET /health/live";
            return null;
        }

        string[] requestLine = lines[0].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        if (requestLine.Length != 2 || !IsToken(requestLine[0]) || !requestLine[1].StartsWith('/') || requestLine[1].Any(char.IsWhiteSpace))
        {
            error = $"'{lines[0]}' is not METHOD /path (for example GET /health/live)";
            return null;
        }

        var headers = new List<KeyValuePair<string, string>>();
        foreach (string line in lines.Skip(1))
        {
            int colon = line.IndexOf(':', StringComparison.Ordinal);
            if (colon <= 0 || !IsToken(line[..colon].Trim()))
            {
                error = $"header line '{line}' is not Name: value";
                return null;
            }

            headers.Add(new(line[..colon].Trim(), line[(colon + 1)..].Trim()));
        }

        return new WarmupRequest(requestLine[0].ToUpperInvariant(), requestLine[1], headers);
    }

    /// <summary>An HTTP token (RFC 9110): a method or a header name.</summary>
    private static bool IsToken(string text) =>
        text.Length > 0 && text.All(c => c is > ' ' and < '\u007f' && !"\"(),/:;<=>?@[\\]{}".Contains(c, StringComparison.Ordinal));
}
