using System.Globalization;
using Microsoft.Extensions.Configuration;
using ZeroDowntime.Hosting.Interop;

namespace ZeroDowntime.Hosting;

/// <summary>
/// Reads the typed values of one configuration section, as the configuration binder parses them (invariant culture,
/// enums by name ignoring case), but a value that cannot be parsed leaves the current value in place and adds one
/// message naming its key to <see cref="Errors"/>: the options validator then reports it with every other problem at
/// start, instead of the binder throwing its first error from wherever options happen to be bound. Also used by
/// ZeroDowntime.Hosting.NLog for its <c>LogFiles</c> section.
/// </summary>
internal sealed class ConfigurationValues(IConfigurationSection section, List<string> errors)
{
    public List<string> Errors => errors;

    /// <summary>The value of <paramref name="key"/> as written, or null when it is not set (an empty value is not set).</summary>
    public string? Text(string key) => section[key] is { Length: > 0 } value ? value : null;

    public string? String(string key, string? current) => section[key] ?? current;

    public bool Boolean(string key, bool current)
    {
        if (Text(key) is not { } text)
        {
            return current;
        }

        if (bool.TryParse(text, out bool value))
        {
            return value;
        }

        Invalid(key, text, "is not true or false");
        return current;
    }

    public TimeSpan Duration(string key, TimeSpan current)
    {
        if (Text(key) is not { } text)
        {
            return current;
        }

        if (TimeSpan.TryParse(text, CultureInfo.InvariantCulture, out var value))
        {
            return value;
        }

        Invalid(key, text, "is not a duration: write [d.]hh:mm:ss[.fffffff], for example 00:01:00 (one minute)");
        return current;
    }

    public int Integer(string key, int current)
    {
        if (Text(key) is not { } text)
        {
            return current;
        }

        if (int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out int value))
        {
            return value;
        }

        Invalid(key, text, "is not a whole number");
        return current;
    }

    /// <summary>An enum by the name <paramref name="names"/> gives for each value (a configuration value such as SIGHUP).</summary>
    public TEnum Choice<TEnum>(string key, TEnum current, IReadOnlyDictionary<string, TEnum> names)
        where TEnum : struct, Enum
    {
        if (Text(key) is not { } text)
        {
            return current;
        }

        if (names.TryGetValue(text.Trim(), out var value))
        {
            return value;
        }

        Invalid(key, text, $"is not one of {string.Join(", ", names.Keys)}");
        return current;
    }

    private void Invalid(string key, string text, string why) =>
        errors.Add($"{section.Path}:{key} '{text}' {why}.");
}
