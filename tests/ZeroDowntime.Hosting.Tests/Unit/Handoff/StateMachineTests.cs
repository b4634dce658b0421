using System.Text.RegularExpressions;
using ZeroDowntime.Hosting.Handoff;
using ZeroDowntime.Hosting.Interop;
using ZeroDowntime.Hosting.Warmup;

namespace ZeroDowntime.Hosting.Tests.Unit;

/// <summary>
/// The three machines' tables are the diagrams of docs/architecture.md: the same arrows, both ways. Then every arrow is
/// walked on a live machine, and every (state, trigger) pair without an arrow is shown to change nothing.
/// </summary>
public sealed partial class StateMachineTests
{
    public static TheoryData<string> Machines => ["ProcessRole", "SuccessorSession", "PredecessorLink"];

    [Theory]
    [MemberData(nameof(Machines))]
    public void Table_EqualsTheDiagramInArchitectureDoc(string machine)
    {
        var diagram = DiagramArrows(machine);
        var table = TableArrows(machine);

        Assert.Equal(InitialOf(machine), diagram.Initial);
        Assert.Empty(table.Except(diagram.Arrows));
        Assert.Empty(diagram.Arrows.Except(table));
    }

    [Theory]
    [MemberData(nameof(Machines))]
    public void TryFire_EveryArrowFromItsState_MovesToItsTarget(string machine)
    {
        int walked = 0;
        foreach (var (from, trigger, to) in TableArrows(machine))
        {
            var live = Create(machine);
            foreach (string step in PathTo(machine, from))
            {
                Assert.True(live.TryFire(step), $"{machine}: the path to {from} fires {step}");
            }

            Assert.Equal(from, live.State);
            Assert.True(live.TryFire(trigger), $"{machine}: {from} --{trigger}-->");
            Assert.Equal(to, live.State);
            walked++;
        }

        Assert.True(walked >= 10, $"{machine} has {walked} arrows");
    }

    [Theory]
    [MemberData(nameof(Machines))]
    public void TryFire_TriggerWithoutArrow_ReturnsFalseAndKeepsTheState(string machine)
    {
        var arrows = TableArrows(machine).Select(a => (a.From, a.Trigger)).ToHashSet();
        foreach (string state in StatesOf(machine))
        {
            foreach (string trigger in TriggersOf(machine).Where(t => !arrows.Contains((state, t))))
            {
                if (state != InitialOf(machine) && !Reachable(machine).Contains(state))
                {
                    continue;
                }

                var live = Create(machine);
                foreach (string step in PathTo(machine, state))
                {
                    live.TryFire(step);
                }

                Assert.False(live.TryFire(trigger), $"{machine}: {state} has no arrow on {trigger}");
                Assert.Equal(state, live.State);
            }
        }
    }

    [Theory]
    [MemberData(nameof(Machines))]
    public void Table_EveryStateIsReachableFromTheInitialOne(string machine)
    {
        var unreachable = StatesOf(machine).Where(s => s != InitialOf(machine) && !Reachable(machine).Contains(s)).ToArray();
        Assert.Empty(unreachable);
    }

    [Fact]
    public async Task TryFire_TwoRacingTriggers_OnlyTheFirstMoves()
    {
        // The race the role machine decides: the successor's Ready (commit) against a SIGTERM (plain shutdown).
        var role = new StateMachine<ProcessRole, RoleTrigger>(ProcessRoles.Table);
        Assert.True(role.TryFire(RoleTrigger.StartedAlone));
        Assert.True(role.TryFire(RoleTrigger.SuccessorGreeted));
        var start = new Barrier(2);
        bool commit = false, shutdown = false;
        var a = Task.Run(() => { start.SignalAndWait(); commit = role.TryFire(RoleTrigger.CommitStarted); });
        var b = Task.Run(() => { start.SignalAndWait(); shutdown = role.TryFire(RoleTrigger.ShutdownBegan); });
        await Task.WhenAll(a, b).WaitAsync(TimeSpan.FromSeconds(10));

        Assert.True(commit ^ shutdown, "exactly one of the two wins");
        Assert.Equal(commit ? ProcessRole.HandedOver : ProcessRole.ShuttingDown, role.State);
    }

    [Fact]
    public void TransitionTable_TwoArrowsFromOneStateOnOneTrigger_IsRefused()
    {
        var ex = Assert.Throws<ArgumentException>(() => new TransitionTable<ProcessRole, RoleTrigger>(ProcessRole.Starting,
            (ProcessRole.Starting, RoleTrigger.StartedAlone, ProcessRole.Owner),
            (ProcessRole.Starting, RoleTrigger.StartedAlone, ProcessRole.Leaving)));
        Assert.Contains("Starting", ex.Message, StringComparison.Ordinal);
    }

    // --- the three machines, by name ---

    private interface ILiveMachine
    {
        string State { get; }

        bool TryFire(string trigger);
    }

    private sealed class Live<TState, TTrigger>(TransitionTable<TState, TTrigger> table) : ILiveMachine
        where TState : struct, Enum
        where TTrigger : struct, Enum
    {
        private readonly StateMachine<TState, TTrigger> _machine = new(table);

        public string State => _machine.State.ToString();

        public bool TryFire(string trigger) => _machine.TryFire(Enum.Parse<TTrigger>(trigger));
    }

