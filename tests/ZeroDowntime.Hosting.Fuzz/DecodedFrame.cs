using ZeroDowntime.Hosting.Protocol;

namespace ZeroDowntime.Hosting.Fuzz;

/// <summary>A frame the reader decoded, and where its bytes were in the input.</summary>
internal readonly record struct DecodedFrame(HandoffMessage Message, int Start, int Length);
