using ZeroDowntime.Hosting.Listeners;

namespace ZeroDowntime.Hosting.Tests.Unit;

/// <summary>Issue 21: a listener's key as a systemd FDNAME= and back (LISTEN_FDNAMES after a restart).</summary>
public sealed class ListenerFdNameTests
{
    [Theory]
    [InlineData("tcp:127.0.0.1:8080", "tcp%3A127.0.0.1%3A8080")]
    [InlineData("tcp:[::1]:80", "tcp%3A[%3A%3A1]%3A80")]
    [InlineData("tcp:127.0.0.1:0#2", "tcp%3A127.0.0.1%3A0#2")]
    [InlineData("unix:/run/app 1/a%b:c.sock", "unix%3A/run/app%201/a%25b%3Ac.sock")]
    [InlineData("unix:/run/zé.sock", "unix%3A/run/z%C3%A9.sock")]
    public void Encode_IsAValidSystemdName_AndDecodesToTheSameKey(string key, string name)
    {
        var parsed = ListenerKey.Parse(key);
        string encoded = ListenerFdName.Encode(parsed);
        Assert.Equal(name, encoded);

        // systemd's fdname_is_valid: printable ASCII, no ':', at most 255 characters.
        Assert.All(encoded, c => Assert.True(c is >= ' ' and < (char)127 and not ':', $"'{c}' in {encoded}"));
        Assert.Equal(parsed, ListenerFdName.Decode(encoded));
    }

    [Theory]
    [InlineData("web")]
    [InlineData("stored")]
    [InlineData("tcp%3A")]
    [InlineData("tcp%ZZ127")]
    [InlineData("%")]
    [InlineData("")]
    public void Decode_NameOfNoKey_IsNull(string name) => Assert.Null(ListenerFdName.Decode(name));

    [Fact]
    public void Encode_KeyLongerThanSystemdAllows_IsTheUnnamedName()
    {
        var key = ListenerKey.Parse("unix:/" + new string('\u00e9', 100));
        Assert.Equal(ListenerFdName.Unnamed, ListenerFdName.Encode(key));
        Assert.Null(ListenerFdName.Decode(ListenerFdName.Unnamed));
    }
}
