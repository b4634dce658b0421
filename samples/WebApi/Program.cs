using System.Globalization;
using ZeroDowntime.Hosting;
using ZeroDowntime.Sample;

var builder = WebApplication.CreateBuilder(args);
builder.WebHost.UseZeroDowntime();
builder.Services.AddHostedService<SampleStartup>();
builder.UseBenchmarkSwitches();

var app = builder.Build();

// Every response of "/" has the same length (the pid is zero-padded), so Apache Bench counts none as failed.
string pid = Environment.ProcessId.ToString("D7", CultureInfo.InvariantCulture);
app.MapGet("/", () => $"Hello from ZeroDowntime.Hosting sample, pid {pid}\n");
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

app.Run();
