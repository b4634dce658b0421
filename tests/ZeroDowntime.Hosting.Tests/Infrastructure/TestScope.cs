namespace ZeroDowntime.Hosting.Tests.Infrastructure;

/// <summary>A fresh, short socket path and free ports for one test.</summary>
internal sealed class TestScope : IDisposable
{
    public TestScope()
    {
        Directory = Path.Combine(Path.GetTempPath(), "zdt-" + Guid.NewGuid().ToString("N")[..10]);
        System.IO.Directory.CreateDirectory(Directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        SocketPath = Path.Combine(Directory, "handoff.sock");
        Port = FreePort();
    }

    public string Directory { get; }

    public string SocketPath { get; }

    public int Port { get; }

    public Uri BaseUri => new($"http://127.0.0.1:{Port}");

    /// <summary>A port that no other test of this run gets and no client connection can occupy (see <see cref="Ports"/>).</summary>
    public static int FreePort() => Ports.Next();

    public void Dispose()
    {
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
