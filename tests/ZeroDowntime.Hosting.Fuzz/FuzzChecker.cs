using System.Diagnostics;
using ZeroDowntime.Hosting.Protocol;

namespace ZeroDowntime.Hosting.Fuzz;

/// <summary>
/// Feeds one input to the reader and checks the properties: only <see cref="HandoffProtocolException"/> is thrown;
/// the input finishes within <see cref="TimeBound"/>; it allocates at most <see cref="AllocationBound"/>; the
/// outcome does not depend on how the bytes were chunked; valid frames decode to the messages that were encoded; and
/// every message the reader accepts re-encodes to the very bytes it came from (Hello: to a prefix of them, since a
/// newer peer may append fields), so reader and writer agree on what is valid.
/// </summary>
/// <remarks>One instance per thread: allocations are measured for the current thread.</remarks>
internal sealed class FuzzChecker(TimeSpan timeBound)
{
    /// <summary>Allocation allowed whatever the input: exception objects, stack traces, a listener array.</summary>
    public const long FixedAllocationBound = 2 * HandoffProtocol.MaxPayloadLength;

    /// <summary>Allocation allowed per byte actually received: a UTF-8 byte becomes at most one UTF-16 char (2 bytes).</summary>
    public const long AllocationPerInputByte = 3;

    private readonly FrameReaderHarness _harness = new();
    private readonly List<DecodedFrame> _decoded = new(64);

    public TimeSpan TimeBound { get; } = timeBound;

    /// <summary>
    /// The most one input may allocate. Nothing is allocated for a length that was announced but not sent, so the
    /// bound grows with the bytes sent, never with the lengths claimed; for one maximal frame it is 5 × MaxPayloadLength.
    /// </summary>
    public static long AllocationBound(int inputLength) => FixedAllocationBound + (AllocationPerInputByte * inputLength);

    /// <summary>Feeds the input without checking anything: warms up the code paths before allocations are measured.</summary>
    public void WarmUp(FuzzCase input) => _harness.Feed(input.Input, input.Chunks);

    public FuzzMeasurement Check(FuzzCase input)
    {
        _decoded.Clear();
        long allocatedBefore = GC.GetAllocatedBytesForCurrentThread();
        long started = Stopwatch.GetTimestamp();
        FeedOutcome outcome;
        try
        {
            outcome = _harness.Feed(input.Input, input.Chunks, _decoded);
        }
        catch (Exception ex)
        {
            throw new FuzzPropertyException($"The reader threw {ex.GetType().FullName} (only HandoffProtocolException is allowed): {ex.Message}", ex);
        }

        var elapsed = Stopwatch.GetElapsedTime(started);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - allocatedBefore;

        if (elapsed > TimeBound)
        {
            throw new FuzzPropertyException($"The input took {elapsed.TotalMilliseconds:0.###} ms; the bound is {TimeBound.TotalMilliseconds:0} ms.");
        }

        if (allocated > AllocationBound(input.Input.Length))
        {
            throw new FuzzPropertyException($"The input allocated {allocated} bytes; the bound for {input.Input.Length} input bytes is {AllocationBound(input.Input.Length)}.");
        }

        if (input.Chunks.Length > 0)
        {
            var whole = _harness.Feed(input.Input, []);
            if (whole.Messages != outcome.Messages || whole.End != outcome.End)
            {
                throw new FuzzPropertyException($"Chunked, the reader decoded {outcome.Messages} message(s) then {outcome.End} ({outcome.Error}); " +
                    $"in one piece, {whole.Messages} then {whole.End} ({whole.Error}).");
            }
        }

        if (input.Expected is { } expected)
        {
            CheckRoundTrip(expected, outcome);
        }

        foreach (var frame in _decoded)
        {
            CheckReEncodes(input.Input, frame);
        }

        return new FuzzMeasurement(outcome, allocated, elapsed);
    }

    private void CheckRoundTrip(HandoffMessage[] expected, FeedOutcome outcome)
    {
        if (outcome.End != FeedEnd.EndOfStream || _decoded.Count != expected.Length)
        {
            throw new FuzzPropertyException($"{expected.Length} valid frame(s) gave {outcome.Messages} message(s) then {outcome.End} ({outcome.Error}).");
        }

        for (int i = 0; i < expected.Length; i++)
        {
            if (!MessageComparer.Equal(expected[i], _decoded[i].Message))
            {
                throw new FuzzPropertyException($"Frame {i} was encoded from {expected[i]} but decoded to {_decoded[i].Message}.");
            }
        }
    }

    private static void CheckReEncodes(byte[] input, DecodedFrame frame)
    {
        byte[] again;
        try
        {
            again = HandoffProtocol.Encode(frame.Message);
        }
        catch (Exception ex)
        {
            throw new FuzzPropertyException($"The reader accepted {frame.Message} but the writer refuses it: {ex.GetType().Name}: {ex.Message}", ex);
        }

        var original = input.AsSpan(frame.Start, frame.Length);
        bool same = frame.Message is HelloMessage
            ? again.AsSpan(0, 3).SequenceEqual(original[..3]) && original[HandoffProtocol.HeaderLength..].StartsWith(again.AsSpan(HandoffProtocol.HeaderLength))
            : again.AsSpan().SequenceEqual(original);
        if (!same)
        {
            throw new FuzzPropertyException($"{frame.Message} was decoded from {Convert.ToHexString(original)} but encodes to {Convert.ToHexString(again)}.");
        }
    }
}
