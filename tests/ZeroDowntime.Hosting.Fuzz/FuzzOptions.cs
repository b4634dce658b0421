namespace ZeroDowntime.Hosting.Fuzz;

/// <summary>A run's settings.</summary>
/// <param name="Inputs">How many inputs to generate and check.</param>
/// <param name="Seed">The run seed: input i is generated from (Seed, i) alone, so any input can be replayed.</param>
/// <param name="Threads">Worker threads; input i goes to thread i mod Threads.</param>
/// <param name="Start">Index of the first input: with Inputs = 1, replays a single input of an earlier run.</param>
/// <param name="TimeBound">The most one input may take.</param>
/// <param name="HangTimeout">After this long on one input the run stops and reports a hang.</param>
internal sealed record FuzzOptions(long Inputs, ulong Seed, int Threads, long Start, TimeSpan TimeBound, TimeSpan HangTimeout);
