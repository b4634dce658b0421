using System.Globalization;

namespace ZeroDowntime.Hosting.Fuzz;

/// <summary>
/// The long fuzz run: <c>dotnet run -c Release --project tests/ZeroDowntime.Hosting.Fuzz -- --inputs 1000000 [--seed N]</c>.
/// Prints the figures; exits 1 on any property failure, with the failing input as hex and how to replay it.
/// </summary>
internal static class Program
{
    private const string Usage =
        "usage: ZeroDowntime.Hosting.Fuzz [--inputs N] [--seed N] [--start I] [--threads N] [--channel-inputs N] [--time-bound-ms N] [--hang-s N]";

    public static async Task<int> Main(string[] args)
    {
        long inputs = 1_000_000;
        ulong seed = (ulong)Random.Shared.NextInt64();
        long start = 0;
        int threads = 1;
        int channelInputs = 2_000;
        int timeBoundMs = 5_000;
        int hangSeconds = 30;
        try
        {
            for (int i = 0; i < args.Length; i++)
            {
                string value = i + 1 < args.Length ? args[i + 1] : throw new FormatException($"{args[i]} needs a value.");
                switch (args[i++])
                {
                    case "--inputs": inputs = long.Parse(value, CultureInfo.InvariantCulture); break;
                    case "--seed": seed = ulong.Parse(value, CultureInfo.InvariantCulture); break;
                    case "--start": start = long.Parse(value, CultureInfo.InvariantCulture); break;
                    case "--threads": threads = int.Parse(value, CultureInfo.InvariantCulture); break;
                    case "--channel-inputs": channelInputs = int.Parse(value, CultureInfo.InvariantCulture); break;
                    case "--time-bound-ms": timeBoundMs = int.Parse(value, CultureInfo.InvariantCulture); break;
                    case "--hang-s": hangSeconds = int.Parse(value, CultureInfo.InvariantCulture); break;
                    default: throw new FormatException($"Unknown option {args[i - 1]}.");
                }
            }
        }
        catch (FormatException ex)
        {
            await Console.Error.WriteLineAsync($"{ex.Message}{Environment.NewLine}{Usage}");
            return 2;
        }

        Console.WriteLine($"protocol reader fuzz: seed {seed}, {inputs:N0} inputs from index {start}, {threads} thread(s), " +
            $"time bound {timeBoundMs} ms, allocation bound {FuzzChecker.FixedAllocationBound:N0} + {FuzzChecker.AllocationPerInputByte} x input bytes");
        var options = new FuzzOptions(inputs, seed, threads, start, TimeSpan.FromMilliseconds(timeBoundMs), TimeSpan.FromSeconds(hangSeconds));
        var report = FuzzRunner.Run(options, Console.WriteLine);
        Console.Write(report.Format());
        if (report.Failure is { } failure)
        {
            Console.WriteLine(failure.Describe());
            return 1;
        }

        if (channelInputs > 0)
        {
            using var channel = new ChannelFuzzer();
            var channelReport = await channel.RunAsync(seed, channelInputs);
            Console.WriteLine(channelReport.Format());
            if (channelReport.Failure is { } channelFailure)
            {
                Console.WriteLine(channelFailure.Describe());
                return 1;
            }
        }

        return 0;
    }
}
