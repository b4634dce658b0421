using ZeroDowntime.Cli;

return await CommandLine.InvokeAsync(args, Console.Out, Console.Error);

/// <summary>
/// The tool's entry point. Declared internal on purpose: the tool has no public API (its PublicAPI.*.txt are empty),
/// and an explicit accessibility stops ASP.NET Core's generator from making the top-level <c>Program</c> public.
/// </summary>
#pragma warning disable CA1050 // The compiler puts the top-level statements' Program in the global namespace.
internal sealed partial class Program
#pragma warning restore CA1050
{
}
