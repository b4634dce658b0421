using System.Diagnostics;
using System.Globalization;
using System.Text;
using CsCheck;

namespace ZeroDowntime.Hosting.Fuzz;

/// <summary>A run's settings.</summary>
/// <param name="Inputs">How many inputs to generate and check.</param>
/// <param name="Seed">The run seed: input i is generated from (Seed, i) alone, so any input can be replayed.</param>
/// <param name="Threads">Worker threads; input i goes to thread i mod Threads.</param>
/// <param name="Start">Index of the first input: with Inputs = 1, replays a single input of an earlier run.</param>
/// <param name="TimeBound">The most one input may take.</param>
/// <param name="HangTimeout">After this long on one input the run stops and reports a hang.</param>
internal sealed record FuzzOptions(long Inputs, ulong Seed, int Threads, long Start, TimeSpan TimeBound, TimeSpan HangTimeout);

/// <summary>The input for which a property failed, and how to replay it.</summary>
internal sealed record FuzzFailure(ulong Seed, long Index, FuzzCase Input, string Message)
{
    public string Describe() =>
        $"FAILED at input {Index} of seed {Seed}: {Message}{Environment.NewLine}" +
        $"replay: dotnet run -c Release --project tests/ZeroDowntime.Hosting.Fuzz -- --seed {Seed} --start {Index} --inputs 1{Environment.NewLine}" +
        Input.Describe();
}

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

/// <summary>
/// Runs the reader properties over generated inputs. Input i is generated by CsCheck from a PCG seeded with (seed, i)
/// alone, so a run is reproducible from its seed and any input from (seed, index), whatever the thread count.
/// </summary>
internal static class FuzzRunner
{
    private const uint Stream = 0x5A44; // "ZD"
    private const int WarmUpInputs = 2_000;

    /// <summary>The input of index <paramref name="index"/> in the run of seed <paramref name="seed"/>.</summary>
    public static FuzzCase Generate(ulong seed, long index) =>
        FuzzGenerators.Case.Generate(new PCG(Stream, Mix(seed + ((ulong)index * 0x9E3779B97F4A7C15UL))), null, out _);

    public static FuzzReport Run(FuzzOptions options, Action<string>? progress = null)
    {
        int threads = Math.Max(1, options.Threads);
        var busySince = new long[threads];
        var current = new FuzzCase?[threads];
        var currentIndex = new long[threads];
        var reports = new FuzzReport[threads];
        var stop = new CancellationTokenSource();
        long done = 0;
        long started = Stopwatch.GetTimestamp();

        var workers = Enumerable.Range(0, threads).Select(t => new Thread(() =>
        {
            var checker = new FuzzChecker(options.TimeBound);
            var report = reports[t] = new FuzzReport { Seed = options.Seed };
            for (int i = 0; i < WarmUpInputs; i++)
            {
                checker.WarmUp(Generate(~options.Seed, i));
            }

            for (long index = options.Start + t; index < options.Start + options.Inputs && !stop.IsCancellationRequested; index += threads)
            {
                var input = Generate(options.Seed, index);
                current[t] = input;
                Volatile.Write(ref currentIndex[t], index);
                Volatile.Write(ref busySince[t], Stopwatch.GetTimestamp());
                try
                {
                    report.Record(input, checker.Check(input));
                }
                catch (FuzzPropertyException ex)
                {
                    report.Failure = new FuzzFailure(options.Seed, index, input, ex.Message);
                    stop.Cancel();
                }

                Volatile.Write(ref busySince[t], 0);
                Interlocked.Increment(ref done);
            }
        })
        { IsBackground = true, Name = $"fuzz-{t}" }).ToArray();

        foreach (var worker in workers)
        {
            worker.Start();
        }

        long lastProgress = started;
        while (workers.FirstOrDefault(w => w.IsAlive) is { } alive)
        {
            // The watchdog's tick: wakes when a worker ends, or every 20 ms to look for a hang.
            alive.Join(TimeSpan.FromMilliseconds(20));
            for (int t = 0; t < threads; t++)
            {
                long since = Volatile.Read(ref busySince[t]);
                if (since != 0 && Stopwatch.GetElapsedTime(since) > options.HangTimeout && current[t] is { } stuck)
                {
                    // The stuck thread cannot be stopped; it is a background thread, so the process can still exit.
                    stop.Cancel();
                    var hung = new FuzzReport { Seed = options.Seed, Elapsed = Stopwatch.GetElapsedTime(started) };
                    hung.Failure = new FuzzFailure(options.Seed, Volatile.Read(ref currentIndex[t]), stuck,
                        $"Hang: the reader has been busy with this input for more than {options.HangTimeout.TotalSeconds:0} s.");
                    return hung;
                }
            }

            if (progress is not null && Stopwatch.GetElapsedTime(lastProgress) > TimeSpan.FromSeconds(10))
            {
                lastProgress = Stopwatch.GetTimestamp();
                progress($"  ... {Interlocked.Read(ref done):N0} inputs, {Stopwatch.GetElapsedTime(started).TotalSeconds:0} s");
            }
        }

        var total = new FuzzReport { Seed = options.Seed };
        foreach (var report in reports)
        {
            total.Add(report);
        }

        total.Elapsed = Stopwatch.GetElapsedTime(started);
        return total;
    }

    /// <summary>SplitMix64: spreads neighbouring (seed, index) pairs over unrelated PCG seeds.</summary>
    private static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
