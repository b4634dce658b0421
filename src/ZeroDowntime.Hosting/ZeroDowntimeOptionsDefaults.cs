using System.Text;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using ZeroDowntime.Hosting.Interop;

namespace ZeroDowntime.Hosting;

/// <summary>
/// Fills in the defaults that depend on the host: the application id and the per-user socket path; and notes where the
/// configuration was read from (<see cref="ZeroDowntimeOptions.Origin"/>).
/// </summary>
internal sealed class ZeroDowntimeOptionsDefaults(IHostEnvironment environment, IConfiguration configuration) : IPostConfigureOptions<ZeroDowntimeOptions>
{
    public void PostConfigure(string? name, ZeroDowntimeOptions options)
    {
        options.Origin ??= ConfigurationOrigin.Read(environment, configuration);
        if (string.IsNullOrEmpty(options.ApplicationId))
        {
            options.ApplicationId = environment.ApplicationName;
        }

        if (string.IsNullOrEmpty(options.SocketPath))
        {
            options.SocketPath = DefaultSocketPath(options.ApplicationId, Environment.GetEnvironmentVariable("XDG_RUNTIME_DIR"));
        }
    }

    /// <summary>
    /// <c>$XDG_RUNTIME_DIR/zerodowntime/</c> (when absolute), else <c>zerodowntime-{euid}/</c> under
    /// <see cref="Path.GetTempPath"/> (<c>$TMPDIR</c> or <c>/tmp/</c>), and the id with every character outside
    /// <c>[A-Za-z0-9._-]</c> replaced by <c>_</c>. The zerodowntime tool's <c>--app</c> computes the same from its own
    /// environment.
    /// </summary>
    internal static string DefaultSocketPath(string applicationId, string? runtimeDirectory)
    {
        var file = new StringBuilder(applicationId.Length);
        foreach (char c in applicationId)
        {
            file.Append(char.IsAsciiLetterOrDigit(c) || c is '.' or '-' or '_' ? c : '_');
        }

        string directory = !string.IsNullOrEmpty(runtimeDirectory) && Path.IsPathRooted(runtimeDirectory)
            ? Path.Combine(runtimeDirectory, "zerodowntime")
            : Path.Combine(Path.GetTempPath(), $"zerodowntime-{(OperatingSystem.IsLinux() ? Libc.geteuid() : 0)}");

        // A long ApplicationId must not make the default path unusable: keep a prefix of it and a hash of the whole,
        // so that two long ids stay apart and the path (and its temporary twin) fits sun_path.
        int room = ZeroDowntimeOptionsValidator.MaxSocketPathBytes - Encoding.UTF8.GetByteCount(directory) - 1 - ".sock".Length;
        if (file.Length > room && room >= 16)
        {
            string hash = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(Encoding.UTF8.GetBytes(applicationId)))[..8];
            file.Length = room - 9;
            file.Append('-').Append(hash);
        }

        return Path.Combine(directory, file + ".sock");
    }
}
