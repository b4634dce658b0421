using ZeroDowntime.Hosting.Tests.Infrastructure;

namespace ZeroDowntime.Hosting.FunctionalTests.Infrastructure;

/// <summary>One HTTP/1.1 response as it came off the wire.</summary>
internal sealed record RawResponse(int Status, IReadOnlyDictionary<string, string> Headers, string Body)
{
    public bool ConnectionClose => Headers.TryGetValue("connection", out string? value) && value.Contains("close", StringComparison.OrdinalIgnoreCase);
}
