namespace ZeroDowntime.Hosting.Probation;

/// <summary>The signal that asks for a rollback (<see cref="ProbationSettings.RollbackSignal"/>).</summary>
internal enum ProbationRollbackSignal
{
    /// <summary>No signal: rollbacks only by <c>zerodowntime rollback</c> or automatically.</summary>
    None,

    /// <summary><c>SIGUSR1</c> (configuration value <c>SIGUSR1</c>).</summary>
    SigUsr1,
}
