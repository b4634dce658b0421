using System.Globalization;

namespace ZeroDowntime.Hosting.NLog.Internal;

/// <summary>
/// Which process owns a log file: a small hidden file next to it (<c>.webapi.log.owner</c> holds the pid). It lets
/// the next owner name the archive of a file whose writer died without releasing it (killed during a handoff, or a
/// plain restart) after the process that wrote it.
/// </summary>
internal static class OwnerRecord
{
    public const string Unknown = "unknown";

    public static string PathFor(string logPath) =>
        Path.Combine(Path.GetDirectoryName(logPath) ?? ".", "." + Path.GetFileName(logPath) + ".owner");

    /// <summary>The recorded owner's pid, or <see cref="Unknown"/>.</summary>
    public static string Read(string logPath)
    {
        try
        {
            string text = File.ReadAllText(PathFor(logPath)).Trim();
            return int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out int pid) ? pid.ToString(CultureInfo.InvariantCulture) : Unknown;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return Unknown;
        }
    }

    public static void Write(string logPath, int processId)
    {
        try
        {
            File.WriteAllText(PathFor(logPath), processId.ToString(CultureInfo.InvariantCulture));
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
        }
    }

    /// <summary>Removes the record if it names <paramref name="processId"/>.</summary>
    public static void Delete(string logPath, int processId)
    {
        if (Read(logPath) == processId.ToString(CultureInfo.InvariantCulture))
        {
            try
            {
                File.Delete(PathFor(logPath));
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
            }
        }
    }
}
