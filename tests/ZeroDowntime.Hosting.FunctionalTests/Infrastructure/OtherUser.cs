using System.Diagnostics;
using ZeroDowntime.Hosting.Tests.Infrastructure;

namespace ZeroDowntime.Hosting.FunctionalTests.Infrastructure;

/// <summary>
/// Runs a small Python program as another local user (nobody, uid 65534) with setpriv(1), to play the attacker
/// who is not the owner. The tests run as root in CI, which is what lets them switch users.
/// </summary>
internal static class OtherUser
{
    public const int Uid = 65534;

    public static Process StartPython(string script, params string[] arguments)
    {
        var info = new ProcessStartInfo("setpriv")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string arg in new[] { $"--reuid={Uid}", $"--regid={Uid}", "--clear-groups", "/usr/bin/python3", "-c", script })
        {
            info.ArgumentList.Add(arg);
        }

        foreach (string arg in arguments)
        {
            info.ArgumentList.Add(arg);
        }

        return Process.Start(info) ?? throw new InvalidOperationException("setpriv did not start");
    }

    public static async Task<(int ExitCode, string Output)> RunPythonAsync(string script, params string[] arguments)
    {
        using var process = StartPython(script, arguments);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var stdout = process.StandardOutput.ReadToEndAsync(timeout.Token);
        var stderr = process.StandardError.ReadToEndAsync(timeout.Token);
        await process.WaitForExitAsync(timeout.Token);
        return (process.ExitCode, (await stdout) + (await stderr));
    }

    public static void RequireRoot()
    {
        if (Environment.UserName != "root")
        {
            throw new InvalidOperationException("This test plays a second local user with setpriv and must run as root (CI does).");
        }
    }
}
