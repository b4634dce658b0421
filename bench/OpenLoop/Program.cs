// Open-loop HTTP/1.1 load for bench/latency.py. Request i is due at start + i / rate, whatever happened to the
// requests before it (no coordinated omission): its latency runs from that due time to the end of its response,
// so time spent waiting for a free connection or a reconnect counts. A pool of workers, each with at most one
// connection and one request in flight (no pipelining), takes the due requests; a worker opens its connection when
// it needs one and opens a new one after "Connection: close", a close by the server or an error. A request that the
// server closed the connection on before sending a single byte of the answer (an idle keep-alive connection closed
// while the request was on the wire) is sent once more on a new connection, as HTTP clients do for idempotent
// requests; the retry is counted. Every request has a deadline (--timeout-ms after its due time): past it, it is a
// timeout. Output: a CSV (due time s, latency ms, status, retried, pid of the answering server) and a JSON summary
// on stdout. Status: the HTTP status, 0 = connection or protocol error, -1 = deadline passed.
//
//   OpenLoop --port 20001 --rate 10000 --duration 90 --out run.csv [--host 127.0.0.1] [--path /] [--workers 256] [--timeout-ms 2000]
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Threading.Channels;

var options = new Dictionary<string, string>(StringComparer.Ordinal);
for (int a = 0; a + 1 < args.Length; a += 2)
{
    options[args[a].TrimStart('-')] = args[a + 1];
}

string Opt(string name, string fallback) => options.TryGetValue(name, out var v) ? v : fallback;
var host = IPAddress.Parse(Opt("host", "127.0.0.1"));
int port = int.Parse(Opt("port", "9090"), CultureInfo.InvariantCulture);
string path = Opt("path", "/");
double rate = double.Parse(Opt("rate", "1000"), CultureInfo.InvariantCulture);
double duration = double.Parse(Opt("duration", "10"), CultureInfo.InvariantCulture);
int workers = int.Parse(Opt("workers", "256"), CultureInfo.InvariantCulture);
double timeoutMs = double.Parse(Opt("timeout-ms", "2000"), CultureInfo.InvariantCulture);
string outPath = Opt("out", "openloop.csv");

int total = (int)(rate * duration);
var latencyMs = new float[total];
var status = new short[total];
var retried = new byte[total];
var servedBy = new int[total];
for (int k = 0; k < total; k++)
{
    status[k] = short.MinValue; // not finished
}

double tickMs = 1000.0 / Stopwatch.Frequency;
long timeoutTicks = (long)(timeoutMs / tickMs);
double periodTicks = Stopwatch.Frequency / rate;
var endpoint = new IPEndPoint(host, port);
byte[] request = Encoding.ASCII.GetBytes($"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n");
var channel = Channel.CreateUnbounded<int>(new UnboundedChannelOptions { SingleWriter = true });
long connectionsOpened = 0, connectErrors = 0;
double startUnix = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() / 1000.0;
long start = Stopwatch.GetTimestamp();

long Due(int i) => start + (long)(i * periodTicks);

// Per worker: the deadline of its request in flight (0: none) and its socket, for the watchdog.
var deadlines = new long[workers];
var sockets = new Socket?[workers];
var expired = new bool[workers];

