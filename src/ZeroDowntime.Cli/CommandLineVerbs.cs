namespace ZeroDowntime.Cli;

/// <summary>
/// What the parsed command line runs: the verbs' work, apart from their parsing so that the parser's tests
/// (CommandLineTests) see the values each command line gives without a socket or a child process.
/// </summary>
/// <param name="StatusAsync">status with its options: <see cref="Cli.StatusAsync"/>.</param>
/// <param name="UpgradeAsync">upgrade with its options: <see cref="Cli.UpgradeAsync"/>.</param>
/// <param name="RollbackAsync">rollback with its options: <see cref="Cli.RollbackAsync"/>.</param>
/// <param name="Run">run with COMMAND and its arguments as given, and the restart policy: <see cref="Supervisor.Run(string[], RestartPolicy, TextWriter)"/>.</param>
internal sealed record CommandLineVerbs(
    Func<ControlOptions, Task<int>> StatusAsync,
    Func<ControlOptions, Task<int>> UpgradeAsync,
    Func<ControlOptions, Task<int>> RollbackAsync,
    Func<string[], RestartPolicy, int> Run)
{
    /// <summary>The tool's verbs, printing to <paramref name="stdout"/> and <paramref name="stderr"/> (run logs to stderr).</summary>
    public static CommandLineVerbs Printing(TextWriter stdout, TextWriter stderr) => new(
        options => Cli.StatusAsync(options, stdout, stderr),
        options => Cli.UpgradeAsync(options, stdout, stderr),
        options => Cli.RollbackAsync(options, stdout, stderr),
        (command, policy) => Supervisor.Run(command, policy, stderr));
}
