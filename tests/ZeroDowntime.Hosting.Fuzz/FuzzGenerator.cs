using ZeroDowntime.Hosting.Protocol;

namespace ZeroDowntime.Hosting.Fuzz;

/// <summary>Which generator made an input; the run counts inputs per generator.</summary>
internal enum FuzzGenerator
{
    /// <summary>Uniformly random bytes: exercises the magic and header checks.</summary>
    RandomBytes,

    /// <summary>A well-formed header (magic, a type, a matching length) around a random or field-shaped payload: exercises Decode.</summary>
    RandomPayload,

    /// <summary>One to four valid frames made from real messages with <see cref="HandoffProtocol.Encode"/>: must round-trip.</summary>
    ValidFrames,

    /// <summary>Valid frames after one to four mutations (bit flips, inserts, deletes, truncation, length and type rewrites...).</summary>
    MutatedFrames,
}
