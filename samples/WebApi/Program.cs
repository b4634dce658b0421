using System.Globalization;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Configuration.CommandLine;
using Microsoft.Extensions.Configuration.EnvironmentVariables;
using NLog.Web;
using ZeroDowntime.Hosting;
using ZeroDowntime.Hosting.NLog;
using ZeroDowntime.Sample;

var builder = WebApplication.CreateBuilder(args);

// Native AOT has no reflection-based JSON: the answers written as JSON (BadRequest with a message) use this context.
builder.Services.ConfigureHttpJsonOptions(json => json.SerializerOptions.TypeInfoResolverChain.Insert(0, SampleJsonContext.Default));

// The default address is the Urls key of appsettings.json. WebApplicationBuilder reads ASPNETCORE_* variables
// before appsettings.json, so re-add them above it (below the command line): ASPNETCORE_URLS and --urls override it.
var sources = ((IConfigurationBuilder)builder.Configuration).Sources;
int commandLine = sources.ToList().FindIndex(source => source is CommandLineConfigurationSource);
sources.Insert(commandLine < 0 ? sources.Count : commandLine, new EnvironmentVariablesConfigurationSource { Prefix = "ASPNETCORE_" });

builder.WebHost.UseZeroDowntime().UseZeroDowntimeNLog();

// NLog writes webapi.log to Logs:Directory (relative to the content root); the console logger stays as it is.
builder.Configuration["Logs:Directory"] = Path.GetFullPath(builder.Configuration["Logs:Directory"] ?? "logs", builder.Environment.ContentRootPath);
builder.Host.UseNLog();

// Logs:ConsoleJson=true (the process-level tests set it) writes each console line as one JSON object carrying the event
// id and name and the structured properties (ConsoleJsonFormatter.cs); without it the console is for humans.
if (builder.Configuration.GetValue("Logs:ConsoleJson", false))
{
    builder.Logging.AddConsoleJsonFormatter();
}

builder.Services.AddHostedService<SampleStartup>();

// Sample:FailRequestsAfterMs=N: "/" answers 500 from N ms after this release took over (a release that breaks after its
// commit, for the probation's proofs); absent or negative: never.
FailRequestsAfterTakeover.Register(builder);

TestSeams.Register(builder.Services); // nothing outside the test build (see TestSeams)
var healthChecks = builder.Services.AddHealthChecks().AddZeroDowntime();

// Sample:UnreadyCheck=true adds a check that holds the handoff (tagged zerodowntime-ready) and is never Healthy: the
// successor gives the handoff up shortly before HandoffTimeout, naming it (issue 19's readiness gate).
if (builder.Configuration.GetValue("Sample:UnreadyCheck", false))
{
    healthChecks.AddCheck("sample-dependency", () => HealthCheckResult.Unhealthy("the sample's dependency is down (Sample:UnreadyCheck=true)"),
        tags: [ZeroDowntimeHealthChecksBuilderExtensions.ReadyForHandoffTag]);
}
builder.Services.AddSignalR().AddJsonProtocol(json => json.PayloadSerializerOptions.TypeInfoResolverChain.Insert(0, SampleJsonContext.Default));

var app = builder.Build();

// Every response of "/" has the same length (the pid is zero-padded), so Apache Bench counts none as failed.
string pid = Environment.ProcessId.ToString("D7", CultureInfo.InvariantCulture);
var rootCalls = new ColdPathCounter();
var failRoot = app.Services.GetService<FailRequestsAfterTakeover>(); // null without Sample:FailRequestsAfterMs
app.MapGet("/", (HttpContext context) =>
{
    rootCalls.Count(context);
    if (failRoot?.Fails(context) == true)
    {
        context.Response.StatusCode = StatusCodes.Status500InternalServerError;
        return failRoot.Body;
    }

    return $"Hello from ZeroDowntime.Hosting sample, pid {pid}\n";
});

// How often "/" ran, warm-up requests apart, and whether its first run (its cold path) was a warm-up request.
app.MapGet("/stats/root", () => rootCalls.Describe());
app.MapGet("/pid", () => Environment.ProcessId.ToString(CultureInfo.InvariantCulture));
app.MapGet("/delay/{ms}", async (string ms, CancellationToken aborted) =>
{
    if (!int.TryParse(ms, NumberStyles.None, CultureInfo.InvariantCulture, out int delay) || delay > 60_000)
    {
        return Results.BadRequest("ms must be an integer from 0 to 60000\n");
    }

    await Task.Delay(delay, aborted);
    return Results.Text($"delayed {delay} ms, pid {pid}\n");
});
app.MapGet("/log/{id}", LogMarkerEndpoint.Handle);

// Long-lived connections (/ws, /sse, /hub), which the drain closes so that their clients move to the successor.
LongLivedEndpoints.Map(app);

// Readiness follows the handoff and the shutdown delay (503 while this process leaves rotation or drains); liveness
// is 200 while the process runs.
app.MapHealthChecks("/health/ready", new HealthCheckOptions { Predicate = check => check.Tags.Contains("ready") });
app.MapHealthChecks("/health/live", new HealthCheckOptions { Predicate = _ => false });

app.Run();
