
namespace ZeroDowntime.Hosting;

/// <summary>
/// How the running process starts its successor itself (section <c>ZeroDowntime:Upgrade</c>): on a signal, or when
/// <c>zerodowntime upgrade</c> asks over the handoff socket. The usual handoff follows.
/// </summary>
public sealed class ZeroDowntimeUpgradeOptions
{
    /// <summary>The signal on which this process starts its successor.</summary>
    /// <remarks>Defaults to <see cref="ZeroDowntimeUpgradeSignal.SigHup"/>. With <see cref="ZeroDowntimeUpgradeSignal.None"/>
    /// (or <c>SIGUSR2</c>) a SIGHUP is logged and ignored.</remarks>
    public ZeroDowntimeUpgradeSignal Signal { get; set; } = ZeroDowntimeUpgradeSignal.SigHup;

    /// <summary>
    /// The command line of the successor, run with <c>/bin/sh -c</c>. Empty: this process's own command line
    /// (argv as given, from <c>/proc/self/cmdline</c>), in the same environment.
    /// </summary>
    /// <remarks>Defaults to empty.</remarks>
    public string? Command { get; set; }

    /// <summary>
    /// The working directory of the successor. Empty: the path this process was started in, as the shell named it
    /// (<c>$PWD</c>, when it still names the current directory), so that <c>/srv/app/current</c> resolves to the new
    /// release after the link was switched; else the current directory.
    /// </summary>
    /// <remarks>Defaults to empty. Must be absolute when set.</remarks>
    public string? WorkingDirectory { get; set; }
}

/// <summary>The signal on which a running process starts its successor (<see cref="ZeroDowntimeUpgradeOptions.Signal"/>).</summary>
public enum ZeroDowntimeUpgradeSignal
{
    /// <summary>No signal: upgrades only by <c>zerodowntime upgrade</c> (or by starting the new version by hand).</summary>
    None,

    /// <summary><c>SIGHUP</c>, the reload signal of nginx, HAProxy and tableflip (configuration value <c>SIGHUP</c>).</summary>
    SigHup,

    /// <summary><c>SIGUSR2</c> (configuration value <c>SIGUSR2</c>).</summary>
    SigUsr2,
}
