using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace ZeroDowntime.Hosting.FunctionalTests.Infrastructure;

/// <summary>
/// A hand-driven HTTP/1.1 keep-alive connection: no pool, no retry, nothing hidden. What the server sends (headers,
/// FIN, reset) is what the test sees, unlike SocketsHttpHandler, which retries idempotent requests by itself.
/// </summary>
internal sealed class RawHttpConnection : IDisposable
{
    private readonly Socket _socket = new(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
    private readonly byte[] _buffer = new byte[16 * 1024];
    private int _start;
    private int _end;

    public static async Task<RawHttpConnection> ConnectAsync(int port, CancellationToken cancellationToken = default)
    {
        var connection = new RawHttpConnection();
        try
        {
            await connection._socket.ConnectAsync(IPAddress.Loopback, port, cancellationToken);
            return connection;
        }
        catch
        {
            connection.Dispose();
            throw;
        }
    }

    /// <summary>Sends one GET and reads its response; throws on reset, and IOException on FIN before a full response.</summary>
    public async Task<RawResponse> GetAsync(string path, TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        using var limit = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        limit.CancelAfter(timeout);
        await _socket.SendAsync(Encoding.ASCII.GetBytes($"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n"), SocketFlags.None, limit.Token);
        string head = await ReadHeadAsync(limit.Token);
        var lines = head.Split("\r\n");
        var statusLine = lines[0].Split(' ');
        if (statusLine.Length < 2 || !statusLine[0].StartsWith("HTTP/1.", StringComparison.Ordinal))
        {
            throw new FormatException($"Not an HTTP/1.x status line: '{lines[0]}'");
        }

        int status = int.Parse(statusLine[1], CultureInfo.InvariantCulture);
        var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (string line in lines.Skip(1))
        {
            int colon = line.IndexOf(':', StringComparison.Ordinal);
            if (colon > 0)
            {
                headers[line[..colon].Trim()] = line[(colon + 1)..].Trim();
            }
        }

        byte[] body;
        if (headers.TryGetValue("transfer-encoding", out string? encoding) && encoding.Contains("chunked", StringComparison.OrdinalIgnoreCase))
        {
            var all = new MemoryStream();
            while (true)
            {
                string sizeLine = await ReadLineAsync(limit.Token);
                int size = int.Parse(sizeLine.Split(';')[0].Trim(), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
                if (size == 0)
                {
                    // No trailers from Kestrel here: the empty line that ends the message.
                    await ReadLineAsync(limit.Token);
                    break;
                }

                all.Write(await ReadExactlyAsync(size, limit.Token));
                await ReadLineAsync(limit.Token);
            }

            body = all.ToArray();
        }
        else
        {
            int length = headers.TryGetValue("content-length", out string? value) ? int.Parse(value, CultureInfo.InvariantCulture) : 0;
            body = await ReadExactlyAsync(length, limit.Token);
        }

        return new RawResponse(status, headers, Encoding.ASCII.GetString(body));
    }

    private async Task<string> ReadLineAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            int end = _buffer.AsSpan(_start, _end - _start).IndexOf("\r\n"u8);
            if (end >= 0)
            {
                string line = Encoding.ASCII.GetString(_buffer, _start, end);
                _start += end + 2;
                return line;
            }

            if (await FillAsync(cancellationToken) == 0)
            {
                throw new IOException("The server closed the connection in the middle of a chunked body.");
            }
        }
    }

    /// <summary>True when the server closed its side in order (FIN) within the timeout; throws on reset.</summary>
    public async Task<bool> WaitForEndOfStreamAsync(TimeSpan timeout)
    {
        using var limit = new CancellationTokenSource(timeout);
        try
        {
            return await FillAsync(limit.Token) == 0;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    public void Dispose() => _socket.Dispose();

    private async Task<string> ReadHeadAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            int end = _buffer.AsSpan(_start, _end - _start).IndexOf("\r\n\r\n"u8);
            if (end >= 0)
            {
                string head = Encoding.ASCII.GetString(_buffer, _start, end);
                _start += end + 4;
                return head;
            }

            if (await FillAsync(cancellationToken) == 0)
            {
                throw new IOException($"The server closed the connection before a complete response ({_end - _start} bytes buffered).");
            }
        }
    }

    private async Task<byte[]> ReadExactlyAsync(int length, CancellationToken cancellationToken)
    {
        var result = new byte[length];
        int copied = 0;
        while (copied < length)
        {
            if (_start == _end && await FillAsync(cancellationToken) == 0)
            {
                throw new IOException($"The server closed the connection after {copied} of {length} body bytes.");
            }

            int n = Math.Min(length - copied, _end - _start);
            _buffer.AsSpan(_start, n).CopyTo(result.AsSpan(copied));
            _start += n;
            copied += n;
        }

        return result;
    }

    private async Task<int> FillAsync(CancellationToken cancellationToken)
    {
        if (_start == _end)
        {
            _start = _end = 0;
        }
        else if (_start > 0)
        {
            _buffer.AsSpan(_start, _end - _start).CopyTo(_buffer);
            _end -= _start;
            _start = 0;
        }

        int read = await _socket.ReceiveAsync(_buffer.AsMemory(_end), SocketFlags.None, cancellationToken);
        _end += read;
        return read;
    }
}
