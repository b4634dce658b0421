namespace ZeroDowntime.Hosting.FunctionalTests.Infrastructure;

/// <summary>How HAProxy is put in front of the fleet (see <see cref="HaProxy.BuildConfig"/>).</summary>
/// <param name="Servers">Backend servers by name, each a sample instance on 127.0.0.1 and its own port.</param>
/// <param name="CheckPath">The health check: <c>GET CheckPath</c>, healthy on status 200 only.</param>
/// <param name="Retries">
/// <c>false</c>: <c>retries 0</c>, no redispatch, so that every request HAProxy could not deliver reaches the client
/// as a failure. <c>true</c>: <c>retries 3</c> + <c>option redispatch</c>, as many users run it (a refused connect
/// is retried, the last time on another server).
/// </param>
/// <param name="CheckIntervalMs">Health check interval in milliseconds (<c>inter</c>).</param>
/// <param name="Fall">Failed checks in a row before a server is DOWN.</param>
/// <param name="Rise">Passed checks in a row before a server is UP again.</param>
internal sealed record HaProxyOptions(
    IReadOnlyList<(string Name, int Port)> Servers,
    string CheckPath = "/health/ready",
    bool Retries = false,
    int CheckIntervalMs = 100,
    int Fall = 3,
    int Rise = 2)
{
    /// <summary>The longest HAProxy takes to take a failing server out of rotation (its checks run every inter).</summary>
    public TimeSpan TimeToDown => TimeSpan.FromMilliseconds(CheckIntervalMs * Fall);
}
