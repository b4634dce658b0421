using System.Globalization;
using System.Text;

namespace ZeroDowntime.Hosting.Fuzz;

/// <summary>Figures of a run.</summary>
internal sealed class FuzzReport
{
    private static readonly int GeneratorCount = Enum.GetValues<FuzzGenerator>().Length;

    public ulong Seed { get; init; }

    public long Inputs { get; set; }

    public long Bytes { get; set; }

    public TimeSpan Elapsed { get; set; }

    public long[] PerGenerator { get; } = new long[GeneratorCount];

    public long[] MessagesPerGenerator { get; } = new long[GeneratorCount];

    public long[] ErrorsPerGenerator { get; } = new long[GeneratorCount];

    /// <summary>How often each reader check refused an input (numbers in the message replaced by #).</summary>
    public SortedDictionary<string, long> Refusals { get; } = new(StringComparer.Ordinal);

    public long MaxAllocated { get; set; }

    public int MaxAllocatedInputLength { get; set; }

    public TimeSpan MaxElapsed { get; set; }

    public int MaxElapsedInputLength { get; set; }

    public FuzzFailure? Failure { get; set; }

    public double InputsPerSecond => Inputs / Math.Max(Elapsed.TotalSeconds, 1e-9);

    public void Add(FuzzReport other)
    {
        Inputs += other.Inputs;
        Bytes += other.Bytes;
        for (int i = 0; i < GeneratorCount; i++)
        {
            PerGenerator[i] += other.PerGenerator[i];
            MessagesPerGenerator[i] += other.MessagesPerGenerator[i];
            ErrorsPerGenerator[i] += other.ErrorsPerGenerator[i];
        }

        foreach (var (refusal, count) in other.Refusals)
        {
            Refusals[refusal] = Refusals.GetValueOrDefault(refusal) + count;
        }

        if (other.MaxAllocated > MaxAllocated)
        {
            (MaxAllocated, MaxAllocatedInputLength) = (other.MaxAllocated, other.MaxAllocatedInputLength);
        }

        if (other.MaxElapsed > MaxElapsed)
        {
            (MaxElapsed, MaxElapsedInputLength) = (other.MaxElapsed, other.MaxElapsedInputLength);
        }

        Failure ??= other.Failure;
    }

    public string Format()
    {
        var text = new StringBuilder();
        var c = CultureInfo.InvariantCulture;
        text.AppendLine(c, $"seed {Seed}: {Inputs:N0} inputs ({Bytes:N0} bytes) in {Elapsed.TotalSeconds:0.0} s = {InputsPerSecond:N0} inputs/s");
        foreach (var generator in Enum.GetValues<FuzzGenerator>())
        {
            int i = (int)generator;
            text.AppendLine(c, $"  {generator,-14} {PerGenerator[i],12:N0} inputs {MessagesPerGenerator[i],12:N0} messages decoded {ErrorsPerGenerator[i],12:N0} refused");
        }

        text.AppendLine(c, $"  max allocation per input: {MaxAllocated:N0} bytes (input of {MaxAllocatedInputLength:N0} bytes; bound {FuzzChecker.AllocationBound(MaxAllocatedInputLength):N0})");
        text.AppendLine(c, $"  max time per input: {MaxElapsed.TotalMilliseconds:0.###} ms (input of {MaxElapsedInputLength:N0} bytes)");
        text.AppendLine("  refusals by reason:");
        foreach (var (refusal, count) in Refusals)
        {
            text.AppendLine(c, $"    {count,12:N0}  {refusal}");
        }

        return text.ToString();
    }

    public void Record(FuzzCase input, FuzzMeasurement measurement)
    {
        int g = (int)input.Generator;
        Inputs++;
        Bytes += input.Input.Length;
        PerGenerator[g]++;
        MessagesPerGenerator[g] += measurement.Outcome.Messages;
        if (measurement.Outcome.End != FeedEnd.EndOfStream)
        {
            ErrorsPerGenerator[g]++;
            string refusal = measurement.Outcome.End == FeedEnd.Truncated ? "end of stream in the middle of a frame" : Normalize(measurement.Outcome.Error);
            Refusals[refusal] = Refusals.GetValueOrDefault(refusal) + 1;
        }

        if (measurement.AllocatedBytes > MaxAllocated)
        {
            (MaxAllocated, MaxAllocatedInputLength) = (measurement.AllocatedBytes, input.Input.Length);
        }

        if (measurement.Elapsed > MaxElapsed)
        {
            (MaxElapsed, MaxElapsedInputLength) = (measurement.Elapsed, input.Input.Length);
        }
    }

    private static string Normalize(string? error)
    {
        var text = new StringBuilder();
        foreach (char c in error ?? "")
        {
            if (!char.IsAsciiDigit(c))
            {
                text.Append(c);
            }
            else if (text.Length == 0 || text[^1] != '#')
            {
                text.Append('#');
            }
        }

        return text.ToString();
    }
}
