// HTTP/2 cleartext load for the benchmark: h2client URL SECONDS CONNECTIONS STREAMS SAMPLES.tsv
// Prints one JSON summary line; writes one line per finished request: end (Unix µs), latency (µs), 1=ok/0=failed.
using System.Globalization;
using System.Text;
using System.Text.Json;
using ZeroDowntime.Hosting.FunctionalTests.Infrastructure;

if (args.Length != 5)
{
    Console.Error.WriteLine("usage: H2Client URL SECONDS CONNECTIONS STREAMS SAMPLES.tsv");
    return 2;
}

var uri = new Uri(args[0]);
var duration = TimeSpan.FromSeconds(double.Parse(args[1], CultureInfo.InvariantCulture));
int connections = int.Parse(args[2], CultureInfo.InvariantCulture);
int streams = int.Parse(args[3], CultureInfo.InvariantCulture);

await using var load = Http2Load.Start(uri, connections, streams, duration, recordSamples: true);
await load.Completion;
var samples = load.Samples();

var text = new StringBuilder(samples.Count * 24);
foreach (var s in samples)
{
    text.Append(s.EndUnixMicros).Append('\t').Append(s.LatencyMicros).Append('\t').Append(s.Succeeded ? '1' : '0').Append('\n');
}

await File.WriteAllTextAsync(args[4], text.ToString());
Console.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object>
{
    ["succeeded"] = load.Succeeded,
    ["failed"] = load.Failed,
    ["failuresByKind"] = load.FailuresByKind,
    ["firstSeenByBody"] = load.FirstSeenByBody,
    ["responsesByBody"] = load.ResponsesByBody,
    ["failures"] = load.Failures,
    ["elapsedSeconds"] = load.Elapsed.TotalSeconds,
}));
return 0;
