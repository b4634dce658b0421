namespace ZeroDowntime.Hosting.Fuzz;

/// <summary>Figures of a run over the real socket path.</summary>
internal sealed record ChannelFuzzReport(ulong Seed, int Inputs, int Messages, int EndOfStream, int ProtocolErrors, int Timeouts, int FdsSent,
    TimeSpan MaxRead, TimeSpan Elapsed, FuzzFailure? Failure)
{
    public string Format() =>
        $"channel seed {Seed}: {Inputs:N0} inputs over a Unix socket pair in {Elapsed.TotalSeconds:0.0} s: {Messages:N0} messages, " +
        $"{EndOfStream:N0} end of stream, {ProtocolErrors:N0} protocol errors, {Timeouts:N0} timeouts; {FdsSent:N0} with a descriptor attached; " +
        $"longest read {MaxRead.TotalMilliseconds:0.#} ms";
}
