using System.Collections.Concurrent;
using System.Net.Sockets;
using System.Text;
using Xunit.Abstractions;
using ZeroDowntime.Hosting.Tests.Infrastructure;
using static ZeroDowntime.Hosting.Tests.Infrastructure.Handoff;

namespace ZeroDowntime.Hosting.Tests.ProcessLevel;

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
        var (v2, oldExit) = await HandOverAsync(v1, "v2", config, output);
        await using var _ = v2;
        await stop.CancelAsync();
        await receiver;

        foreach (string datagram in datagrams)
        {
            output.WriteLine("sd_notify: " + datagram.Replace('\n', ' '));
        }

        var all = datagrams.ToArray();
        int first = Array.FindIndex(all, d => d.Contains($"MAINPID={v1.Pid}\nREADY=1", StringComparison.Ordinal));
        int draining = Array.FindIndex(all, d => d.Contains($"STATUS=Handed over to pid {v2.Pid}", StringComparison.Ordinal));
        int second = Array.FindIndex(all, d => d.Contains($"MAINPID={v2.Pid}\nREADY=1", StringComparison.Ordinal));
        Assert.True(first >= 0 && second >= 0 && draining >= 0, string.Join(" | ", all));
        Assert.True(first < second, "v1 became main pid before v2");
        Assert.Equal(0, oldExit);
    }
}
