using Microsoft.Extensions.Logging;
using ZeroDowntime.Hosting.Warmup;

namespace ZeroDowntime.Hosting.Logging;

/// <summary>Events 160-179: the warm-up and the readiness gate before a process takes over or first accepts.</summary>
internal static partial class ZeroDowntimeLog
{
    [LoggerMessage(160, LogLevel.Information, "Warm-up: {RequestCount} request(s) x {Iterations} round(s) (at least {Duration}), {Concurrency} at a time, on {EndpointCount} endpoint(s), through Kestrel, before {Before}", EventName = "WarmupStarted")]
    public static partial void WarmupStarted(this ILogger logger, int requestCount, int iterations, TimeSpan duration, int concurrency, int endpointCount, string before);

    [LoggerMessage(161, LogLevel.Debug, "Warm-up {Request} on {Endpoint} over {Protocol}: {StatusCode} in {ElapsedMs:0.000} ms", EventName = "WarmupRequest")]
    public static partial void WarmupRequest(this ILogger logger, string request, string endpoint, string protocol, int statusCode, double elapsedMs);

    [LoggerMessage(162, LogLevel.Information, "Warm-up {Request} on {Endpoint} over {Protocol}: {Count} sent, status {Statuses}; first {FirstMs:0.0} ms, last {LastMs:0.000} ms", EventName = "WarmupRequestSummary")]
    public static partial void WarmupRequestSummary(this ILogger logger, string request, string endpoint, string protocol, int count, string statuses, double firstMs, double lastMs);

    [LoggerMessage(163, LogLevel.Warning, "Warm-up {Request} on {Endpoint} over {Protocol} failed: {Detail}", EventName = "WarmupRequestFailed")]
    public static partial void WarmupRequestFailed(this ILogger logger, string request, string endpoint, string protocol, string detail);

    [LoggerMessage(164, LogLevel.Information, "Warm-up: {Endpoint} does not speak {Protocol} ({Detail}); not warmed over it", EventName = "WarmupProtocolSkipped")]
    public static partial void WarmupProtocolSkipped(this ILogger logger, string endpoint, string protocol, string detail);

    [LoggerMessage(165, LogLevel.Information, "Warm-up done in {ElapsedMs:0.0} ms: {Sent} request(s), {Failed} failed", EventName = "WarmupFinished")]
    public static partial void WarmupFinished(this ILogger logger, double elapsedMs, int sent, int failed);

    [LoggerMessage(166, LogLevel.Critical, "Not taking over from pid {ProcessId}: {Reason}. The running process keeps serving; this process stops with exit code {ExitCode}.", EventName = "NotReadyForHandoff")]
    public static partial void NotReadyForHandoff(this ILogger logger, int processId, string reason, int exitCode);

    [LoggerMessage(167, LogLevel.Warning, "Serving although {Reason} (a first start: nobody else serves, so the gate opens anyway)", EventName = "FirstStartNotReady")]
    public static partial void FirstStartNotReady(this ILogger logger, string reason);

    [LoggerMessage(168, LogLevel.Information, "Readiness: waiting for check(s) tagged {Tag}: {Checks}", EventName = "ReadinessWaiting")]
    public static partial void ReadinessWaiting(this ILogger logger, string tag, string checks);

    [LoggerMessage(169, LogLevel.Information, "Readiness: {Count} check(s) tagged {Tag} Healthy after {ElapsedMs:0.0} ms", EventName = "ReadinessHealthy")]
    public static partial void ReadinessHealthy(this ILogger logger, int count, string tag, double elapsedMs);

    [LoggerMessage(170, LogLevel.Information, "Warm-up: no endpoint of this process is served through the handoff's listeners; nothing sent", EventName = "WarmupNoEndpoint")]
    public static partial void WarmupNoEndpoint(this ILogger logger);

    [LoggerMessage(171, LogLevel.Warning, "Warm-up skipped: the start-up took all of HandoffTimeout ({HandoffTimeout}) that it may use", EventName = "WarmupSkipped")]
    public static partial void WarmupSkipped(this ILogger logger, TimeSpan handoffTimeout);

    [LoggerMessage(172, LogLevel.Information, "JIT profile {Path}: {Bytes} bytes recorded by an earlier process of this app; the runtime compiles its methods ahead on a background thread while this process starts ({ProcessorCount} CPUs), and records this process's own profile over it when it exits", EventName = "JitProfilePlayed")]
    public static partial void JitProfilePlayed(this ILogger logger, string path, long bytes, int processorCount);

    [LoggerMessage(173, LogLevel.Information, "JIT profile {Path}: none yet; this process records which methods it compiles and writes them there when it exits, for the next version to compile ahead", EventName = "JitProfileRecording")]
    public static partial void JitProfileRecording(this ILogger logger, string path);

    [LoggerMessage(174, LogLevel.Warning, "JIT profile {Path} not used: it is not a regular file of this user (owner uid {Uid}); remove it, or set ZeroDowntime:Warmup:JitProfile=false", EventName = "JitProfileRefused")]
    public static partial void JitProfileRefused(this ILogger logger, string path, uint uid);

    [LoggerMessage(175, LogLevel.Information, "Warm-up pass {Pass} of {Passes}, after {PauseMs:0} ms without requests (the runtime counts calls towards optimized code only after such a pause)", EventName = "WarmupPass")]
    public static partial void WarmupPass(this ILogger logger, int pass, int passes, double pauseMs);

    [LoggerMessage(176, LogLevel.Information, "Warm-up: JIT quiet {Quiet} after {ElapsedMs:0} ms ({Methods} methods compiled meanwhile; quiet means none for {QuietMs:0} ms, waited at most 1 s)", EventName = "WarmupJitQuiet")]
    public static partial void WarmupJitQuiet(this ILogger logger, bool quiet, double elapsedMs, long methods, double quietMs);
}
