using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using Xunit.Abstractions;
using ZeroDowntime.Hosting.Tests.Infrastructure;

namespace ZeroDowntime.Hosting.FunctionalTests.Infrastructure;

/// <summary>
/// A real load generator (ab, wrk, h2load) run as a child process: started, interrupted with SIGINT (ab and wrk
/// then print their summary) and its output parsed. The tools must be on PATH (.ci/run installs them); a missing
/// tool fails the test with a message that says which package to install.
/// </summary>
internal sealed partial class LoadTool : IAsyncDisposable
{
    public const int SIGINT = 2;

    private static readonly Dictionary<string, string> Packages = new(StringComparer.Ordinal)
    {
        ["ab"] = "apache2-utils",
        ["wrk"] = "wrk",
        ["h2load"] = "nghttp2-client",
    };

    private readonly Process _process;
    private readonly StringBuilder _output = new();
    private Task _exited = Task.CompletedTask;

    private LoadTool(Process process) => _process = process;

    public string Output
    {
        get
        {
            lock (_output)
            {
                return _output.ToString();
            }
        }
    }

    public bool HasExited => _exited.IsCompleted;

    /// <summary>The full path of a tool, or an exception that says how to install it.</summary>
    public static string Require(string tool)
    {
        foreach (string directory in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            string candidate = Path.Combine(directory, tool);
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        throw new InvalidOperationException(
            $"The load tool '{tool}' is not on PATH. Install the Debian package {Packages.GetValueOrDefault(tool, tool)} (.ci/run does).");
    }

    public static LoadTool Start(string tool, params string[] arguments)
    {
        var info = new ProcessStartInfo(Require(tool))
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (string argument in arguments)
        {
            info.ArgumentList.Add(argument);
        }

        var process = new Process { StartInfo = info };
        var started = new LoadTool(process);
        process.OutputDataReceived += (_, e) => started.Append(e.Data);
        process.ErrorDataReceived += (_, e) => started.Append(e.Data);
        process.Start();
        started._exited = process.WaitForExitAsync();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return started;
    }

    /// <summary>Runs a tool to its end (bounded) and returns its output.</summary>
    public static async Task<string> RunAsync(TimeSpan timeout, string tool, params string[] arguments)
    {
        await using var run = Start(tool, arguments);
        return await run.WaitForExitAsync(timeout);
    }

    /// <summary>Asks the tool to stop (SIGINT: ab and wrk print their results) and waits for its output.</summary>
    public async Task<string> InterruptAsync(TimeSpan timeout)
    {
        if (!HasExited)
        {
            Posix.Kill(_process.Id, SIGINT);
        }

        return await WaitForExitAsync(timeout);
    }

    public async Task<string> WaitForExitAsync(TimeSpan timeout)
    {
        if (await Task.WhenAny(_exited, Task.Delay(timeout)) != _exited)
        {
            throw new TimeoutException($"{_process.StartInfo.FileName} did not finish within {timeout.TotalSeconds:0} s. Output so far:\n{Output}");
        }

        _process.WaitForExit(); // flushes the output readers
        return Output;
    }

    public async ValueTask DisposeAsync()
    {
        if (!HasExited)
        {
            try
            {
                _process.Kill();
                await WaitForExitAsync(TimeSpan.FromSeconds(10));
            }
            catch (Exception ex) when (ex is InvalidOperationException or TimeoutException or System.ComponentModel.Win32Exception)
            {
            }
        }

        _process.Dispose();
    }

    private void Append(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_output)
        {
            _output.AppendLine(line);
        }
    }

    // ---------------------------------------------------------------- parsers

    /// <summary>Apache Bench's summary: failed requests by kind, and non-2xx answers.</summary>
    public sealed record AbResult(long Complete, long Failed, long Connect, long Receive, long Length, long Exceptions, long Non2xx)
    {
        public static AbResult Parse(string output)
        {
            var complete = AbComplete().Match(output);
            if (!complete.Success)
            {
                throw new FormatException("No 'Complete requests' in ab's output:\n" + output);
            }

            var failed = AbFailed().Match(output);
            var kinds = AbKinds().Match(output);
            var non2xx = AbNon2xx().Match(output);
            return new AbResult(
                Long(complete.Groups[1]),
                failed.Success ? Long(failed.Groups[1]) : 0,
                kinds.Success ? Long(kinds.Groups[1]) : 0,
                kinds.Success ? Long(kinds.Groups[2]) : 0,
                kinds.Success ? Long(kinds.Groups[3]) : 0,
                kinds.Success ? Long(kinds.Groups[4]) : 0,
                non2xx.Success ? Long(non2xx.Groups[1]) : 0);
        }
    }

    /// <summary>wrk's summary: requests, socket errors by kind, and non-2xx/3xx answers.</summary>
    public sealed record WrkResult(long Requests, long Connect, long Read, long Write, long Timeout, long Non2xx)
    {
        public long SocketErrors => Connect + Read + Write + Timeout;

        public static WrkResult Parse(string output)
        {
            var requests = WrkRequests().Match(output);
            if (!requests.Success)
            {
                throw new FormatException("No 'requests in' line in wrk's output:\n" + output);
            }

            var errors = WrkErrors().Match(output);
            var non2xx = WrkNon2xx().Match(output);
            return new WrkResult(
                Long(requests.Groups[1]),
                errors.Success ? Long(errors.Groups[1]) : 0,
                errors.Success ? Long(errors.Groups[2]) : 0,
                errors.Success ? Long(errors.Groups[3]) : 0,
                errors.Success ? Long(errors.Groups[4]) : 0,
                non2xx.Success ? Long(non2xx.Groups[1]) : 0);
        }
    }

