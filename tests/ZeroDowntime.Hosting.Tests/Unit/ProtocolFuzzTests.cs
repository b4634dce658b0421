using CsCheck;
using Xunit.Abstractions;
using ZeroDowntime.Hosting.Fuzz;
using ZeroDowntime.Hosting.Protocol;

namespace ZeroDowntime.Hosting.Tests.Unit;

/// <summary>
/// The short CI run of the protocol reader fuzzer (the long run: tests/ZeroDowntime.Hosting.Fuzz, docs/fuzzing.md).
/// A fixed seed keeps a stable baseline; a random seed per run widens the search. Both seeds are printed, and a failure
/// prints the input as hex and the command that replays it.
/// </summary>
public sealed class ProtocolFuzzTests(ITestOutputHelper output)
{
    private const ulong FixedSeed = 20_251_105;
    private const int Inputs = 10_000;
    private const int ChannelInputs = 150;

    private static readonly TimeSpan TimeBound = TimeSpan.FromSeconds(5);
    private static readonly TimeSpan HangTimeout = TimeSpan.FromSeconds(15);

    [Fact]
    public void Reader_FixedSeed_HoldsEveryPropertyAndReachesEveryCheck()
    {
        var report = Run(FixedSeed);

        // The generators must reach every way the reader refuses an input, or the fuzzer tests less than it claims.
        string[] checks =
        [
            "bad magic", "exceeds the limit of # bytes", "Frame truncated", "not valid UTF-#", "String of # bytes exceeds",
            "Unknown frame type", "Unknown refusal reason", "listeners; the limit is", "unexpected trailing bytes", "middle of a frame",
            "Unknown RollbackOrigin", "Unknown ProbationState", "Unknown RollbackOutcome", "Unknown ProbationProgress", "Boolean byte",
            "Welcome frame has # unexpected trailing bytes",
        ];
        Assert.All(checks, check => Assert.Contains(report.Refusals.Keys, refusal => refusal.Contains(check, StringComparison.Ordinal)));
        Assert.All(Enum.GetValues<FuzzGenerator>(), generator => Assert.True(report.PerGenerator[(int)generator] > 0, $"no {generator} input"));
        Assert.True(report.MessagesPerGenerator[(int)FuzzGenerator.MutatedFrames] > 0, "no mutated input decoded to a message");
    }

    [Fact]
    public void Generators_FixedSeed_ProduceEveryFrameTypeAndBothExtensions()
    {
        // Issue 20: the valid frames the fuzzer encodes and mutates include every type (16-23 too), a Hello and a
        // Welcome with the probation extension and without it, so that the reader's new paths are fuzzed.
        var messages = Enumerable.Range(0, 5_000)
            .Select(i => FuzzGenerators.Message.Generate(new PCG(0x5A44, FixedSeed + (ulong)i), null, out _))
            .ToArray();

        Assert.Equal(Enum.GetValues<MessageType>().Order(), messages.Select(m => m.Type).Distinct().Order());
        Assert.Contains(messages, m => m is HelloMessage { Features: not null, ProbationMilliseconds: not 0 });
        Assert.Contains(messages, m => m is HelloMessage { Version: >= 2, Features: null });
        Assert.Contains(messages, m => m is WelcomeMessage { Features: HandoffFeatures.Probation });
        Assert.Contains(messages, m => m is WelcomeMessage { Version: >= 2, Features: null });
        Assert.DoesNotContain(messages, m => m is HelloMessage { Version: < 2, Features: not null } or WelcomeMessage { Version: < 2, Features: not null });
    }

    [Fact]
    public void Reader_RandomSeed_HoldsEveryProperty()
    {
        Run((ulong)Random.Shared.NextInt64());
    }

    [Fact]
    public async Task Channel_FuzzedBytesOverSocketPair_EndWithMessageEofProtocolErrorOrTimeout()
    {
        ulong seed = (ulong)Random.Shared.NextInt64();
        output.WriteLine($"channel seed {seed} (replay: --seed {seed} --inputs 0 --channel-inputs {ChannelInputs})");
        using var fuzzer = new ChannelFuzzer();

        var report = await fuzzer.RunAsync(seed, ChannelInputs).WaitAsync(TimeSpan.FromSeconds(60));

        output.WriteLine(report.Format());
        Assert.True(report.Failure is null, report.Failure?.Describe());
        Assert.True(report.Messages > 0 && report.EndOfStream > 0 && report.ProtocolErrors > 0, "the channel run did not reach every ending");
    }

    [Fact]
    public void Encode_AnyFreeText_RoundTripsOrThrowsOnlyProtocolException()
    {
        // The writer side of the same contract: any reason text, lone surrogates and oversized ones included, either
        // round-trips or is refused with HandoffProtocolException (CsCheck shrinks a failure and prints its seed).
        var text = Gen.Frequency(
            (3, (IGen<string>)Gen.String),
            (1, Gen.Char.Array[0, 1200].Select(chars => new string(chars))),
            (1, Gen.Char['\uD800', '\uDFFF'].Array[1, 4].Select(chars => new string(chars))));
        text.Sample(reason =>
        {
            byte[] frame;
            try
            {
                frame = HandoffProtocol.Encode(new FailedMessage(reason));
            }
            catch (HandoffProtocolException)
            {
                return;
            }

            Assert.True(HandoffProtocol.TryReadFrame(frame, out var type, out var payload, out _));
            Assert.Equal(new FailedMessage(reason), HandoffProtocol.Decode(type, payload));
        }, writeLine: output.WriteLine, iter: 5_000, threads: 1);
    }

    [Fact]
    public void Check_ReaderOverItsTimeBound_Fails()
    {
        var checker = new FuzzChecker(TimeSpan.Zero);
        var input = new FuzzCase(FuzzGenerator.ValidFrames, HandoffProtocol.Encode(new ReadyMessage()), [], [new ReadyMessage()], "");

        var ex = Assert.Throws<FuzzPropertyException>(() => checker.Check(input));

        Assert.Contains("bound", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Check_ValidFrameDecodingToAnotherMessage_Fails()
    {
        var checker = new FuzzChecker(TimeBound);
        var input = new FuzzCase(FuzzGenerator.ValidFrames, HandoffProtocol.Encode(new ReadyMessage()), [], [new HeartbeatMessage()], "");

        var ex = Assert.Throws<FuzzPropertyException>(() => checker.Check(input));

        Assert.Contains("decoded to", ex.Message, StringComparison.Ordinal);
    }

    private FuzzReport Run(ulong seed)
    {
        output.WriteLine($"seed {seed} (replay: dotnet run -c Release --project tests/ZeroDowntime.Hosting.Fuzz -- --seed {seed} --inputs {Inputs})");
        var report = FuzzRunner.Run(new FuzzOptions(Inputs, seed, Threads: 1, Start: 0, TimeBound, HangTimeout));
        output.WriteLine(report.Format());
        Assert.True(report.Failure is null, report.Failure?.Describe());
        Assert.Equal(Inputs, report.Inputs);
        return report;
    }
}
