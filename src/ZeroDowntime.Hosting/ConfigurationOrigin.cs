using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.FileProviders;
using Microsoft.Extensions.Hosting;
using ZeroDowntime.Hosting.Interop;

namespace ZeroDowntime.Hosting;

/// <summary>
/// Where this process read its configuration from: the content root, the environment, and every configuration file with
/// whether it was found. A new release started from another directory takes its content root from there and reads no
/// <c>appsettings.json</c> at all; logged at start (event 140) and named when a successor would drop every endpoint, this
/// makes such a mistake visible at once.
/// </summary>
internal sealed record ConfigurationOrigin(string ContentRoot, string EnvironmentName, IReadOnlyList<ConfigurationFile> Files, bool NamesEndpoints)
{
    /// <summary>Stands in where the options were made by hand (no host environment to read).</summary>
    public static ConfigurationOrigin Unknown { get; } = new("(unknown)", "(unknown)", [], NamesEndpoints: true);

    /// <summary>The configuration files as one text: each full path, "(not found)" after the missing ones; "none".</summary>
    public string FilesText => Files.Count == 0
        ? "none"
        : string.Join(", ", Files.Select(f => f.Found ? f.Path : f.Path + " (not found)"));

    public static ConfigurationOrigin Read(IHostEnvironment environment, IConfiguration configuration)
    {
        var files = new List<ConfigurationFile>();
        if (configuration is IConfigurationRoot root)
        {
            foreach (var provider in root.Providers)
            {
                if (provider is FileConfigurationProvider { Source: { Path: { Length: > 0 } path } source })
                {
                    files.Add(Describe(source.FileProvider, path, environment.ContentRootPath));
                }
            }
        }

        // The keys by which configuration names Kestrel's endpoints (ASPNETCORE_URLS, --urls and DOTNET_URLS all land
        // in "urls"). Endpoints set in code (Listen, UseUrls on a generic host) are not seen here.
        bool namesEndpoints = !string.IsNullOrEmpty(configuration["urls"])
            || !string.IsNullOrEmpty(configuration["http_ports"])
            || !string.IsNullOrEmpty(configuration["https_ports"])
            || configuration.GetSection("Kestrel:Endpoints").GetChildren().Any();
        return new ConfigurationOrigin(environment.ContentRootPath, environment.EnvironmentName, files, namesEndpoints);
    }

    private static ConfigurationFile Describe(IFileProvider? fileProvider, string path, string contentRoot)
    {
        var info = fileProvider?.GetFileInfo(path);
        if (info is { Exists: true, PhysicalPath: { } physical })
        {
            return new ConfigurationFile(physical, Found: true);
        }

        // A missing file has no physical path: name where it was looked for.
        string where = fileProvider is PhysicalFileProvider physicalProvider
            ? Path.Combine(physicalProvider.Root, path)
            : Path.GetFullPath(path, contentRoot);
        return new ConfigurationFile(where, info?.Exists ?? File.Exists(where));
    }
}

/// <summary>One configuration file of a <see cref="ConfigurationOrigin"/>.</summary>
internal readonly record struct ConfigurationFile(string Path, bool Found);