    /// <summary>
    /// h2load's request counts. <c>Total - Started</c> are requests it never sent (a client that received GOAWAY
    /// does not reconnect and counts the rest of its share as failed); <c>Started - Done</c> are streams that were
    /// sent and did not complete.
    /// </summary>
    public sealed record H2LoadResult(long Total, long Started, long Done, long Succeeded, long Failed, long Errored, long Timeout, long Status2xx, long StatusOther,
        double MinClientRequestsPerSecond = double.NaN)
    {
        public long NotStarted => Total - Started;

        public long StartedNotSucceeded => Started - Succeeded;

        public static H2LoadResult Parse(string output)
        {
            var requests = H2Requests().Match(output);
            var codes = H2Codes().Match(output);
            if (!requests.Success || !codes.Success)
            {
                throw new FormatException("No 'requests:' or 'status codes:' line in h2load's output:\n" + output);
            }

            var perClient = H2ClientRate().Match(output);
            return new H2LoadResult(
                Long(requests.Groups[1]), Long(requests.Groups[2]), Long(requests.Groups[3]), Long(requests.Groups[4]),
                Long(requests.Groups[5]), Long(requests.Groups[6]), Long(requests.Groups[7]),
                Long(codes.Groups[1]), Long(codes.Groups[2]) + Long(codes.Groups[3]) + Long(codes.Groups[4]),
                perClient.Success ? double.Parse(perClient.Groups[1].Value, CultureInfo.InvariantCulture) : double.NaN);
        }
    }

    private static long Long(Group group) => long.Parse(group.Value, CultureInfo.InvariantCulture);

    [GeneratedRegex(@"Complete requests:\s+(\d+)")]
    private static partial Regex AbComplete();

    [GeneratedRegex(@"Failed requests:\s+(\d+)")]
    private static partial Regex AbFailed();

    [GeneratedRegex(@"\(Connect: (\d+), Receive: (\d+), Length: (\d+), Exceptions: (\d+)\)")]
    private static partial Regex AbKinds();

    [GeneratedRegex(@"Non-2xx responses:\s+(\d+)")]
    private static partial Regex AbNon2xx();

    [GeneratedRegex(@"(\d+) requests in")]
    private static partial Regex WrkRequests();

    [GeneratedRegex(@"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")]
    private static partial Regex WrkErrors();

    [GeneratedRegex(@"Non-2xx or 3xx responses: (\d+)")]
    private static partial Regex WrkNon2xx();

    [GeneratedRegex(@"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout")]
    private static partial Regex H2Requests();

    [GeneratedRegex(@"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")]
    private static partial Regex H2Codes();

    /// <summary>The minimum of the per-client request rates: 0 when a client completed no request (it could not connect).</summary>
    [GeneratedRegex(@"req/s\s+:\s+([\d.]+)")]
    private static partial Regex H2ClientRate();
}

/// <summary>
/// h2load in segments of a fixed request count, one after the other until stopped (bounded): it does not reconnect
/// after GOAWAY, so each segment opens fresh connections to whichever process accepts.
/// </summary>
internal sealed class H2LoadSegments : IAsyncDisposable
{
    private readonly CancellationTokenSource _stop = new(TimeSpan.FromMinutes(3));
    private readonly List<(TimeSpan Start, TimeSpan End, LoadTool.H2LoadResult Result)> _segments = [];
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly Task _loop;

    private H2LoadSegments(Uri uri, int requestsPerSegment, ITestOutputHelper output)
    {
        LoadTool.Require("h2load");
        _loop = Task.Run(async () =>
        {
            while (!_stop.IsCancellationRequested)
            {
                var start = _clock.Elapsed;
                string text = await LoadTool.RunAsync(TimeSpan.FromSeconds(60), "h2load", "-c16", "-m10", "-n", requestsPerSegment.ToString(CultureInfo.InvariantCulture), uri.ToString());
                var result = LoadTool.H2LoadResult.Parse(text);
                lock (_segments)
                {
                    _segments.Add((start, _clock.Elapsed, result));
                }

                try
                {
                    output.WriteLine($"[h2load {start.TotalSeconds:0.000}-{_clock.Elapsed.TotalSeconds:0.000}s] {result}");
                }
                catch (InvalidOperationException)
                {
                }
            }
        });
    }

    public IReadOnlyList<(TimeSpan Start, TimeSpan End, LoadTool.H2LoadResult Result)> Segments
    {
        get
        {
            lock (_segments)
            {
                return _segments.ToArray();
            }
        }
    }

    public static H2LoadSegments Start(Uri uri, int requestsPerSegment, ITestOutputHelper output) => new(uri, requestsPerSegment, output);

    /// <summary>Lets the running segment finish, then stops.</summary>
    public async Task StopAsync()
    {
        await _stop.CancelAsync();
        await _loop.WaitAsync(TimeSpan.FromSeconds(90));
    }

    public async ValueTask DisposeAsync()
    {
        if (!_stop.IsCancellationRequested)
        {
            await StopAsync();
        }

        _stop.Dispose();
    }
}
