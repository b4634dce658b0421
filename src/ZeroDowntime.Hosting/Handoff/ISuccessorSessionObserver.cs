using ZeroDowntime.Hosting.Protocol;

namespace ZeroDowntime.Hosting.Handoff;

/// <summary>
/// What outlives a <see cref="SuccessorSession"/> hears of it: the upgrade that started that successor, if any
/// (<see cref="Upgrade.UpgradeRunner"/>). The session tells it from one place per kind, never from its branches.
/// </summary>
internal interface ISuccessorSessionObserver
{
    /// <summary>The successor <paramref name="pid"/> said Ready.</summary>
    void SuccessorReady(int pid);

    /// <summary>
    /// The session with <paramref name="pid"/> has an outcome (committed, refused, failed, abandoned); everything else
    /// the session does about it is done. The first outcome of a successor counts.
    /// </summary>
    Task SessionEndedAsync(int pid, UpgradeOutcome outcome, string reason);

    /// <summary>
    /// After a commit: whether the old process stands by on probation (<see cref="ProbationProgress.Started"/> or
    /// <see cref="ProbationProgress.None"/>), then, when it did, how the probation ended.
    /// </summary>
    void ProbationChanged(int pid, ProbationUpdateMessage update);
}
