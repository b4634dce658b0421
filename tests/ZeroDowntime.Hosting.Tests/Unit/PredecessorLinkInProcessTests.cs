using Microsoft.Extensions.DependencyInjection;
using Xunit.Abstractions;
using ZeroDowntime.Hosting.Handoff;
using ZeroDowntime.Hosting.Protocol;
using ZeroDowntime.Hosting.Tests.Infrastructure;

namespace ZeroDowntime.Hosting.Tests.Unit;

/// <summary>
/// The successor's side with a real host inside the test process (real Kestrel, real sockets), against a hand-driven
/// predecessor on the handoff socket or none: what a process cannot show from outside. The same side against real
/// sample processes is in ZeroDowntime.Hosting.FunctionalTests (SuccessorSideTests).
/// </summary>
public sealed class PredecessorLinkInProcessTests(ITestOutputHelper output)
{
    /// <summary>
    /// Descriptors that come with the wrong frame, or in another number than announced, or from another protocol
    /// version, are closed by the successor at once, not at its exit: the successor here is a host in the test
    /// process, which lives on, and each descriptor sent is the far end of a socket pair whose near end then reads
    /// end of stream.
    /// </summary>
    [Theory]
    [InlineData("fewer", ZeroDowntimeExitCodes.RefusedByPredecessor)]
    [InlineData("more", ZeroDowntimeExitCodes.RefusedByPredecessor)]
    [InlineData("other-version", ZeroDowntimeExitCodes.ProtocolVersionMismatch)]
    [InlineData("non-welcome", ZeroDowntimeExitCodes.RefusedByPredecessor)]
    public async Task DescriptorsThatDoNotMatchTheWelcome_AreClosedAtOnce_StartFails(string variant, int exitCode)
    {
        using var scope = new TestScope();
        using var first = await FdProbe.CreateAsync(scope.Directory);
        using var second = await FdProbe.CreateAsync(scope.Directory);
        var one = new[] { new ListenerDescriptor($"tcp:127.0.0.1:{scope.Port}", $"127.0.0.1:{scope.Port}") };
        var two = new[] { one[0], new ListenerDescriptor("tcp:127.0.0.1:1", "127.0.0.1:1") };
        await using var fake = FakePredecessor.Start(scope.SocketPath, (_, channel) =>
        {
            switch (variant)
            {
                case "fewer":
                    channel.Send(new WelcomeMessage(HandoffProtocol.Version, 4242, two), [first.Fd]);
                    break;
                case "more":
                    channel.Send(new WelcomeMessage(HandoffProtocol.Version, 4242, one), [first.Fd, second.Fd]);
                    break;
                case "other-version":
                    channel.Send(new WelcomeMessage(HandoffProtocol.Version + 1, 4242, two), [first.Fd, second.Fd]);
                    break;
                default:
                    channel.Send(new RefusedMessage(RefusalReason.Busy, HandoffProtocol.Version, "busy, with descriptors attached"), [first.Fd, second.Fd]);
                    break;
            }

            first.CloseLocalCopy();
            second.CloseLocalCopy();
            return Task.CompletedTask;
        });

        await using var successor = InProcessHost.Create(scope.SocketPath, scope.Port, output, "successor");
        var failure = await Assert.ThrowsAnyAsync<Exception>(() => successor.App.StartAsync());
        output.WriteLine($"start failed: {Posix.Describe(failure)}");
        Assert.Equal(exitCode, ProcessExitHooks.ExitCodeFor(failure));

        // The host object is alive; the descriptors it was sent must already be closed.
        Assert.True(await first.AllCopiesClosedAsync(TimeSpan.FromSeconds(5)), "the first descriptor is still open in the successor");
        Assert.True(await second.AllCopiesClosedAsync(TimeSpan.FromSeconds(5)), "the second descriptor is still open in the successor");
    }

    /// <summary>
    /// A host disposed without being stopped (a test, or an app that builds, starts and disposes a host itself): Kestrel
    /// unbinds its listeners during the dispose, after the library's own state is gone. The listener callback of the
    /// service manager's fd store read a disposed token there and the dispose threw ObjectDisposedException.
    /// </summary>
    [Fact]
    public async Task HostDisposedWithoutStop_DisposesWithoutThrowing()
    {
        using var scope = new TestScope();
        var host = InProcessHost.Create(scope.SocketPath, scope.Port, output, "v1"); // not InProcessHost's dispose: it stops first
        await host.App.StartAsync();
        await host.WaitForEventAsync(Events.ServingHandoffSocket);

        await host.App.DisposeAsync();
    }

    /// <summary>
    /// A plain stop (what SIGTERM triggers) drains too (DrainOnShutdown, the default): Draining is cancelled, and
    /// HasHandedOver stays false, as the README promises.
    /// </summary>
    [Fact]
    public async Task ZeroDowntimeLifetime_PlainStop_HasHandedOverFalse_DrainingCancelled()
    {
        using var scope = new TestScope();
        await using var v1 = InProcessHost.Create(scope.SocketPath, scope.Port, output, "v1");
        await v1.App.StartAsync();
        var lifetime = v1.App.Services.GetRequiredService<IZeroDowntimeLifetime>();
        await v1.WaitForEventAsync(Events.ServingHandoffSocket);

        v1.App.Lifetime.StopApplication();
        await v1.App.StopAsync();
        Assert.False(lifetime.HasHandedOver);
        Assert.True(lifetime.Draining.IsCancellationRequested);
        Assert.False(File.Exists(scope.SocketPath));
    }
}
