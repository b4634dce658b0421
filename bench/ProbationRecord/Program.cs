using System.Diagnostics;
using System.Globalization;
using ZeroDowntime.Hosting.Probation;

// ErrorRatioMonitor.Record against what a request already pays for, in the same run: an interlocked increment (the
// floor: Record does one or two), a clock read (what Record avoids: the ring moves on from a timer), and a counter
// under a lock (the obvious alternative). Median of the rounds, ns per call, and the ratio to the increment.
int calls = args.Length > 0 ? int.Parse(args[0], CultureInfo.InvariantCulture) : 20_000_000;
const int Rounds = 5;

using var monitor = new ErrorRatioMonitor(TimeSpan.FromSeconds(30), 0.05, 20, TimeProvider.System);
long counter = 0;
var gate = new Lock();
var cases = new (string Name, Action<int> Run)[]
{
    ("Interlocked.Increment (baseline)", n => { for (int i = 0; i < n; i++) { Interlocked.Increment(ref counter); } }),
    ("Stopwatch.GetTimestamp", n => { for (int i = 0; i < n; i++) { counter += Stopwatch.GetTimestamp() & 1; } }),
    ("lock + counter", n => { for (int i = 0; i < n; i++) { lock (gate) { counter++; } } }),
    ("ErrorRatioMonitor.Record (1 in 20 a 5xx)", n => { for (int i = 0; i < n; i++) { monitor.Record(i % 20 == 0 ? 500 : 200, isWarmup: false); } }),
};

var single = cases.Select(c => Median(Rounds, () => Measure(() => c.Run(calls)) / calls)).ToArray();
var twoThreads = cases.Select(c => Median(Rounds, () => Measure(() =>
{
    var threads = Enumerable.Range(0, 2).Select(_ => new Thread(() => c.Run(calls / 2))).ToArray();
    Array.ForEach(threads, t => t.Start());
    Array.ForEach(threads, t => t.Join());
}) / (calls / 2))).ToArray();

Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{calls:N0} calls a round, median of {Rounds} rounds, {Environment.ProcessorCount} cores, .NET {Environment.Version}"));
Console.WriteLine();
Console.WriteLine("| Operation | ns per call, 1 thread | ratio | ns per call per thread, 2 threads | ratio |");
Console.WriteLine("| --- | --- | --- | --- | --- |");
for (int i = 0; i < cases.Length; i++)
{
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
        $"| {cases[i].Name} | {single[i]:0.0} | {single[i] / single[0]:0.00}x | {twoThreads[i]:0.0} | {twoThreads[i] / twoThreads[0]:0.00}x |"));
}

Console.WriteLine();
Console.WriteLine($"monitor after the run: {monitor.Evaluate().Reason}");

static double Measure(Action run)
{
    var watch = Stopwatch.StartNew();
    run();
    return watch.Elapsed.TotalNanoseconds;
}

static double Median(int rounds, Func<double> measure)
{
    measure(); // warm-up round: tiering and the first bucket
    var values = Enumerable.Range(0, rounds).Select(_ => measure()).Order().ToArray();
    return values[rounds / 2];
}
