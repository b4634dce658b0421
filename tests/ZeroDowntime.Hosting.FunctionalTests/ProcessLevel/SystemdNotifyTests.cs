using System.Collections.Concurrent;
using System.Net.Sockets;
using System.Text;
using Xunit.Abstractions;
using ZeroDowntime.Hosting.FunctionalTests.Infrastructure;
using ZeroDowntime.Hosting.Tests.Infrastructure;
using static ZeroDowntime.Hosting.FunctionalTests.Infrastructure.HandoffSteps;

namespace ZeroDowntime.Hosting.FunctionalTests;

/// <summary>Under systemd (Type=notify, NotifyAccess=all) the unit's main pid follows the handoff.</summary>
public sealed class SystemdNotifyTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Handoff_UnderNotifySocket_SuccessorBecomesMainPid()
    {
        using var scope = new TestScope();
        string notifyPath = Path.Combine(scope.Directory, "notify.sock");
        using var systemd = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        systemd.Bind(new UnixDomainSocketEndPoint(notifyPath));
        var datagrams = new ConcurrentQueue<string>();
        using var stop = new CancellationTokenSource();
        var receiver = Task.Run(async () =>
        {
            var buffer = new byte[4096];
            try
            {
                while (true)
                {
                    int read = await systemd.ReceiveAsync(buffer, SocketFlags.None, stop.Token);
                    datagrams.Enqueue(Encoding.UTF8.GetString(buffer, 0, read));
                }
            }
            catch (OperationCanceledException)
            {
            }
        });

        var config = scope.Config().With("NOTIFY_SOCKET", notifyPath);
        await using var v1 = await StartFirstAsync("v1", config, output);

        // v2 holds at the last step before Ready (started, gate open, nothing said to v1 yet). Everything it sent
        // until then is in the datagram queue ahead of a sentinel that this test sends now: none may say READY.
        var (v2, oldExit) = await HandOverAsync(v1, "v2", config.WithFaultPause("before-ready"), output, async successor =>
        {
            await successor.WaitForEventAsync(Events.FaultInjectionPause);
            await FlushAsync(notifyPath, datagrams);
            var early = datagrams.Where(d => d.Contains($"MAINPID={successor.Pid}", StringComparison.Ordinal) || d.Contains("READY=1", StringComparison.Ordinal)).ToList();
            Assert.True(early.Count == 1 && early[0].Contains($"MAINPID={v1.Pid}", StringComparison.Ordinal),
                "before its Ready, v2 must not have said READY=1: " + string.Join(" | ", datagrams));
            successor.Signal(Posix.SIGCONT);
        });
        await using var _ = v2;
        await FlushAsync(notifyPath, datagrams);
        await stop.CancelAsync();
        await receiver;

        foreach (string datagram in datagrams)
        {
            output.WriteLine("sd_notify: " + datagram.Replace('\n', ' '));
        }

        var all = datagrams.Where(d => !d.StartsWith(Sentinel, StringComparison.Ordinal)).ToArray();
        int first = Array.FindIndex(all, d => d.Contains($"MAINPID={v1.Pid}\nREADY=1", StringComparison.Ordinal));
        int draining = Array.FindIndex(all, d => d.Contains($"STATUS=Handed over to pid {v2.Pid}", StringComparison.Ordinal));
        int second = Array.FindIndex(all, d => d.Contains($"MAINPID={v2.Pid}\nREADY=1", StringComparison.Ordinal));
        Assert.True(first >= 0 && second >= 0 && draining >= 0, string.Join(" | ", all));
        Assert.True(first < second, "v1 became main pid before v2");
        Assert.Equal(0, oldExit);

        // v2 says READY=1 once, after the commit (its status says so); v1 never says STOPPING=1 (systemd would
        // then stop the unit, successor included, or at least treat the service as going down).
        var fromV2 = all.Where(d => d.Contains($"MAINPID={v2.Pid}", StringComparison.Ordinal)).ToList();
        Assert.Single(fromV2);
        Assert.Contains($"STATUS=Serving; took over from pid {v1.Pid}", fromV2[0], StringComparison.Ordinal);
        Assert.Equal(2, all.Count(d => d.Contains("READY=1", StringComparison.Ordinal)));
        Assert.DoesNotContain(all, d => d.Contains("STOPPING=1", StringComparison.Ordinal));
    }

    private const string Sentinel = "TEST-SENTINEL";

    /// <summary>
    /// Sends a sentinel datagram and waits until the receiver has it: a datagram socket's queue is FIFO, so every
    /// datagram sent before it has been received by then.
    /// </summary>
    private static async Task FlushAsync(string notifyPath, ConcurrentQueue<string> datagrams)
    {
        string sentinel = $"{Sentinel} {Guid.NewGuid():N}";
        using (var socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified))
        {
            socket.Connect(new UnixDomainSocketEndPoint(notifyPath));
            socket.Send(Encoding.UTF8.GetBytes(sentinel));
        }

        await Until.TrueAsync(() => datagrams.Contains(sentinel), "the sentinel datagram");
    }
}
