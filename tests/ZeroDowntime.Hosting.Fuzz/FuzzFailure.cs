namespace ZeroDowntime.Hosting.Fuzz;

/// <summary>The input for which a property failed, and how to replay it.</summary>
internal sealed record FuzzFailure(ulong Seed, long Index, FuzzCase Input, string Message)
{
    public string Describe() =>
        $"FAILED at input {Index} of seed {Seed}: {Message}{Environment.NewLine}" +
        $"replay: dotnet run -c Release --project tests/ZeroDowntime.Hosting.Fuzz -- --seed {Seed} --start {Index} --inputs 1{Environment.NewLine}" +
        Input.Describe();
}
