using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using System.Text;
using Xunit.Abstractions;
using ZeroDowntime.Hosting.Tests.Infrastructure;

namespace ZeroDowntime.Hosting.FunctionalTests.Infrastructure;

/// <summary>How HAProxy is put in front of the fleet (see <see cref="HaProxy.BuildConfig"/>).</summary>
/// <param name="Servers">Backend servers by name, each a sample instance on 127.0.0.1 and its own port.</param>
/// <param name="CheckPath">The health check: <c>GET CheckPath</c>, healthy on status 200 only.</param>
/// <param name="Retries">
/// <c>false</c>: <c>retries 0</c>, no redispatch, so that every request HAProxy could not deliver reaches the client
/// as a failure. <c>true</c>: <c>retries 3</c> + <c>option redispatch</c>, as many users run it (a refused connect
/// is retried, the last time on another server).
/// </param>
/// <param name="CheckIntervalMs">Health check interval in milliseconds (<c>inter</c>).</param>
/// <param name="Fall">Failed checks in a row before a server is DOWN.</param>
/// <param name="Rise">Passed checks in a row before a server is UP again.</param>
internal sealed record HaProxyOptions(
    IReadOnlyList<(string Name, int Port)> Servers,
    string CheckPath = "/health/ready",
    bool Retries = false,
    int CheckIntervalMs = 100,
    int Fall = 3,
    int Rise = 2)
{
    /// <summary>The longest HAProxy takes to take a failing server out of rotation (its checks run every inter).</summary>
    public TimeSpan TimeToDown => TimeSpan.FromMilliseconds(CheckIntervalMs * Fall);
}

/// <summary>One row of HAProxy's <c>show stat</c> (CSV): a frontend, a backend or a server, by column name.</summary>
internal sealed class HaProxyStat(IReadOnlyDictionary<string, string> fields)
{
    public string Proxy => fields["pxname"];

    public string Name => fields["svname"];

    /// <summary>UP, DOWN, or transitional ("UP 1/3": going down; "DOWN 1/2": coming up), MAINT, OPEN (frontend).</summary>
    public string Status => fields["status"];

    /// <summary>Result of the last check: L7OK, L7STS (wrong status), L4CON (refused), ...</summary>
    public string CheckStatus => fields.GetValueOrDefault("check_status", "");

    /// <summary>In rotation: UP, or UP and going down after a failed check.</summary>
    public bool IsUp => Status == "UP" || Status.StartsWith("UP ", StringComparison.Ordinal);

    /// <summary>Out of rotation: DOWN (also while coming up again), or in maintenance.</summary>
    public bool IsDown => Status.StartsWith("DOWN", StringComparison.Ordinal) || Status.StartsWith("MAINT", StringComparison.Ordinal);

    public long this[string column] =>
        long.TryParse(fields.GetValueOrDefault(column, ""), NumberStyles.None, CultureInfo.InvariantCulture, out long value) ? value : 0;

    /// <summary>The counters that say whether HAProxy failed or repaired requests.</summary>
    public override string ToString() =>
        $"{Proxy}/{Name} {Status} (check {CheckStatus}): sessions {this["stot"]}, 2xx {this["hrsp_2xx"]}, 5xx {this["hrsp_5xx"]}, " +
        $"connect errors {this["econ"]}, response errors {this["eresp"]}, retries {this["wretr"]}, redispatches {this["wredis"]}";
}

/// <summary>
/// A real HAProxy (Debian package <c>haproxy</c>) as a child process, in the foreground (<c>-W -db</c>), with its own
/// generated configuration, frontend port and admin socket. The test waits, bounded, until HAProxy itself sees a
/// server UP or DOWN: it wakes on HAProxy's own state-change line ("Server fleet/s1 is DOWN, reason: ...") and
/// confirms with <c>show stat</c> on the admin socket; it never sleeps. Every line HAProxy prints (state changes, and
/// the log of every request that did not end normally: <c>option dontlog-normal</c>) goes to the test log.
/// </summary>
internal sealed class HaProxy : IAsyncDisposable
{
    public const string Backend = "fleet";

