using ZeroDowntime.Hosting.Interop;
using ZeroDowntime.Hosting.Systemd;

namespace ZeroDowntime.Hosting.Handoff;

/// <summary>
/// The transitions of one state machine: a (state, trigger) -> state table, and nothing else. Each machine of the
/// handoff declares its table once, next to its states; docs/architecture.md draws the same arrows, and a test checks
/// that the two agree and walks every arrow.
/// </summary>
internal sealed class TransitionTable<TState, TTrigger>
    where TState : struct, Enum
    where TTrigger : struct, Enum
{
    private readonly Dictionary<(TState From, TTrigger Trigger), TState> _arrows = [];

    public TState Initial { get; }

    public TransitionTable(TState initial, params (TState From, TTrigger Trigger, TState To)[] arrows)
    {
        Initial = initial;
        foreach (var (from, trigger, to) in arrows)
        {
            if (!_arrows.TryAdd((from, trigger), to))
            {
                throw new ArgumentException($"Two arrows leave {from} on {trigger}.", nameof(arrows));
            }
        }
    }

    /// <summary>Every arrow, for the tests and the docs.</summary>
    public IEnumerable<(TState From, TTrigger Trigger, TState To)> Arrows => _arrows.Select(a => (a.Key.From, a.Key.Trigger, a.Value));

    public bool TryGetTarget(TState from, TTrigger trigger, out TState to) => _arrows.TryGetValue((from, trigger), out to);
}

/// <summary>
/// One running state machine over a <see cref="TransitionTable{TState, TTrigger}"/>: <see cref="TryFire"/> is the
/// only place its state changes. A trigger the table has no arrow for in the current state changes nothing and
/// returns false, which is how two racing events (a commit and a stop) are decided: the first to fire wins, the other
/// finds its arrow gone (as tableflip disables a transition by clearing its channel).
/// </summary>
internal sealed class StateMachine<TState, TTrigger>
    where TState : struct, Enum
    where TTrigger : struct, Enum
{
    private readonly TransitionTable<TState, TTrigger> _table;
    private readonly Action<TState, TTrigger, TState>? _transitioned;
    private readonly Lock _lock = new();
    private TState _state;

    /// <param name="table">The arrows, and the initial state.</param>
    /// <param name="transitioned">Called after each transition (outside the lock), e.g. to log it.</param>
    public StateMachine(TransitionTable<TState, TTrigger> table, Action<TState, TTrigger, TState>? transitioned = null)
    {
        _table = table;
        _transitioned = transitioned;
        _state = table.Initial;
    }

    public TState State
    {
        get
        {
            lock (_lock)
            {
                return _state;
            }
        }
    }

    /// <summary>Moves along the arrow of <paramref name="trigger"/> from the current state; false when there is none.</summary>
    public bool TryFire(TTrigger trigger)
    {
        TState from;
        TState to;
        lock (_lock)
        {
            from = _state;
            if (!_table.TryGetTarget(from, trigger, out to))
            {
                return false;
            }

            _state = to;
        }

        _transitioned?.Invoke(from, trigger, to);
        return true;
    }
}
