using System.Collections.Concurrent;
using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Logging;
using ZeroDowntime.Hosting.Handoff;
using ZeroDowntime.Hosting.Protocol;
using ZeroDowntime.Hosting.Tests.Infrastructure;

namespace ZeroDowntime.Hosting.Tests.Unit;

/// <summary>
/// The warm-up with a real host in the test process: real Kestrel on real ports (HTTP/1.1 only, HTTP/2 only, HTTPS with
/// both), its requests coming through the endpoints' own listeners, marked, and all before the first client's.
/// </summary>
public sealed class WarmupTests
{
    private const int Iterations = 3;

    [Fact]
    public async Task FirstStart_WarmsEveryEndpointAndProtocolThroughKestrel_MarkedAndBeforeTheFirstClient()
    {
        using var scope = new TestScope();
        int http1 = scope.Port, http2 = TestScope.FreePort(), https = TestScope.FreePort();
        using var certificate = SelfSigned();
        var seen = new ConcurrentQueue<Seen>();
        var logs = new ListLoggerProvider();
        await using var app = Build(scope, logs, seen, required: false, kestrel =>
        {
            kestrel.ListenLocalhost(http1, o => o.Protocols = HttpProtocols.Http1);
            kestrel.ListenLocalhost(http2, o => o.Protocols = HttpProtocols.Http2);
            kestrel.ListenLocalhost(https, o => o.UseHttps(certificate));
        });
        await app.StartAsync();

        // The first clients: each waits in the kernel's queue until the warm-up is over and the gate opens.
        using var client = new HttpClient(new SocketsHttpHandler { SslOptions = { RemoteCertificateValidationCallback = (_, c, _, _) => c?.GetCertHashString() == certificate.GetCertHashString() } });
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync(new Uri($"http://localhost:{http1}/hit"))).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await client.SendAsync(new HttpRequestMessage(HttpMethod.Get, $"http://localhost:{http2}/hit") { Version = HttpVersion.Version20, VersionPolicy = HttpVersionPolicy.RequestVersionExact })).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync(new Uri($"https://localhost:{https}/hit"))).StatusCode);

        var all = seen.ToArray();
        var warmup = all.TakeWhile(s => s.Warmup).ToArray();
        Assert.Equal(3, all.Length - warmup.Length); // every warm-up request came before the first client's
        Assert.All(all.Skip(warmup.Length), s => Assert.False(s.Warmup));

        // Two requests a round (GET and POST with its header), Iterations rounds, on each endpoint over what it speaks.
        Assert.All(warmup, s => Assert.Equal("yes", s.Header ?? "yes"));
        Assert.Equal(2 * Iterations, warmup.Count(s => s.Endpoint.EndsWith($":{http1}", StringComparison.Ordinal) && s.Protocol == "HTTP/1.1"));
        Assert.Equal(2 * Iterations, warmup.Count(s => s.Endpoint.EndsWith($":{http2}", StringComparison.Ordinal) && s.Protocol == "HTTP/2"));
        Assert.Equal(2 * Iterations, warmup.Count(s => s.Endpoint.EndsWith($":{https}", StringComparison.Ordinal) && s.Protocol == "HTTP/1.1" && s.IsHttps));
        Assert.Equal(2 * Iterations, warmup.Count(s => s.Endpoint.EndsWith($":{https}", StringComparison.Ordinal) && s.Protocol == "HTTP/2" && s.IsHttps));
        Assert.Equal(8 * Iterations, warmup.Length);
        Assert.Equal(Iterations * 4, warmup.Count(s => s.Method == "POST" && s.Header == "yes"));

        var events = logs.Messages.Select(m => m.EventName).ToArray();
        // HTTP/2 on the HTTP/1.1 endpoint, and the other way round
        Assert.True(events.Count(e => e == "WarmupProtocolSkipped") == 2, string.Join("\n", logs.Messages.Select(m => $"{m.EventName}: {m.Text}")));
        Assert.Contains("WarmupFinished", events);
        Assert.DoesNotContain("WarmupRequestFailed", events);
        Assert.Contains(logs.Messages, m => m.EventName == "StartupPhase" && m.Text.Contains("WarmedUp", StringComparison.Ordinal));
        await app.StopAsync();
    }

    [Fact]
    public async Task Successor_RequiredWarmupRequestFails_GivesTheHandoffUpNamingTheRequest()
    {
        using var scope = new TestScope();
        using var predecessor = new FakePredecessor(scope.SocketPath);
        var logs = new ListLoggerProvider();
        var seen = new ConcurrentQueue<Seen>();
        int exitCodeBefore = Environment.ExitCode;
        try
        {
            await using var app = Build(scope, logs, seen, required: true, kestrel => kestrel.ListenLocalhost(scope.Port));
            var start = app.StartAsync();
            using var channel = await predecessor.WelcomeAsync();
            await start;

            var failed = Assert.IsType<FailedMessage>(await channel.ReadAsync(TimeSpan.FromSeconds(30), CancellationToken.None));
            Assert.Contains("GET /fail", failed.Reason, StringComparison.Ordinal);
            Assert.Contains("answered 500", failed.Reason, StringComparison.Ordinal);
            await Until.TrueAsync(() => Environment.ExitCode == ZeroDowntimeExitCodes.HandoffAbandoned, "exit code 77", TimeSpan.FromSeconds(10));
            Assert.Contains(logs.Messages, m => m.EventName == "NotReadyForHandoff" && m.Text.Contains("GET /fail", StringComparison.Ordinal));
            Assert.DoesNotContain(logs.Messages, m => m.EventName == "SentReady");
            Assert.All(seen, s => Assert.True(s.Warmup));
        }
        finally
        {
            Environment.ExitCode = exitCodeBefore;
        }
    }

    /// <summary>
    /// <c>Warmup:Passes=2</c>: the rounds go out twice on what each endpoint speaks (no second probe of what it does not),
    /// the second pass after the pause that lets the runtime start counting calls, and the warm-up ends only after it
    /// has waited for the JIT to be quiet (at most 1 s), all before the first client.
    /// </summary>
    [Fact]
    public async Task FirstStart_TwoPasses_SendsTheRoundsTwiceAfterAPause_ThenWaitsForAQuietJit()
    {
        using var scope = new TestScope();
        var seen = new ConcurrentQueue<Seen>();
        var logs = new ListLoggerProvider();
        await using var app = Build(scope, logs, seen, required: false, kestrel => kestrel.ListenLocalhost(scope.Port, o => o.Protocols = HttpProtocols.Http1), passes: 2);
        await app.StartAsync();

        using var client = new HttpClient();
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync(new Uri($"http://localhost:{scope.Port}/hit"))).StatusCode);

        var all = seen.ToArray();
        var warmup = all.TakeWhile(s => s.Warmup).ToArray();
        Assert.Single(all.Skip(warmup.Length)); // the client's, after every warm-up request
        Assert.Equal(2 * 2 * Iterations, warmup.Length); // two requests a round, Iterations rounds, two passes, HTTP/1.1 only

        var events = logs.Messages.Select(m => m.EventName).ToList();
        Assert.Equal(1, events.Count(e => e == "WarmupProtocolSkipped")); // HTTP/2 was refused once, in the first pass only
        var pass = Assert.Single(logs.Messages, m => m.EventName == "WarmupPass");
        Assert.Contains("pass 2 of 2, after 150 ms", pass.Text, StringComparison.Ordinal);
        int quiet = events.IndexOf("WarmupJitQuiet");
        Assert.InRange(quiet, events.IndexOf("WarmupPass") + 1, events.IndexOf("WarmupFinished") - 1);
        await app.StopAsync();
    }

    private static WebApplication Build(TestScope scope, ListLoggerProvider logs, ConcurrentQueue<Seen> seen, bool required, Action<KestrelServerOptions> listen,
        int passes = 1)
    {
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { EnvironmentName = "Production", ContentRootPath = AppContext.BaseDirectory });
        builder.Configuration["ZeroDowntime:SocketPath"] = scope.SocketPath;
        builder.Configuration["ZeroDowntime:ApplicationId"] = "component-test";
        builder.Configuration["ZeroDowntime:Upgrade:Signal"] = "None";
        builder.Configuration["ZeroDowntime:Warmup:Requests:0"] = required ? "GET /fail" : "GET /hit";
        builder.Configuration["ZeroDowntime:Warmup:Requests:1"] = "POST /hit\nX-Test: yes";
        builder.Configuration["ZeroDowntime:Warmup:Iterations"] = Iterations.ToString(System.Globalization.CultureInfo.InvariantCulture);
        builder.Configuration["ZeroDowntime:Warmup:Required"] = required ? "true" : "false";
        builder.Configuration["ZeroDowntime:Warmup:Passes"] = passes.ToString(System.Globalization.CultureInfo.InvariantCulture);
        builder.Logging.ClearProviders();
        builder.Logging.AddProvider(logs);
        builder.Logging.SetMinimumLevel(LogLevel.Information);
        builder.WebHost.ConfigureKestrel(listen);
        builder.WebHost.UseZeroDowntime();
        var app = builder.Build();
        RequestDelegate record = context =>
        {
            var feature = context.Features.Get<IZeroDowntimeWarmupFeature>();
            seen.Enqueue(new Seen(feature is not null, feature?.Endpoint ?? $"client:{context.Connection.LocalPort}", context.Request.Protocol,
                context.Request.IsHttps, context.Request.Method, context.Request.Headers["X-Test"].FirstOrDefault()));
            context.Response.StatusCode = context.Request.Path == "/fail" ? 500 : 200;
            return context.Response.WriteAsync("ok");
        };
        app.Map("/hit", record);
        app.Map("/fail", record);
        return app;
    }

    private static X509Certificate2 SelfSigned()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=localhost", key, HashAlgorithmName.SHA256);
        var names = new SubjectAlternativeNameBuilder();
        names.AddDnsName("localhost");
        request.CertificateExtensions.Add(names.Build());
        using var certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddHours(1));
        return X509CertificateLoader.LoadPkcs12(certificate.Export(X509ContentType.Pkcs12), null);
    }

    private sealed record Seen(bool Warmup, string Endpoint, string Protocol, bool IsHttps, string Method, string? Header);
}