    private const int MaxRequestLinesInTestLog = 200;
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(15);
    private readonly Process _process;
    private readonly ITestOutputHelper? _output;
    private readonly Stopwatch _sinceStart = Stopwatch.StartNew();
    private readonly Lock _linesLock = new();
    private readonly List<string> _lines = [];
    private readonly List<(Func<string, bool> Match, TaskCompletionSource<string> Found)> _waiters = [];
    private readonly TaskCompletionSource _exited = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _requestLines;

    private HaProxy(Process process, string adminSocket, int port, string config, ITestOutputHelper? output)
    {
        _process = process;
        AdminSocket = adminSocket;
        Port = port;
        Config = config;
        _output = output;
    }

    /// <summary>The frontend: clients (the load tools) connect here.</summary>
    public int Port { get; }

    public Uri BaseUri => new($"http://127.0.0.1:{Port}");

    public string AdminSocket { get; }

    /// <summary>The configuration file's text, as generated.</summary>
    public string Config { get; }

    public IReadOnlyList<string> Lines
    {
        get
        {
            lock (_linesLock)
            {
                return _lines.ToArray();
            }
        }
    }

    /// <summary>
    /// The configuration. Choices, each for a reason:
    /// <list type="bullet">
    /// <item>Keep-alive on both sides (HAProxy's default, <c>option http-keep-alive</c>, <c>http-reuse safe</c>): HAProxy
    /// keeps idle connections to each server and reuses them, as it does for most users. That is the case the drain
    /// must get right (<c>Connection: close</c> on the next response, idle connections closed only after the grace
    /// period); <c>option http-server-close</c> would open a fresh server connection per request and hide it.</item>
    /// <item>Health check <c>GET CheckPath</c>, <c>http-check expect status 200</c>, every <c>inter</c> with
    /// <c>fall</c>/<c>rise</c>; <c>timeout check 1s</c> so that a check answered slowly on a busy machine is not taken
    /// for a dead server.</item>
    /// <item><c>retries 0</c> and no <c>option redispatch</c> unless <see cref="HaProxyOptions.Retries"/>: HAProxy's
    /// default is <c>retries 3</c>, which would retry a refused connect and hide it.</item>
    /// <item><c>balance roundrobin</c>, <c>timeout connect 1s</c>, <c>timeout client/server 30s</c> (as ab's
    /// <c>-s 30</c> and wrk's <c>--timeout 30s</c>), <c>maxconn</c> well above the tools' 64 connections.</item>
    /// </list>
    /// </summary>
    public static string BuildConfig(HaProxyOptions options, int port, string adminSocket)
    {
        var text = new StringBuilder();
        text.AppendLine(CultureInfo.InvariantCulture, $"""
            # Generated by the tests (HaProxy.cs).
            global
                stats socket {adminSocket} mode 600 level admin
                log stdout format raw local0 info
                maxconn 4096

            defaults
                mode http
                log global
                option httplog
                # Only requests that did not end normally are logged (with their termination state, e.g. SC-- or SH--).
                option dontlog-normal
                timeout connect 1s
                timeout client 30s
                timeout server 30s
                timeout http-keep-alive 30s
                timeout check 1s
            """);
        if (options.Retries)
        {
            text.AppendLine("""
                    retries 3
                    option redispatch
                """);
        }
        else
        {
            text.AppendLine("""
                    # No retries, no redispatch: every request HAProxy cannot deliver reaches the client as a failure.
                    retries 0
                    no option redispatch
                """);
        }

        text.AppendLine(CultureInfo.InvariantCulture, $"""

            frontend web
                bind 127.0.0.1:{port}
                default_backend {Backend}

            backend {Backend}
                balance roundrobin
                option http-keep-alive
                http-reuse safe
                option httpchk GET {options.CheckPath}
                http-check expect status 200
                default-server inter {options.CheckIntervalMs}ms fall {options.Fall} rise {options.Rise}
            """);
        foreach (var (name, serverPort) in options.Servers)
        {
            text.AppendLine(CultureInfo.InvariantCulture, $"    server {name} 127.0.0.1:{serverPort} check");
        }

        return text.ToString();
    }

