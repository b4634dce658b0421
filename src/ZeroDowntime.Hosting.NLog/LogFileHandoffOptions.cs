namespace ZeroDowntime.Hosting.NLog;

/// <summary>
/// Options of <see cref="ZeroDowntimeNLogWebHostBuilderExtensions.UseZeroDowntimeNLog(Microsoft.AspNetCore.Hosting.IWebHostBuilder)"/>,
/// bound from the configuration section <c>ZeroDowntime:LogFiles</c>.
/// </summary>
public sealed class LogFileHandoffOptions
{
    /// <summary>The configuration section these options are bound from.</summary>
    public const string SectionName = "ZeroDowntime:LogFiles";

    /// <summary>The archive file name pattern used when no other is configured.</summary>
    public const string DefaultArchiveFileName = "{name}.{time:yyyy-MM-ddTHH-mm-ss}.{pid}{ext}";

    /// <summary>
    /// Whether log files change hands with the listeners. When false NLog's file targets are left alone (and two
    /// processes write one file during a handoff).
    /// </summary>
    /// <remarks>Defaults to <see langword="true"/>.</remarks>
    public bool Enabled { get; set; } = true;

    /// <summary>
    /// The name that a process gives its log file when it lets it go (at the handoff's commit point, or when it
    /// failed before it ever owned it). The file stays in its directory. Placeholders: <c>{name}</c> the original
    /// file name without its extension, <c>{ext}</c> the original extension with its dot (<c>.log</c>),
    /// <c>{pid}</c> the id of the process that wrote the file, <c>{time}</c> or <c>{time:format}</c> the moment of
    /// the rename in UTC (.NET date format, default <c>yyyy-MM-ddTHH-mm-ss</c>). If the name is taken, <c>.1</c>,
    /// <c>.2</c>, ... is inserted before the extension.
    /// </summary>
    /// <remarks>
    /// Defaults to <c>{name}.{time:yyyy-MM-ddTHH-mm-ss}.{pid}{ext}</c>, for example
    /// <c>webapi.2024-05-01T10-00-00.12345.log</c>. Must contain <c>{pid}</c> and no directory separator.
    /// </remarks>
    public string ArchiveFileName { get; set; } = DefaultArchiveFileName;

    /// <summary>
    /// How many lines a process keeps in memory, per log file, while it waits to own its log files (from start-up
    /// until its predecessor has released them). Further lines go to a side file
    /// (<c>.{file name}.{pid}.held</c> next to the log file); nothing is dropped, and all are written in order
    /// when the file is acquired.
    /// </summary>
    /// <remarks>Defaults to 10000. Zero sends every held line to the side file.</remarks>
    public int MaxHeldLines { get; set; } = 10_000;

    /// <summary>The NLog factory whose file targets change hands.</summary>
    /// <remarks>Defaults to <c>NLog.LogManager.LogFactory</c>, the one that <c>UseNLog()</c> uses.</remarks>
    public global::NLog.LogFactory? LogFactory { get; set; }

    /// <summary>Values of the section that could not be parsed, one message each naming its key (reported by the validator).</summary>
    internal List<string> BindingErrors { get; } = [];
}
