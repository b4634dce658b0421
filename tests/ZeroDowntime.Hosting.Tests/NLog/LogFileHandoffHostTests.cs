using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using NLog;
using NLog.Config;
using NLog.Targets;
using ZeroDowntime.Hosting.Handoff;
using ZeroDowntime.Hosting.NLog;
using ZeroDowntime.Hosting.NLog.Internal;
using ZeroDowntime.Hosting.Tests.Infrastructure;
using ILogger = Microsoft.Extensions.Logging.ILogger;

namespace ZeroDowntime.Hosting.Tests.NLog;

/// <summary>
/// The NLog package in a real host, over a real log directory: who tells the participant that the process owns its
/// files when no handoff runs (the core's first-start runner), the participant's states as the core drives them, and
/// the options' validation at start.
/// </summary>
public sealed class LogFileHandoffHostTests : IDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);
    private readonly TestScope _scope = new();
    private readonly LogFactory _factory = new();
    private readonly RecordingProvider _log = new();

    private string LogPath => Path.Combine(_scope.Directory, "app.log");

    public void Dispose()
    {
        _factory.Dispose();
        _scope.Dispose();
    }

    [Fact]
    public async Task StartAsync_CoreDisabled_HeldLinesWrittenAtStart()
    {
        await using var app = Build(web => web.UseZeroDowntime(o => o.Enabled = false).UseZeroDowntimeNLog(o => o.LogFactory = _factory));
        await AssertHeldUntilStartThenWrittenAsync(app);
    }

    [Fact]
    public async Task StartAsync_UseZeroDowntimeAbsent_HeldLinesWrittenAtStart()
    {
        await using var app = Build(web => web.UseZeroDowntimeNLog(o => o.LogFactory = _factory));
        await AssertHeldUntilStartThenWrittenAsync(app);
    }

    [Fact]
    public async Task StartAsync_UseZeroDowntimeNLogCalledTwice_OneParticipantOneRunner()
    {
        await using var app = Build(web => web.UseZeroDowntimeNLog(o => o.LogFactory = _factory).UseZeroDowntimeNLog(o => o.LogFactory = _factory));
        Assert.Single(app.Services.GetServices<IHandoffParticipant>());
        Assert.Single(app.Services.GetServices<IHostedService>().OfType<FirstStartParticipantRunner>());
        await AssertHeldUntilStartThenWrittenAsync(app);
    }

    [Fact]
    public async Task StartAsync_InvalidOptions_EveryProblemReportedAtOnce_LinesKeptOffTheFile()
    {
        await using var app = Build(web => web.UseZeroDowntimeNLog(o =>
        {
            o.LogFactory = _factory;
            o.MaxHeldLines = -1;
            o.ArchiveFileName = "old/{name}{ext}";
        }));
        _factory.GetLogger("test").Info("before the failure");

        var ex = await Assert.ThrowsAsync<OptionsValidationException>(() => app.StartAsync().WaitAsync(Timeout));
        Assert.Equal(typeof(LogFileHandoffOptions), ex.OptionsType);
        Assert.Equal(3, ex.Failures.Count());
        Assert.Contains(ex.Failures, f => f.StartsWith("ZeroDowntime:LogFiles:MaxHeldLines must be zero or more, not -1.", StringComparison.Ordinal));
        Assert.Contains(ex.Failures, f => f.StartsWith("ZeroDowntime:LogFiles:ArchiveFileName", StringComparison.Ordinal) && f.Contains("{pid}", StringComparison.Ordinal));
        Assert.Contains(ex.Failures, f => f.Contains("without directories", StringComparison.Ordinal));

        // The process never owned its file: with the defaults standing in, its lines go to an archive of its own.
        await app.DisposeAsync();
        _factory.Flush();
        Assert.False(File.Exists(LogPath), "a process that fails at start must not write the configured file");
        string archive = Assert.Single(Directory.GetFiles(_scope.Directory, $"app.*.{Environment.ProcessId}.log"));
        Assert.Equal(["before the failure"], File.ReadAllLines(archive));
        Assert.False(Directory.Exists(Path.Combine(_scope.Directory, "old")));
    }

    [Fact]
    public void Validate_Disabled_Skips()
    {
        var result = new LogFileHandoffOptionsValidator().Validate(null, new LogFileHandoffOptions { Enabled = false, MaxHeldLines = -1 });
        Assert.True(result.Skipped);
        Assert.True(new LogFileHandoffOptionsValidator().Validate(null, new LogFileHandoffOptions()).Succeeded);
    }

    [Fact]
    public async Task AcquireAsync_ThroughEveryState_LogsEachStepByName()
    {
        using var handoff = StartHandoff();
        var participant = LogFileHandoffParticipant.Create(handoff, _log);
        Assert.Single(_log.Logger.Named("LogFilesFound"));
        _factory.GetLogger("test").Info("held");

        await participant.AcquireAsync(HandoffAcquireReason.FirstStart, CancellationToken.None).WaitAsync(Timeout);
        Assert.Single(_log.Logger.Named("LogFileAcquired"));
        Assert.Equal(LogFileOwnership.Owning, handoff.State);

        await participant.ReleaseAsync(CancellationToken.None).WaitAsync(Timeout);
        var released = Assert.Single(_log.Logger.Named("LogFileReleased"));
        Assert.Equal(LogFileOwnership.Released, handoff.State);

        // The successor was lost after the commit: this process serves again but keeps to its archive.
        await participant.AcquireAsync(HandoffAcquireReason.Reclaimed, CancellationToken.None).WaitAsync(Timeout);
        Assert.Single(_log.Logger.Named("LogFilesStayArchived"));
        Assert.Equal(LogFileOwnership.Released, handoff.State);
        _factory.GetLogger("test").Info("after");
        participant.Dispose();
        _factory.Flush();

        Assert.False(File.Exists(LogPath));
        Assert.Empty(_log.Logger.Named("LogFileAbandoned"));
        string archive = Assert.Single(Directory.GetFiles(_scope.Directory, "app.*.log"));
        Assert.Contains(archive, released.Message, StringComparison.Ordinal);
        Assert.Equal(["held", "after"], File.ReadAllLines(archive));
    }

    [Fact]
    public void Dispose_NeverOwned_WritesHeldLinesToOwnArchive()
    {
        using var handoff = StartHandoff();
        var participant = LogFileHandoffParticipant.Create(handoff, _log);
        _factory.GetLogger("test").Info("held");

        participant.Dispose();
        _factory.GetLogger("test").Error("last words");
        _factory.Flush();

        Assert.Single(_log.Logger.Named("LogFileAbandoned"));
        Assert.Equal(LogFileOwnership.Abandoned, handoff.State);
        Assert.False(File.Exists(LogPath));
        string archive = Assert.Single(Directory.GetFiles(_scope.Directory, "app.*.log"));
        Assert.Equal(["held", "last words"], File.ReadAllLines(archive));
    }

    [Fact]
    public void Create_ConsoleOnlyConfiguration_SaysNoLogFiles()
    {
        using var handoff = new LogFileHandoff(new LogFileHandoffOptions());
        handoff.Attach(_factory);
        var config = new LoggingConfiguration(_factory);
        config.AddRuleForAllLevels(new MemoryTarget("memory"));
        _factory.Configuration = config;

        LogFileHandoffParticipant.Create(handoff, _log);
        Assert.Single(_log.Logger.Named("NoLogFiles"));
    }

    [Theory]
    [InlineData(false, true)]
    [InlineData(true, true)]
    [InlineData(false, false)]
    [InlineData(true, false)]
    public async Task StartAsync_CoordinatorRegistered_RunnerCallsParticipantsOnlyWhenDisabled(bool coordinatorFirst, bool enabled)
    {
        var participant = new CountingParticipant();
        var builder = Host.CreateApplicationBuilder();
        builder.Services.Configure<ZeroDowntimeOptions>(o => o.Enabled = enabled);
        if (coordinatorFirst)
        {
            FirstStartParticipantRunner.CoordinatorCallsParticipantsWhenEnabled(builder.Services);
        }

        FirstStartParticipantRunner.Register(builder.Services);
        FirstStartParticipantRunner.Register(builder.Services);
        if (!coordinatorFirst)
        {
            FirstStartParticipantRunner.CoordinatorCallsParticipantsWhenEnabled(builder.Services);
        }

        builder.Services.AddSingleton<IHandoffParticipant>(participant);
        using var host = builder.Build();
        await host.StartAsync().WaitAsync(Timeout);
        await host.StopAsync().WaitAsync(Timeout); // waits for the runner's calls, if it made any

        // Enabled=false, read from the bound options at start: the coordinator stands aside and the runner acquires once.
        Assert.Equal(enabled ? [] : [HandoffAcquireReason.FirstStart], participant.Calls);
    }

    [Fact]
    public async Task StartAsync_NoHandoffs_EveryParticipantAcquiresFirstStartOnce_OneFailingDoesNotStopTheOthers()
    {
        var failing = new CountingParticipant { Throws = true };
        var second = new CountingParticipant();
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        builder.Logging.AddProvider(_log);
        FirstStartParticipantRunner.Register(builder.Services);
        FirstStartParticipantRunner.Register(builder.Services);
        builder.Services.AddSingleton<IHandoffParticipant>(failing);
        builder.Services.AddSingleton<IHandoffParticipant>(second);
        using var host = builder.Build();

        await host.StartAsync().WaitAsync(Timeout);
        await host.StopAsync().WaitAsync(Timeout);

        Assert.Equal([HandoffAcquireReason.FirstStart], failing.Calls);
        Assert.Equal([HandoffAcquireReason.FirstStart], second.Calls);
        Assert.Single(_log.Logger.Named("ParticipantFailed"));
    }

    private WebApplication Build(Action<IWebHostBuilder> configure)
    {
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { EnvironmentName = "Production", ContentRootPath = AppContext.BaseDirectory });
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        builder.Logging.AddProvider(_log);
        configure(builder.WebHost);
        _factory.Configuration = FileConfiguration();
        return builder.Build();
    }

    private LogFileHandoff StartHandoff()
    {
        var handoff = new LogFileHandoff(new LogFileHandoffOptions());
        handoff.Attach(_factory);
        _factory.Configuration = FileConfiguration();
        return handoff;
    }

    private LoggingConfiguration FileConfiguration()
    {
        var config = new LoggingConfiguration(_factory);
        config.AddRuleForAllLevels(new FileTarget("file") { FileName = LogPath, Layout = "${message}", LineEnding = LineEndingMode.LF });
        return config;
    }

    private async Task AssertHeldUntilStartThenWrittenAsync(WebApplication app)
    {
        var log = _factory.GetLogger("test");
        log.Info("held 1");
        _factory.Flush();
        Assert.False(File.Exists(LogPath), "nothing may reach the file before the process owns it");

        await app.StartAsync().WaitAsync(Timeout);
        var acquired = await _log.Logger.WaitForAsync(e => e.EventId.Name == "LogFileAcquired", Timeout);
        Assert.Contains("(FirstStart)", acquired.Message, StringComparison.Ordinal);
        log.Info("live 2");
        _factory.Flush();

        Assert.Equal(["held 1", "live 2"], File.ReadAllLines(LogPath));
        await app.StopAsync().WaitAsync(Timeout);
    }

    private sealed class RecordingProvider : ILoggerProvider, ILoggerFactory
    {
        public RecordingLogger<object> Logger { get; } = new();

        public ILogger CreateLogger(string categoryName) => Logger;

        public void AddProvider(ILoggerProvider provider)
        {
        }

        public void Dispose()
        {
        }
    }

    private sealed class CountingParticipant : IHandoffParticipant
    {
        private readonly System.Collections.Concurrent.ConcurrentQueue<HandoffAcquireReason> _calls = new();

        public bool Throws { get; init; }

        public IReadOnlyCollection<HandoffAcquireReason> Calls => _calls.ToArray();

        public Task AcquireAsync(HandoffAcquireReason reason, CancellationToken cancellationToken)
        {
            _calls.Enqueue(reason);
            return Throws ? throw new InvalidOperationException("participant failed on purpose") : Task.CompletedTask;
        }

        public Task ReleaseAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public Task AbandonAsync(string reason, CancellationToken cancellationToken) => Task.CompletedTask;
    }
}
