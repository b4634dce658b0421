
namespace ZeroDowntime.Hosting.Listeners;

/// <summary>
/// Marks a connection that the warm-up handed Kestrel (see <see cref="IZeroDowntimeWarmupFeature"/>), and counts the
/// requests on it that reached the app's pipeline: an answer that never did is Kestrel's own (for example a 400 to an
/// HTTP/1.1 request on an HTTP/2-only endpoint), not the app's.
/// </summary>
internal sealed class WarmupConnectionFeature(string endpoint) : IZeroDowntimeWarmupFeature
{
    private int _reachedApp;

    public string Endpoint { get; } = endpoint;

    public int ReachedApp => Volatile.Read(ref _reachedApp);

    public void OnReachedApp() => Interlocked.Increment(ref _reachedApp);
}
