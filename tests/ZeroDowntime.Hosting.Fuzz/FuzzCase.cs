using ZeroDowntime.Hosting.Protocol;

namespace ZeroDowntime.Hosting.Fuzz;

/// <summary>One fuzz input: the bytes, the chunk sizes in which they reach the reader, and what a valid input must decode to.</summary>
/// <param name="Generator">The generator that made it.</param>
/// <param name="Input">The byte stream the peer sends.</param>
/// <param name="Chunks">Sizes of the successive receives, cycled; empty: as much as the buffer takes.</param>
/// <param name="Expected">For <see cref="FuzzGenerator.ValidFrames"/>, the messages that were encoded; otherwise null.</param>
/// <param name="Mutations">The mutations applied, for the failure report.</param>
internal sealed record FuzzCase(FuzzGenerator Generator, byte[] Input, int[] Chunks, HandoffMessage[]? Expected, string Mutations)
{
    /// <summary>A report of the input that reproduces it: generator, mutations, chunk sizes and the bytes as hex.</summary>
    public string Describe() =>
        $"generator={Generator} length={Input.Length} chunks=[{string.Join(',', Chunks)}] mutations=[{Mutations}]{Environment.NewLine}" +
        $"hex={Convert.ToHexString(Input)}";

    /// <inheritdoc/>
    public override string ToString() => Describe();
}
