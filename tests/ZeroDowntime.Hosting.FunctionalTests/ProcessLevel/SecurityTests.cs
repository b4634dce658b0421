using System.Net.Sockets;
using Xunit.Abstractions;
using ZeroDowntime.Hosting.FunctionalTests.Infrastructure;
using ZeroDowntime.Hosting.Protocol;
using ZeroDowntime.Hosting.Tests.Infrastructure;
using static ZeroDowntime.Hosting.FunctionalTests.Infrastructure.HandoffSteps;

namespace ZeroDowntime.Hosting.FunctionalTests;

/// <summary>The handoff socket is an attack surface: only the owner may ever get a listening socket.</summary>
public sealed class SecurityTests(ITestOutputHelper output)
{
    private const string HelloFromNobody = """
import socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print("connect-failed", e.errno); sys.exit(0)
app = sys.argv[2].encode()
payload = struct.pack(">HiH", 1, 4242, len(app)) + app
s.sendall(b"ZD" + bytes([1]) + struct.pack(">I", len(payload)) + payload)
s.settimeout(20)
total = 0; fds = 0
while True:
    try:
        msg, anc, flags, addr = s.recvmsg(65536, socket.CMSG_SPACE(253 * 4))
    except ConnectionResetError:
        break  # refused without reading our greeting: the kernel resets instead of closing

    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds += len(data) // 4
    if not msg: break
    total += len(msg)
print("received", total, "bytes", fds, "fds")
""";

    private const string ListenAsNobody = """
import socket, sys, os
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1]); os.chmod(sys.argv[1], 0o777); s.listen(4)
print("listening", flush=True)
s.settimeout(30)
c, _ = s.accept()
c.settimeout(10)
try:
    data = c.recv(65536)
except socket.timeout:
    data = b""
print("got", len(data), "bytes", flush=True)
""";