async Task Worker(int w)
{
    var buffer = new byte[16384];
    Socket? socket = null;
    var reader = channel.Reader;
    while (await reader.WaitToReadAsync().ConfigureAwait(false))
    {
        while (reader.TryRead(out int i))
        {
            long due = Due(i);
            long deadline = due + timeoutTicks;
            if (Stopwatch.GetTimestamp() >= deadline)
            {
                latencyMs[i] = (float)((Stopwatch.GetTimestamp() - due) * tickMs);
                status[i] = -1;
                continue;
            }

            int attempt = 0;
            while (true)
            {
                int received = 0;
                try
                {
                    expired[w] = false;
                    Volatile.Write(ref deadlines[w], deadline);
                    if (socket is null)
                    {
                        socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                        sockets[w] = socket;
                        try
                        {
                            await socket.ConnectAsync(endpoint).ConfigureAwait(false);
                        }
                        catch
                        {
                            Interlocked.Increment(ref connectErrors);
                            throw;
                        }

                        Interlocked.Increment(ref connectionsOpened);
                    }

                    await socket.SendAsync(request, SocketFlags.None).ConfigureAwait(false);
                    int headerEnd = -1, bodyNeeded = -1, code = 0;
                    bool close = false, chunked = false;
                    while (true)
                    {
                        int n = await socket.ReceiveAsync(buffer.AsMemory(received), SocketFlags.None).ConfigureAwait(false);
                        if (n == 0)
                        {
                            if (headerEnd >= 0 && bodyNeeded < 0 && !chunked)
                            {
                                close = true; // close-delimited body
                                break;
                            }

                            throw new IOException("closed by server");
                        }

                        received += n;
                        if (headerEnd < 0)
                        {
                            headerEnd = buffer.AsSpan(0, received).IndexOf("\r\n\r\n"u8);
                            if (headerEnd < 0)
                            {
                                continue;
                            }

                            headerEnd += 4;
                            code = (buffer[9] - '0') * 100 + (buffer[10] - '0') * 10 + (buffer[11] - '0');
                            string headers = Encoding.ASCII.GetString(buffer, 0, headerEnd);
                            foreach (var line in headers.Split("\r\n"))
                            {
                                int colon = line.IndexOf(':', StringComparison.Ordinal);
                                if (colon < 0)
                                {
                                    continue;
                                }

                                var name = line.AsSpan(0, colon).Trim();
                                var value = line.AsSpan(colon + 1).Trim();
                                if (name.Equals("Content-Length", StringComparison.OrdinalIgnoreCase))
                                {
                                    bodyNeeded = int.Parse(value, CultureInfo.InvariantCulture);
                                }
                                else if (name.Equals("Connection", StringComparison.OrdinalIgnoreCase) && value.Contains("close", StringComparison.OrdinalIgnoreCase))
                                {
                                    close = true;
                                }
                                else if (name.Equals("Transfer-Encoding", StringComparison.OrdinalIgnoreCase) && value.Contains("chunked", StringComparison.OrdinalIgnoreCase))
                                {
                                    chunked = true;
                                }
                            }
                        }

                        if (bodyNeeded >= 0 && received >= headerEnd + bodyNeeded)
                        {
                            break;
                        }

                        if (chunked && received >= headerEnd + 5 && buffer.AsSpan(0, received).EndsWith("0\r\n\r\n"u8))
                        {
                            break;
                        }

                        if (received == buffer.Length)
                        {
                            throw new IOException("response too large");
                        }
                    }

                    Volatile.Write(ref deadlines[w], 0);
                    long end = Stopwatch.GetTimestamp();
                    latencyMs[i] = (float)((end - due) * tickMs);
                    status[i] = (short)code;
                    retried[i] = (byte)attempt;
                    servedBy[i] = ParsePid(buffer.AsSpan(headerEnd, received - headerEnd));
                    if (close)
                    {
                        socket.Dispose();
                        socket = null;
                    }

                    break;
                }
                catch
                {
                    Volatile.Write(ref deadlines[w], 0);
                    socket?.Dispose();
                    socket = null;
                    long now = Stopwatch.GetTimestamp();
                    if (expired[w] || now >= deadline)
                    {
                        latencyMs[i] = (float)((now - due) * tickMs);
                        status[i] = -1;
                        retried[i] = (byte)attempt;
                        break;
                    }

                    if (received == 0 && attempt == 0)
                    {
                        attempt++;
                        continue; // once more on a new connection
                    }

                    latencyMs[i] = (float)((now - due) * tickMs);
                    status[i] = 0;
                    retried[i] = (byte)attempt;
                    break;
                }
            }
        }
    }

    socket?.Dispose();
}

