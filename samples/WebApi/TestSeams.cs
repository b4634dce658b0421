namespace ZeroDowntime.Sample;

/// <summary>
/// What only the test build of the sample adds (built by the functional tests with <c>ZeroDowntimeTestBuild=true</c>,
/// into bin/testbuild/; samples/WebApi/Testing/ is compiled only then). In any other build the partial methods have no
/// body, and the compiler removes their calls.
/// </summary>
internal static partial class TestSeams
{
    public static void Register(IServiceCollection services)
    {
        RegisterFaultPauses(services);
        RegisterProbationCheck(services);
    }

    static partial void RegisterFaultPauses(IServiceCollection services);

    static partial void RegisterProbationCheck(IServiceCollection services);
}
