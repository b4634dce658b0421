using System.Reflection;

namespace ZeroDowntime.Hosting.Tests.Unit;

/// <summary>
/// The whole public surface, snapshotted in src/*/PublicAPI.txt: a change to it must be a visible change to that
/// file in the same commit. Regenerate with ZERODOWNTIME_UPDATE_PUBLIC_API=1.
/// </summary>
public sealed class PublicApiTests
{
    [Theory]
    [InlineData("ZeroDowntime.Hosting")]
    [InlineData("ZeroDowntime.Hosting.NLog")]
    public void PublicSurface_MatchesTheSnapshot(string assemblyName)
    {
        var assembly = Assembly.Load(assemblyName);
        string actual = string.Join('\n', Describe(assembly)) + "\n";
        string path = Path.Combine(RepositoryRoot(), "src", assemblyName, "PublicAPI.txt");
        if (Environment.GetEnvironmentVariable("ZERODOWNTIME_UPDATE_PUBLIC_API") == "1")
        {
            File.WriteAllText(path, actual);
        }

        Assert.True(File.Exists(path), $"{path} is missing; run the tests with ZERODOWNTIME_UPDATE_PUBLIC_API=1 once.");
        Assert.Equal(File.ReadAllText(path), actual);
    }

    private static IEnumerable<string> Describe(Assembly assembly)
    {
        const BindingFlags Flags = BindingFlags.Public | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;
        foreach (var type in assembly.GetExportedTypes().OrderBy(t => t.FullName, StringComparer.Ordinal))
        {
            string kind = type.IsInterface ? "interface" : type.IsEnum ? "enum" : type.IsValueType ? "struct" : type.IsAbstract && type.IsSealed ? "static class" : type.IsSealed ? "sealed class" : "class";
            yield return $"{kind} {type.FullName}";
            var members = type.GetMembers(Flags)
                .Where(m => m is not MethodInfo { IsSpecialName: true } && m.Name != "value__")
                .Select(m => m switch
                {
                    FieldInfo f when type.IsEnum => $"  {f.Name} = {Convert.ToInt64(f.GetRawConstantValue(), System.Globalization.CultureInfo.InvariantCulture)}",
                    FieldInfo f => $"  {(f.IsLiteral ? "const " : f.IsStatic ? "static " : "")}{f.FieldType.Name} {f.Name}{(f.IsLiteral ? " = " + f.GetRawConstantValue() : "")}",
                    PropertyInfo p => $"  {p.PropertyType.Name} {p.Name} {{ {(p.GetMethod?.IsPublic == true ? "get; " : "")}{(p.SetMethod?.IsPublic == true ? "set; " : "")}}}",
                    ConstructorInfo c => $"  .ctor({Parameters(c)})",
                    MethodInfo mi => $"  {(mi.IsStatic ? "static " : "")}{mi.ReturnType.Name} {mi.Name}({Parameters(mi)})",
                    _ => $"  {m.MemberType} {m.Name}",
                })
                .Where(line => !line.Contains("value__", StringComparison.Ordinal))
                .Order(StringComparer.Ordinal);
            foreach (string member in members)
            {
                yield return member;
            }
        }
    }

    private static string Parameters(MethodBase method) =>
        string.Join(", ", method.GetParameters().Select(p => $"{p.ParameterType.Name} {p.Name}"));

    private static string RepositoryRoot()
    {
        var directory = new DirectoryInfo(AppContext.BaseDirectory);
        while (directory is not null && !File.Exists(Path.Combine(directory.FullName, "Hosting.sln")))
        {
            directory = directory.Parent;
        }

        return directory?.FullName ?? throw new InvalidOperationException("Hosting.sln not found");
    }
}