static int ParsePid(ReadOnlySpan<byte> body)
{
    int at = body.LastIndexOf("pid "u8);
    if (at < 0)
    {
        return 0;
    }

    int pid = 0;
    for (int k = at + 4; k < body.Length && body[k] >= '0' && body[k] <= '9'; k++)
    {
        pid = pid * 10 + (body[k] - '0');
    }

    return pid;
}

var tasks = Enumerable.Range(0, workers).Select(w => Task.Run(() => Worker(w))).ToArray();

// The watchdog: a request past its deadline gets its connection closed, which ends the worker's wait.
var watchdog = new Thread(() =>
{
    while (true)
    {
        Thread.Sleep(20);
        long now = Stopwatch.GetTimestamp();
        for (int w = 0; w < workers; w++)
        {
            long d = Volatile.Read(ref deadlines[w]);
            if (d != 0 && now > d)
            {
                expired[w] = true;
                try
                {
                    sockets[w]?.Dispose();
                }
                catch
                {
                }
            }
        }
    }
}) { IsBackground = true, Priority = ThreadPriority.AboveNormal };
watchdog.Start();

// The scheduler: writes each request when it is due.
var scheduler = new Thread(() =>
{
    int next = 0;
    while (next < total)
    {
        long now = Stopwatch.GetTimestamp();
        while (next < total && Due(next) <= now)
        {
            channel.Writer.TryWrite(next++);
        }

        Thread.Sleep(1);
    }

    channel.Writer.Complete();
}) { IsBackground = true, Priority = ThreadPriority.Highest };
scheduler.Start();
scheduler.Join();
Task.WaitAll(tasks, TimeSpan.FromMilliseconds(timeoutMs + 5000));

using (var writer = new StreamWriter(outPath, false, new UTF8Encoding(false), 1 << 20))
{
    writer.WriteLine("due_s,latency_ms,status,retried,pid");
    for (int k = 0; k < total; k++)
    {
        double dueS = k * periodTicks / Stopwatch.Frequency;
        writer.Write(dueS.ToString("0.000000", CultureInfo.InvariantCulture));
        writer.Write(',');
        writer.Write(latencyMs[k].ToString("0.000", CultureInfo.InvariantCulture));
        writer.Write(',');
        writer.Write(status[k] == short.MinValue ? "-1" : status[k].ToString(CultureInfo.InvariantCulture));
        writer.Write(',');
        writer.Write(retried[k].ToString(CultureInfo.InvariantCulture));
        writer.Write(',');
        writer.WriteLine(servedBy[k].ToString(CultureInfo.InvariantCulture));
    }
}

int ok = 0, errors = 0, timeouts = 0, retries = 0;
var okLatencies = new List<float>(total);
for (int k = 0; k < total; k++)
{
    if (status[k] >= 200 && status[k] < 300)
    {
        ok++;
    }
    else if (status[k] == -1 || status[k] == short.MinValue)
    {
        timeouts++;
    }
    else
    {
        errors++;
    }

    retries += retried[k];
    if (status[k] != short.MinValue)
    {
        okLatencies.Add(status[k] == -1 ? (float)timeoutMs : latencyMs[k]);
    }
}

okLatencies.Sort();
string P(double p) => okLatencies.Count == 0 ? "null" : okLatencies[Math.Min(okLatencies.Count - 1, (int)(p * okLatencies.Count))].ToString("0.000", CultureInfo.InvariantCulture);
Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
    $"{{\"start_unix\": {startUnix:0.000}, \"rate\": {rate}, \"duration\": {duration}, \"requests\": {total}, \"ok\": {ok}, \"errors\": {errors}, \"timeouts\": {timeouts}, \"retries\": {retries}, \"connections\": {connectionsOpened}, \"connect_errors\": {connectErrors}, \"p50\": {P(0.5)}, \"p99\": {P(0.99)}, \"p999\": {P(0.999)}, \"max\": {P(1.0)}}}"));
