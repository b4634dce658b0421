
namespace ZeroDowntime.Hosting;

/// <summary>
/// Present in <c>HttpContext.Features</c> (and the connection's features) only for the requests of the warm-up
/// (<see cref="ZeroDowntimeWarmupOptions"/>): they come from inside this process, over a connection that the library
/// handed Kestrel itself, so no client can send one. Test for it to keep warm-up traffic out of the app's own metrics
/// and side effects, for example <c>context.Features.Get&lt;IZeroDowntimeWarmupFeature&gt;() is not null</c>.
/// </summary>
public interface IZeroDowntimeWarmupFeature
{
    /// <summary>The endpoint the warm-up connection was handed to, as Kestrel lists it (for example <c>http://127.0.0.1:8080</c>).</summary>
    string Endpoint { get; }
}
