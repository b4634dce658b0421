using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using ZeroDowntime.Hosting.Handoff;
using ZeroDowntime.Hosting.Listeners;
using ZeroDowntime.Hosting.Protocol;
using ZeroDowntime.Hosting.Tests.Infrastructure;

namespace ZeroDowntime.Hosting.Tests.Unit;

/// <summary>
/// The successor's check at ApplicationStarted (issue 24): the real coordinator as the successor, the test as the
/// predecessor that hands it two real listening sockets, and as Kestrel, which asks the registry for the endpoints of
/// the successor's configuration. A successor that keeps none of them must not say Ready.
/// </summary>
public sealed class InheritedEndpointCheckTests : IDisposable
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(10);

    private static readonly ConfigurationOrigin Elsewhere = new("/srv/elsewhere", "Production",
        [new ConfigurationFile("/srv/elsewhere/appsettings.json", Found: false)], NamesEndpoints: false);

    private readonly Socket[] _predecessorListeners = [Listen(), Listen()];

    public void Dispose()
    {
        foreach (var socket in _predecessorListeners)
        {
            socket.Dispose();
        }
    }

    [Fact]
    public async Task TakingOver_KeepsNoInheritedEndpoint_SendsFailedNamingEverything_StopsWith80_NeverReadyNorAccepting()
    {
        await using var process = new InProcessCoordinator();
        process.Options.Origin = Elsewhere;
        using var predecessor = new FakePredecessor(process.SocketPath);
        using var channel = await TakeOverAsync(process, predecessor);

        // Kestrel binds the one endpoint this configuration names (here 127.0.0.1:0): none of the inherited ones.
        process.Registry.Acquire(new IPEndPoint(IPAddress.Loopback, 0), ListenerKey.For(new IPEndPoint(IPAddress.Loopback, 0))!, new SocketTransportOptions());
        process.Application.Start();

        var failed = Assert.IsType<FailedMessage>(await channel.ReadAsync(Bound, CancellationToken.None));
        Assert.Contains(Keys[0], failed.Reason, StringComparison.Ordinal);
        Assert.Contains(Keys[1], failed.Reason, StringComparison.Ordinal);
        Assert.Contains("only tcp:127.0.0.1:0", failed.Reason, StringComparison.Ordinal);
        Assert.Contains("content root /srv/elsewhere (environment Production; configuration files: /srv/elsewhere/appsettings.json (not found))", failed.Reason, StringComparison.Ordinal);
        Assert.Contains("no Urls, HTTP_PORTS, HTTPS_PORTS or Kestrel:Endpoints", failed.Reason, StringComparison.Ordinal);
        Assert.Contains("AllowReplacingAllEndpoints", failed.Reason, StringComparison.Ordinal);

        await process.Application.StopRequested.Task.WaitAsync(Bound);
        var line = Assert.Single(process.Logger.Named("NoEndpointKept"));
        Assert.Equal(Microsoft.Extensions.Logging.LogLevel.Critical, line.Level);
        Assert.Contains($"exit code {ZeroDowntimeExitCodes.NoEndpointKept}", line.Message, StringComparison.Ordinal);
        Assert.Empty(process.Logger.Named("HandoffAbandoned"));
        Assert.Empty(process.Logger.Named("SentReady"));
        Assert.False(process.Gate.HasOpened, "a successor that does not take over never accepts");
        Assert.Equal(ProcessRole.Leaving, process.Coordinator.Role);

        // Its copies of the inherited sockets are still open (closed only when the host stops, with a plain close(2)),
        // and the predecessor's own sockets listen as before.
        Assert.All(process.Registry.Snapshot().Where(l => l.Inherited), l => Assert.Equal(ListenerState.Waiting, l.State));
        foreach (var listener in _predecessorListeners)
        {
            using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            await client.ConnectAsync(listener.LocalEndPoint!).WaitAsync(Bound);
        }
    }

    [Fact]
    public async Task TakingOver_KeepsOneOfTwoInheritedEndpoints_SaysReady()
    {
        await using var process = new InProcessCoordinator();
        using var predecessor = new FakePredecessor(process.SocketPath);
        using var channel = await TakeOverAsync(process, predecessor);

        var kept = (IPEndPoint)_predecessorListeners[0].LocalEndPoint!;
        Assert.True(process.Registry.Acquire(kept, ListenerKey.For(kept)!, new SocketTransportOptions()).Inherited);
        process.Application.Start();

        Assert.IsType<ReadyMessage>(await channel.ReadAsync(Bound, CancellationToken.None));
        Assert.Empty(process.Logger.Named("NoEndpointKept"));
        Assert.Equal(ListenerState.Dropped, process.Registry.Snapshot().Single(l => l.WireKey == Keys[1]).State); // until the commit
    }

    [Fact]
    public async Task TakingOver_KeepsNone_AllowReplacingAllEndpoints_SaysReadyAndLogsTheReplacement()
    {
        await using var process = new InProcessCoordinator();
        process.Options.AllowReplacingAllEndpoints = true;
        process.Options.Origin = Elsewhere;
        using var predecessor = new FakePredecessor(process.SocketPath);
        using var channel = await TakeOverAsync(process, predecessor);

        process.Application.Start();

        Assert.IsType<ReadyMessage>(await channel.ReadAsync(Bound, CancellationToken.None));
        var line = Assert.Single(process.Logger.Named("ReplacingAllEndpoints"));
        Assert.Contains($"{Keys[0]}, {Keys[1]}", line.Message, StringComparison.Ordinal);
        Assert.Contains("with no endpoint at all", line.Message, StringComparison.Ordinal);
        Assert.Empty(process.Logger.Named("NoEndpointKept"));
        Assert.All(process.Registry.Snapshot(), l => Assert.Equal(ListenerState.Dropped, l.State)); // until the commit
    }

    private string[] Keys => _predecessorListeners.Select(s => ListenerKey.For(s.LocalEndPoint!)!.ToString()).ToArray();

    /// <summary>Starts the coordinator as the successor and welcomes it with the two listening sockets.</summary>
    private async Task<HandoffChannel> TakeOverAsync(InProcessCoordinator process, FakePredecessor predecessor)
    {
        var starting = process.Coordinator.StartingAsync(CancellationToken.None);
        var channel = await predecessor.AcceptAsync();
        var hello = Assert.IsType<HelloMessage>(await channel.ReadAsync(Bound, CancellationToken.None));
        var descriptors = _predecessorListeners.Select(s => new ListenerDescriptor(ListenerKey.For(s.LocalEndPoint!)!.ToString(), s.LocalEndPoint!.ToString()!)).ToArray();
        channel.Send(new WelcomeMessage(hello.Version, Environment.ProcessId, descriptors, 1, 0), _predecessorListeners.Select(s => (int)s.Handle).ToArray());
        await starting.WaitAsync(Bound);
        Assert.Equal(2, process.Registry.Snapshot().Count(l => l.Inherited));
        return channel;
    }

    private static Socket Listen()
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        socket.Listen(16);
        return socket;
    }
}