    /// <summary>
    /// Writes the configuration into <paramref name="directory"/>, has HAProxy check it (<c>-c</c>), starts it and
    /// waits until its admin socket answers.
    /// </summary>
    public static async Task<HaProxy> StartAsync(string directory, HaProxyOptions options, int port, ITestOutputHelper? output)
    {
        string haproxy = FindHaProxy();
        string adminSocket = Path.Combine(directory, "haproxy-admin.sock");
        string config = BuildConfig(options, port, adminSocket);
        string configFile = Path.Combine(directory, "haproxy.cfg");
        await File.WriteAllTextAsync(configFile, config);
        Write(output, "haproxy.cfg:\n" + config);

        string check = await LoadTool.RunAsync(TimeSpan.FromSeconds(15), haproxy, "-c", "-f", configFile);
        Write(output, "haproxy -c: " + check.Trim());
        if (!check.Contains("Configuration file is valid", StringComparison.Ordinal))
        {
            throw new InvalidOperationException("haproxy refused its configuration: " + check);
        }

        var info = new ProcessStartInfo(haproxy)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        // Master-worker mode (-W) in the foreground (-db): the master prints "Loading success." once its worker has
        // bound everything and listens (the admin socket included), which is the signal to wait for. The admin
        // socket's file appears earlier, at bind() and before listen(): a connect then would be refused.
        foreach (string argument in new[] { "-W", "-db", "-f", configFile })
        {
            info.ArgumentList.Add(argument);
        }

        var process = new Process { StartInfo = info, EnableRaisingEvents = true };
        var proxy = new HaProxy(process, adminSocket, port, config, output);
        var loaded = proxy.NextLineAsync(line => line.Contains("Loading success.", StringComparison.Ordinal));
        process.OutputDataReceived += (_, e) => proxy.OnLine(e.Data);
        process.ErrorDataReceived += (_, e) => proxy.OnLine(e.Data);
        process.Exited += (_, _) => proxy._exited.TrySetResult();
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            var winner = await Task.WhenAny(loaded, proxy._exited.Task, Task.Delay(StartTimeout));
            if (winner != loaded)
            {
                throw new TimeoutException(winner == proxy._exited.Task
                    ? $"haproxy exited with code {process.ExitCode} before it was loaded:\n{string.Join('\n', proxy.Lines)}"
                    : $"haproxy did not print 'Loading success.' within {StartTimeout.TotalSeconds:0} s");
            }

            await proxy.ShowStatAsync();
            return proxy;
        }
        catch
        {
            await proxy.DisposeAsync();
            throw;
        }
    }

    /// <summary>Runs one command on the admin socket and returns its whole answer (HAProxy closes after it).</summary>
    public async Task<string> CommandAsync(string command, TimeSpan? timeout = null)
    {
        using var deadline = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(5));
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(AdminSocket), deadline.Token);
        await socket.SendAsync(Encoding.ASCII.GetBytes(command + "\n"), SocketFlags.None, deadline.Token);
        var answer = new MemoryStream();
        var buffer = new byte[16384];
        int read;
        while ((read = await socket.ReceiveAsync(buffer, SocketFlags.None, deadline.Token)) > 0)
        {
            answer.Write(buffer, 0, read);
        }

        return Encoding.UTF8.GetString(answer.ToArray());
    }

    /// <summary><c>show stat</c>: every frontend, backend and server with its state and counters.</summary>
    public async Task<IReadOnlyList<HaProxyStat>> ShowStatAsync()
    {
        string csv = await CommandAsync("show stat");
        var lines = csv.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (lines.Length == 0 || !lines[0].StartsWith("# ", StringComparison.Ordinal))
        {
            throw new FormatException("Unexpected answer to 'show stat': " + csv);
        }

        string[] columns = lines[0][2..].Split(',');
        return lines.Skip(1).Select(line =>
        {
            string[] values = line.Split(',');
            var fields = new Dictionary<string, string>(StringComparer.Ordinal);
            for (int i = 0; i < columns.Length && i < values.Length; i++)
            {
                fields[columns[i]] = values[i];
            }

            return new HaProxyStat(fields);
        }).ToArray();
    }

    public async Task<HaProxyStat> ServerStatAsync(string server) =>
        (await ShowStatAsync()).Single(s => s.Proxy == Backend && s.Name == server);

    /// <summary>The frontend's, the backend's and every server's counters, one line each.</summary>
    public async Task<string> DescribeAsync() => string.Join(Environment.NewLine, (await ShowStatAsync()).Select(s => s.ToString()));

    public Task<HaProxyStat> WaitForUpAsync(string server, TimeSpan timeout) => WaitForStateAsync(server, up: true, timeout);

    public Task<HaProxyStat> WaitForDownAsync(string server, TimeSpan timeout) => WaitForStateAsync(server, up: false, timeout);

    /// <summary>
    /// Waits until HAProxy sees <paramref name="server"/> UP (in rotation) or DOWN (out of it). HAProxy prints a line
    /// at every state change; the wait registers for the next one of this server, then reads the state on the admin
    /// socket, and reads it again each time such a line arrives.
    /// </summary>
    public async Task<HaProxyStat> WaitForStateAsync(string server, bool up, TimeSpan timeout)
    {
        var deadline = Stopwatch.StartNew();
        string prefix = $"Server {Backend}/{server} is ";
        while (true)
        {
            Func<string, bool> match = line => line.Contains(prefix, StringComparison.Ordinal);
            var changed = NextLineAsync(match);
            try
            {
                var stat = await ServerStatAsync(server);
                if (up ? stat.IsUp : stat.IsDown)
                {
                    return stat;
                }

                var remaining = timeout - deadline.Elapsed;
                if (remaining <= TimeSpan.Zero || await Task.WhenAny(changed, _exited.Task, Task.Delay(remaining)) != changed)
                {
                    throw new TimeoutException(_exited.Task.IsCompleted
                        ? $"haproxy exited with code {_process.ExitCode} while waiting for {server} to be {(up ? "UP" : "DOWN")}"
                        : $"HAProxy did not see {server} {(up ? "UP" : "DOWN")} within {timeout.TotalSeconds:0.#} s; last state: {stat}");
                }
            }
            finally
            {
                lock (_linesLock)
                {
                    _waiters.RemoveAll(w => w.Match == match);
                }
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (!_exited.Task.IsCompleted)
        {
            try
            {
                _process.Kill(entireProcessTree: true);
                await Task.WhenAny(_exited.Task, Task.Delay(TimeSpan.FromSeconds(10)));
            }
            catch (Exception ex) when (ex is InvalidOperationException or System.ComponentModel.Win32Exception)
            {
            }
        }

        if (_exited.Task.IsCompleted)
        {
            _process.WaitForExit(); // flushes the output readers
        }

        _process.Dispose();
    }

    private static string FindHaProxy()
    {
        foreach (string directory in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries).Append("/usr/sbin"))
        {
            string candidate = Path.Combine(directory, "haproxy");
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        throw new InvalidOperationException("haproxy is not installed. Install the Debian package haproxy (.ci/run does).");
    }

    private static void Write(ITestOutputHelper? output, string text)
    {
        try
        {
            output?.WriteLine(text);
        }
        catch (InvalidOperationException)
        {
            // The test has finished; nobody reads its output any more.
        }
    }

    private Task<string> NextLineAsync(Func<string, bool> match)
    {
        var found = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_linesLock)
        {
            _waiters.Add((match, found));
        }

        return found.Task;
    }

    private void OnLine(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_linesLock)
        {
            // State changes always; the log of failed requests up to a bound (a baseline without the library can
            // fail thousands: they are counted, the load tool reports them, and the first ones show the kind).
            bool request = line.Contains(" HTTP/1.", StringComparison.Ordinal);
            if (!request || ++_requestLines <= MaxRequestLinesInTestLog)
            {
                Write(_output, $"[{_sinceStart.Elapsed.TotalSeconds,7:0.000}s haproxy] {line}");
            }
            else if (_requestLines == MaxRequestLinesInTestLog + 1)
            {
                Write(_output, $"[{_sinceStart.Elapsed.TotalSeconds,7:0.000}s haproxy] (further request log lines are not shown)");
            }

            _lines.Add(line);
            for (int i = _waiters.Count - 1; i >= 0; i--)
            {
                if (_waiters[i].Match(line))
                {
                    _waiters[i].Found.TrySetResult(line);
                    _waiters.RemoveAt(i);
                }
            }
        }
    }
}
