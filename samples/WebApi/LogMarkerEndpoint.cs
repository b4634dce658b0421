using System.Globalization;

namespace ZeroDowntime.Sample;

/// <summary><c>GET /log/{id}</c>: writes one Information line <c>log-marker {id}</c>; <c>{id}</c> must be an integer.</summary>
internal static partial class LogMarkerEndpoint
{
    /// <summary>The logger category of the marker lines.</summary>
    public const string Category = "ZeroDowntime.Sample.LogMarker";

    public static IResult Handle(string id, ILoggerFactory loggers)
    {
        if (!int.TryParse(id, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int marker))
        {
            return Results.BadRequest("id must be an integer\n");
        }

        LogMarkerLine(loggers.CreateLogger(Category), marker);
        return Results.Text($"logged {marker}\n");
    }

    [LoggerMessage(1001, LogLevel.Information, "log-marker {Id}")]
    private static partial void LogMarkerLine(ILogger logger, int id);
}