    [Fact]
    public async Task HandoffSocket_IsCreatedOwnerOnly_InAnOwnerOnlyDirectory()
    {
        using var scope = new TestScope();
        string directory = Path.Combine(scope.Directory, "missing", "nested");
        var config = scope.Config() with { SocketPath = Path.Combine(directory, "h.sock") };
        await using var v1 = await StartFirstAsync("v1", config, output);

        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(directory));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(config.SocketPath));
    }

    [Fact]
    public async Task WorldWritableDirectoryWithoutStickyBit_IsRefusedAtStart()
    {
        using var scope = new TestScope();
        string shared = Path.Combine(scope.Directory, "shared");
        Directory.CreateDirectory(shared);
        File.SetUnixFileMode(shared, (UnixFileMode)0b111_111_111);
        await using var app = SampleApp.Start("v1", scope.Config() with { SocketPath = Path.Combine(shared, "h.sock") }, output);

        Assert.Equal(ZeroDowntimeExitCodes.InvalidConfiguration, await app.WaitForExitAsync());
        Assert.Contains(app.Lines, l => l.Contains("no sticky bit", StringComparison.Ordinal));
    }

    // Issue 18 item 11: bad input is a clear error with exit code 78, not a crash: a regular file where the socket's
    // directory must be, and a directory on the way that other users can write.
    [Theory]
    [InlineData("file")]
    [InlineData("open ancestor")]
    public async Task UnusableSocketDirectory_IsRefusedAtStartWithExit78(string what)
    {
        using var scope = new TestScope();
        string blocker = Path.Combine(scope.Directory, "blocker");
        if (what == "file")
        {
            File.WriteAllText(blocker, "not a directory");
        }
        else
        {
            Directory.CreateDirectory(blocker);
            File.SetUnixFileMode(blocker, (UnixFileMode)0b111_111_111);
        }

        await using var app = SampleApp.Start("v1", scope.Config() with { SocketPath = Path.Combine(blocker, "app", "h.sock") }, output);

        Assert.Equal(ZeroDowntimeExitCodes.InvalidConfiguration, await app.WaitForExitAsync());
        Assert.Contains(app.Lines, l => l.Contains(what == "file" ? $"{blocker} is not a directory" : $"{blocker} (mode 777)", StringComparison.Ordinal));
        Assert.DoesNotContain(app.Lines, l => l.Contains("Unhandled exception", StringComparison.Ordinal));
    }

    [Fact]
    public async Task SocketPathOwnedByAnotherUser_IsRefusedAtStart()
    {
        OtherUser.RequireRoot();
        using var scope = new TestScope();
        // Kept open to the end: disposing a Socket that bound a path deletes the file.
        using var squatter = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        squatter.Bind(new UnixDomainSocketEndPoint(scope.SocketPath));
        Chown(scope.SocketPath, OtherUser.Uid);
        await using var app = SampleApp.Start("v1", scope.Config(), output);

        Assert.Equal(ZeroDowntimeExitCodes.InvalidConfiguration, await app.WaitForExitAsync());
        Assert.Contains(app.Lines, l => l.Contains($"belongs to uid {OtherUser.Uid}", StringComparison.Ordinal));
    }

    [Fact]
    public async Task PredecessorRunningAsAnotherUser_IsNeverAdopted()
    {
        OtherUser.RequireRoot();
        using var scope = new TestScope();

        // Another user listens on a socket that ends up at our path, owned by us: only SO_PEERCRED can tell.
        string theirs = Path.Combine(Path.GetTempPath(), "zdt-nobody-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(theirs);
        File.SetUnixFileMode(theirs, (UnixFileMode)0b111_111_111);
        try
        {
            using var impostor = OtherUser.StartPython(ListenAsNobody, Path.Combine(theirs, "s.sock"));
            Assert.Equal("listening", await impostor.StandardOutput.ReadLineAsync());
            File.Move(Path.Combine(theirs, "s.sock"), scope.SocketPath);
            Chown(scope.SocketPath, 0);

            await using var app = SampleApp.Start("v1", scope.Config(), output);
            Assert.Equal(ZeroDowntimeExitCodes.InvalidConfiguration, await app.WaitForExitAsync());
            Assert.Contains(app.Entries, l => l.Is(Events.PredecessorUntrusted) && l.Contains($"runs as uid {OtherUser.Uid}", StringComparison.Ordinal));
            Assert.Equal("got 0 bytes", await impostor.StandardOutput.ReadLineAsync());
        }
        finally
        {
            Directory.Delete(theirs, recursive: true);
        }
    }

    [Fact]
    public async Task ClientRunningAsAnotherUser_IsRefused_AndGetsNoSocket()
    {
        OtherUser.RequireRoot();
        using var scope = new TestScope();
        var config = scope.Config();
        await using var v1 = await StartFirstAsync("v1", config, output);

        // The test's own directory is 0700, which alone would deny another user. Open it (0755), as a shared
        // runtime directory may be: then only the library's 0600 on the socket keeps the other user from connecting.
        File.SetUnixFileMode(scope.Directory, (UnixFileMode)0b111_101_101);
        var (_, denied) = await OtherUser.RunPythonAsync(HelloFromNobody, scope.SocketPath, "WebApi");
        output.WriteLine("other user's client, directory 0755, socket as the library made it: " + denied);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(scope.SocketPath));
        Assert.Contains("connect-failed 13", denied, StringComparison.Ordinal);

        // Simulate a careless operator who opened the socket up too: the credential check still refuses.
        File.SetUnixFileMode(scope.SocketPath, (UnixFileMode)0b110_110_110);
        var (_, answer) = await OtherUser.RunPythonAsync(HelloFromNobody, scope.SocketPath, "WebApi");
        output.WriteLine("other user's client: " + answer);
        Assert.Contains("received 0 bytes 0 fds", answer, StringComparison.Ordinal);
        await v1.WaitForEntryAsync(l => l.Is(Events.HandoffRefused) && l.Contains($"uid {OtherUser.Uid}", StringComparison.Ordinal), "refusal of uid 65534");

        var (v2, oldExit) = await HandOverAsync(v1, "v2", config, output);
        await using var _ = v2;
        Assert.Equal(0, oldExit);
    }

    [Fact]
    public async Task AnotherApplicationOnTheSamePath_IsRefused_OldKeepsServing()
    {
        using var scope = new TestScope();
        var config = scope.Config();
        await using var v1 = await StartFirstAsync("v1", config, output);
        await using var load = HttpLoad.Start(scope.BaseUri, workers: 4, newConnectionPerRequest: true);
        await load.WaitForMoreSuccessesAsync(100);

        await using var other = SampleApp.Start("other-app", config.With("ZeroDowntime__ApplicationId", "billing"), output);
        Assert.Equal(ZeroDowntimeExitCodes.RefusedByPredecessor, await other.WaitForExitAsync());
        Assert.Contains(other.Entries, l => l.Is(Events.RefusedByPredecessor) && l.Contains("'WebApi'", StringComparison.Ordinal) && l.Contains("'billing'", StringComparison.Ordinal));
        await v1.WaitForEventAsync(Events.HandoffRefused);

        await load.WaitForMoreSuccessesAsync(100);
        await load.StopAsync();
        load.AssertNoFailures();
        Assert.False(v1.HasExited);
    }

    [Fact]
    public async Task PeerSpeakingAnotherProtocolVersion_IsRefusedNamingBothVersions()
    {
        using var scope = new TestScope();
        await using var v1 = await StartFirstAsync("v1", scope.Config(), output);
        using var client = await RawHandoffClient.ConnectAsync(scope.SocketPath);
        await client.SendAsync(new HelloMessage(99, 1, "WebApi"));
        byte[] answer = await client.ReadToEndAsync(TimeSpan.FromSeconds(10));

        Assert.True(HandoffProtocol.TryReadFrame(answer, out var type, out var payload, out _));
        var refused = Assert.IsType<RefusedMessage>(HandoffProtocol.Decode(type, payload));
        Assert.Equal(RefusalReason.VersionMismatch, refused.Reason);
        Assert.Contains("v1", refused.Detail, StringComparison.Ordinal);
        Assert.Contains("v99", refused.Detail, StringComparison.Ordinal);
        await v1.WaitForEntryAsync(l => l.Is(Events.HandoffRefused) && l.Contains("v99", StringComparison.Ordinal), "version refusal");
    }

    [Fact]
    public async Task BadInput_ServerKeepsServing_LogsEachRefusal_RealSuccessorStillTakesOver()
    {
        using var scope = new TestScope();
        var config = scope.Config();
        await using var v1 = await StartFirstAsync("v1", config, output);
        await using var load = HttpLoad.Start(scope.BaseUri, workers: 4, newConnectionPerRequest: true);
        await load.WaitForMoreSuccessesAsync(100);

        byte[] validHello = HandoffProtocol.Encode(new HelloMessage(1, 1, "WebApi"));
        byte[] absurd = [(byte)'Z', (byte)'D', 1, 0xFF, 0xFF, 0xFF, 0xFF];
        var inputs = new (string Name, byte[] Bytes)[]
        {
            ("garbage", "GET / HTTP/1.1\r\nHost: x\r\n\r\n"u8.ToArray()),
            ("random", Enumerable.Range(0, 64).Select(i => (byte)(i * 37 + 11)).ToArray()),
            ("truncated frame", validHello[..(validHello.Length - 2)]),
            ("absurd length", absurd),
            ("wrong type first", HandoffProtocol.Encode(new ReadyMessage())),
            ("connect and vanish", []),
        };
        foreach (var (name, bytes) in inputs)
        {
            using var client = await RawHandoffClient.ConnectAsync(scope.SocketPath);
            if (bytes.Length > 0)
            {
                await client.SendAsync(bytes);
            }

            client.Dispose();
            output.WriteLine($"sent {name} ({bytes.Length} bytes)");
        }

        await v1.WaitForEventCountAsync(Events.HandoffProtocolError, inputs.Length);

        // A client that connects and says nothing must not hold up a real successor. Timed with a greeting from
        // this process (no .NET start-up in the figure): were connections served one at a time, the welcome would
        // wait for the silent client's 5 s greeting deadline.
        using var silent = await RawHandoffClient.ConnectAsync(scope.SocketPath);
        var started = System.Diagnostics.Stopwatch.StartNew();
        using (var greeter = await RawHandoffClient.ConnectAsync(scope.SocketPath))
        {
            await greeter.SendAsync(new HelloMessage(1, 4343, "WebApi"));
            Assert.NotEmpty(await greeter.ReadSomeAsync(TimeSpan.FromSeconds(10)));
        }

        output.WriteLine($"welcome {started.ElapsedMilliseconds} ms after the greeting, beside a silent client");
        Assert.True(started.Elapsed < TimeSpan.FromSeconds(2.5), $"the welcome took {started.Elapsed}, beside a silent client whose deadline is 5 s");
        await v1.WaitForEventAsync(Events.SuccessorFailed);
        var (v2, oldExit) = await HandOverAsync(v1, "v2", config, output);
        await using var _ = v2;

        await load.WaitForMoreSuccessesAsync(100);
        await load.StopAsync();
        load.AssertNoFailures();
        Assert.Equal(0, oldExit);

        // One line per bad input, plus the silent client's if its 5 s deadline passed before v1 exited.
        Assert.InRange(v1.CountEvent(Events.HandoffProtocolError), inputs.Length, inputs.Length + 1);
    }

    private static void Chown(string path, int uid)
    {
        if (Native.lchown(path, uid, uid) != 0)
        {
            throw new InvalidOperationException($"lchown {path} failed: errno {System.Runtime.InteropServices.Marshal.GetLastPInvokeError()}");
        }
    }
}
