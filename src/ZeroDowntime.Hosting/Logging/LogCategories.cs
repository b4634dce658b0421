namespace ZeroDowntime.Hosting.Logging;

/// <summary>
/// The library's log categories, one per area and fixed (as Kestrel's <c>Microsoft.AspNetCore.Server.Kestrel.*</c>):
/// users filter on them (<c>"ZeroDowntime.Hosting.Drain": "Warning"</c>, or <c>"ZeroDowntime.Hosting"</c> for all),
/// and they do not change when a type is renamed. The README's event table lists each event's category.
/// </summary>
internal static class LogCategories
{
    /// <summary>The handoff itself: the coordinator, the three machines, the handoff socket, the participants, exit codes.</summary>
    public const string Handoff = "ZeroDowntime.Hosting.Handoff";

    /// <summary>Kestrel's listening sockets: inherited, bound, handed over, dropped.</summary>
    public const string Listeners = "ZeroDowntime.Hosting.Listeners";

    /// <summary>The drain after a handoff or on a shutdown, long-lived connections, draining generations.</summary>
    public const string Drain = "ZeroDowntime.Hosting.Drain";

    /// <summary>Upgrades started by the running process (the upgrade signal, <c>zerodowntime upgrade</c>).</summary>
    public const string Upgrade = "ZeroDowntime.Hosting.Upgrade";

    /// <summary>The service manager: sd_notify, its fd store, socket activation.</summary>
    public const string Systemd = "ZeroDowntime.Hosting.Systemd";

    /// <summary>The warm-up and the readiness gate before Ready.</summary>
    public const string Warmup = "ZeroDowntime.Hosting.Warmup";

    /// <summary>Start-up: where the configuration came from, the start-up timeline, an unsupported platform.</summary>
    public const string Startup = "ZeroDowntime.Hosting.Startup";
}