    private static ILiveMachine Create(string machine) => machine switch
    {
        "ProcessRole" => new Live<ProcessRole, RoleTrigger>(ProcessRoles.Table),
        "SuccessorSession" => new Live<SuccessorSessionState, SuccessorSessionTrigger>(SuccessorSession.Table),
        "PredecessorLink" => new Live<PredecessorLinkState, PredecessorLinkTrigger>(PredecessorLink.Table),
        _ => throw new ArgumentOutOfRangeException(nameof(machine)),
    };

    private static HashSet<(string From, string Trigger, string To)> TableArrows(string machine) => machine switch
    {
        "ProcessRole" => Names(ProcessRoles.Table),
        "SuccessorSession" => Names(SuccessorSession.Table),
        "PredecessorLink" => Names(PredecessorLink.Table),
        _ => throw new ArgumentOutOfRangeException(nameof(machine)),
    };

    private static string InitialOf(string machine) => machine switch
    {
        "ProcessRole" => ProcessRoles.Table.Initial.ToString(),
        "SuccessorSession" => SuccessorSession.Table.Initial.ToString(),
        "PredecessorLink" => PredecessorLink.Table.Initial.ToString(),
        _ => throw new ArgumentOutOfRangeException(nameof(machine)),
    };

    private static string[] StatesOf(string machine) => machine switch
    {
        "ProcessRole" => Enum.GetNames<ProcessRole>(),
        "SuccessorSession" => Enum.GetNames<SuccessorSessionState>(),
        "PredecessorLink" => Enum.GetNames<PredecessorLinkState>(),
        _ => throw new ArgumentOutOfRangeException(nameof(machine)),
    };

    private static string[] TriggersOf(string machine) => machine switch
    {
        "ProcessRole" => Enum.GetNames<RoleTrigger>(),
        "SuccessorSession" => Enum.GetNames<SuccessorSessionTrigger>(),
        "PredecessorLink" => Enum.GetNames<PredecessorLinkTrigger>(),
        _ => throw new ArgumentOutOfRangeException(nameof(machine)),
    };

    private static HashSet<(string, string, string)> Names<TState, TTrigger>(TransitionTable<TState, TTrigger> table)
        where TState : struct, Enum
        where TTrigger : struct, Enum =>
        table.Arrows.Select(a => (a.From.ToString(), a.Trigger.ToString(), a.To.ToString())).ToHashSet();

    /// <summary>The shortest sequence of triggers from the initial state to <paramref name="target"/> (breadth first).</summary>
    private static List<string> PathTo(string machine, string target)
    {
        var arrows = TableArrows(machine);
        var paths = new Dictionary<string, List<string>> { [InitialOf(machine)] = [] };
        var queue = new Queue<string>([InitialOf(machine)]);
        while (queue.Count > 0)
        {
            string state = queue.Dequeue();
            foreach (var (from, trigger, to) in arrows.Where(a => a.From == state).OrderBy(a => a.Trigger, StringComparer.Ordinal))
            {
                if (paths.TryAdd(to, [.. paths[state], trigger]))
                {
                    queue.Enqueue(to);
                }
            }
        }

        return paths.TryGetValue(target, out var path) ? path : throw new InvalidOperationException($"{machine}: {target} is unreachable");
    }

    private static HashSet<string> Reachable(string machine) =>
        StatesOf(machine).Where(s => { try { PathTo(machine, s); return true; } catch (InvalidOperationException) { return false; } }).ToHashSet();

    // --- the diagrams ---

    private static readonly Dictionary<string, string> Headings = new()
    {
        ["ProcessRole"] = "### The process's role",
        ["SuccessorSession"] = "### The running process, one per successor",
        ["PredecessorLink"] = "### The new process",
    };

    private static (string Initial, HashSet<(string From, string Trigger, string To)> Arrows) DiagramArrows(string machine)
    {
        string doc = File.ReadAllText(Path.Combine(RepositoryRoot(), "docs", "architecture.md"));
        int heading = doc.IndexOf(Headings[machine], StringComparison.Ordinal);
        Assert.True(heading >= 0, $"docs/architecture.md has no heading '{Headings[machine]}'");
        int open = doc.IndexOf("```mermaid", heading, StringComparison.Ordinal);
        int close = doc.IndexOf("```", open + 10, StringComparison.Ordinal);
        string block = doc[open..close];

        string? initial = null;
        var arrows = new HashSet<(string, string, string)>();
        foreach (string line in block.Split('\n'))
        {
            if (InitialArrow().Match(line) is { Success: true } start)
            {
                initial = start.Groups[1].Value;
            }
            else if (Arrow().Match(line) is { Success: true } arrow)
            {
                arrows.Add((arrow.Groups[1].Value, arrow.Groups[3].Value, arrow.Groups[2].Value));
            }
        }

        return (initial ?? throw new InvalidOperationException($"{machine}'s diagram has no [*] --> arrow"), arrows);
    }

    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Hosting.sln")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException("Hosting.sln not found above " + AppContext.BaseDirectory);
    }

    [GeneratedRegex(@"^\s*\[\*\] --> (\w+)\s*$")]
    private static partial Regex InitialArrow();

    [GeneratedRegex(@"^\s*(\w+) --> (\w+): (\w+)")]
    private static partial Regex Arrow();
}
