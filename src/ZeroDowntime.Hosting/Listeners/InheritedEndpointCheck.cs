using Microsoft.Extensions.Logging;
using ZeroDowntime.Hosting.Logging;

namespace ZeroDowntime.Hosting.Listeners;

/// <summary>
/// The successor's last check before it says Ready (Kestrel has bound every endpoint by then): does it keep at least one
/// of the endpoints its predecessor handed it? One that keeps none almost always read another configuration than the
/// running process (started by path from another directory, it takes that directory as its content root and reads no
/// <c>appsettings.json</c>; another environment; a missing <c>Urls</c>), and taking over would close every port the running
/// process serves: a complete outage. So it does not take over (exit <see cref="ZeroDowntimeExitCodes.NoEndpointKept"/>)
/// unless <see cref="ZeroDowntimeOptions.AllowReplacingAllEndpoints"/> says it means it. Keeping some endpoints while
/// dropping others is a reconfiguration, allowed (each dropped one is logged when it is closed, event 10).
/// </summary>
internal static class InheritedEndpointCheck
{
    /// <summary>
    /// Null when this process may take over; else why not, in one line for the predecessor. The refusal itself is logged
    /// here (event 141) and written to stderr, where it is seen even when logging is configured away.
    /// </summary>
    public static string? Refusal(ListenerRegistry registry, ZeroDowntimeOptions options, int predecessorPid, ILogger logger)
    {
        var listeners = registry.Snapshot();
        var inherited = listeners.Where(l => l.Inherited).ToArray();
        if (inherited.Length == 0 || inherited.Any(l => l.State != ListenerState.Waiting))
        {
            return null; // nothing was handed over, or at least one endpoint is kept
        }

        var origin = options.Origin ?? ConfigurationOrigin.Unknown;
        string handed = string.Join(", ", inherited.Select(l => l.WireKey));
        var own = listeners.Where(l => !l.Inherited && l.HeldByKestrel).Select(l => l.WireKey).ToArray();
        string configured = own.Length == 0 ? "no endpoint at all" : string.Join(", ", own);
        if (options.AllowReplacingAllEndpoints)
        {
            logger.ReplacingAllEndpoints(predecessorPid, handed, configured, origin.ContentRoot, origin.EnvironmentName);
            return null;
        }

        string hint = origin.NamesEndpoints ? "" : "; no Urls, HTTP_PORTS, HTTPS_PORTS or Kestrel:Endpoints setting names an endpoint there, so Kestrel's default applies unless the code sets one";
        logger.NoEndpointKept(predecessorPid, handed, configured, origin.ContentRoot, origin.EnvironmentName, origin.FilesText, hint, ZeroDowntimeExitCodes.NoEndpointKept);
        string reason = $"it would serve none of the endpoints it was handed ({handed}), only {configured}: its configuration came from content root {origin.ContentRoot} (environment {origin.EnvironmentName}; configuration files: {origin.FilesText}){hint}. Start it so that it reads its own configuration (cd into its folder, or --contentRoot), or set ZeroDowntime:AllowReplacingAllEndpoints=true";
        Console.Error.WriteLine($"ZeroDowntime: not taking over from pid {predecessorPid}: {reason}. Pid {predecessorPid} keeps serving (exit code {ZeroDowntimeExitCodes.NoEndpointKept})");
        return reason;
    }
}
