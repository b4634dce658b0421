using global::NLog.Config;
using global::NLog.Targets;
using global::NLog.Targets.Wrappers;

namespace ZeroDowntime.Hosting.NLog.Internal;

/// <summary>
/// Walks an NLog configuration - every rule and child rule, through wrappers (<c>async="true"</c>, buffering, ...) and
/// into compound targets - and puts a <see cref="HoldingFileTarget"/> directly above each <see cref="FileTarget"/>:
/// one per file target, however many places refer to it. Targets that are wrapped already keep their wrapper, so a
/// second walk of the same configuration changes nothing.
/// </summary>
internal static class FileTargetWalker
{
    /// <summary>
    /// Wraps every file target of <paramref name="configuration"/>, creating missing wrappers with
    /// <paramref name="create"/>; returns all of its wrappers, in the order they were found.
    /// <paramref name="changed"/> says whether the configuration has file targets (its loggers must then be
    /// reconfigured so that they write through the wrappers).
    /// </summary>
    public static List<HoldingFileTarget> WrapAll(LoggingConfiguration configuration, Func<FileTarget, HoldingFileTarget> create, out bool changed)
    {
        var wrappers = new Dictionary<FileTarget, HoldingFileTarget>(ReferenceEqualityComparer.Instance);
        changed = false;
        foreach (var rule in AllRules(configuration.LoggingRules))
        {
            for (int i = 0; i < rule.Targets.Count; i++)
            {
                var wrapped = Wrap(rule.Targets[i], wrappers, create, ref changed);
                if (!ReferenceEquals(wrapped, rule.Targets[i]))
                {
                    rule.Targets[i] = wrapped;
                }
            }
        }

        return [.. wrappers.Values];
    }

    private static Target Wrap(Target target, Dictionary<FileTarget, HoldingFileTarget> wrappers, Func<FileTarget, HoldingFileTarget> create, ref bool changed)
    {
        switch (target)
        {
            case HoldingFileTarget existing:
                wrappers[existing.File] = existing;
                return existing;
            case FileTarget file:
                if (!wrappers.TryGetValue(file, out var wrapper))
                {
                    wrapper = create(file);
                    wrappers[file] = wrapper;
                }

                changed = true;
                return wrapper;
            case WrapperTargetBase outer when outer.WrappedTarget is { } inner:
                var replacement = Wrap(inner, wrappers, create, ref changed);
                if (!ReferenceEquals(replacement, inner))
                {
                    outer.WrappedTarget = replacement;
                }

                return outer;
            case CompoundTargetBase compound:
                for (int i = 0; i < compound.Targets.Count; i++)
                {
                    var member = Wrap(compound.Targets[i], wrappers, create, ref changed);
                    if (!ReferenceEquals(member, compound.Targets[i]))
                    {
                        compound.Targets[i] = member;
                    }
                }

                return compound;
            default:
                return target;
        }
    }

    private static IEnumerable<LoggingRule> AllRules(IEnumerable<LoggingRule> rules)
    {
        foreach (var rule in rules)
        {
            yield return rule;
#pragma warning disable CS0618 // Child rules are obsolete in NLog 5.3+, yet still honoured: their file targets change hands too.
            var children = rule.ChildRules;
#pragma warning restore CS0618
            foreach (var child in AllRules(children))
            {
                yield return child;
            }
        }
    }
}
