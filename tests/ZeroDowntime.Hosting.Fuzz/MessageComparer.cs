using ZeroDowntime.Hosting.Protocol;

namespace ZeroDowntime.Hosting.Fuzz;

/// <summary>Structural equality of messages (records compare lists by reference, so Welcome needs its own).</summary>
internal static class MessageComparer
{
    public static bool Equal(HandoffMessage expected, HandoffMessage actual) => (expected, actual) switch
    {
        (WelcomeMessage a, WelcomeMessage b) =>
            a.Version == b.Version && a.ProcessId == b.ProcessId && a.Listeners.SequenceEqual(b.Listeners)
            && a.Generation == b.Generation && a.FirstStartUnixMilliseconds == b.FirstStartUnixMilliseconds && a.Features == b.Features,
        (StatusMessage a, StatusMessage b) =>
            a with { Listeners = [] } == b with { Listeners = [] } && a.Listeners.SequenceEqual(b.Listeners),
        _ => expected.Equals(actual),
    };
}
