using System.Text;

namespace ZeroDowntime.Hosting.Listeners;

/// <summary>
/// A <see cref="ListenerKey"/> as a systemd file descriptor name (<c>FDNAME=</c>, <c>LISTEN_FDNAMES</c>) and back.
/// systemd accepts printable ASCII without <c>:</c> (the separator of <c>LISTEN_FDNAMES</c>), at most 255 characters
/// (fdname_is_valid in systemd's fd-util.c); a key has colons (<c>tcp:[::1]:80</c>) and a Unix path may have anything.
/// So <c>%</c>, <c>:</c> and every byte outside printable ASCII are percent-encoded (UTF-8): <c>tcp%3A127.0.0.1%3A80</c>.
/// </summary>
internal static class ListenerFdName
{
    /// <summary>systemd's FDNAME_MAX.</summary>
    public const int MaxLength = 255;

    /// <summary>The name of a listener whose key does not fit: it is matched by its bound address when it comes back.</summary>
    public const string Unnamed = "zerodowntime-listener";

    public static string Encode(ListenerKey key)
    {
        var name = new StringBuilder();
        foreach (byte b in Encoding.UTF8.GetBytes(key.ToString()))
        {
            if (b is < 0x21 or >= 0x7f or (byte)':' or (byte)'%')
            {
                name.Append('%').Append(b.ToString("X2", System.Globalization.CultureInfo.InvariantCulture));
            }
            else
            {
                name.Append((char)b);
            }
        }

        return name.Length <= MaxLength ? name.ToString() : Unnamed;
    }

    /// <summary>The key a name stands for, or null when it names no key (a <c>.socket</c> unit's own name, say).</summary>
    public static ListenerKey? Decode(string name)
    {
        var bytes = new List<byte>(name.Length);
        for (int i = 0; i < name.Length; i++)
        {
            if (name[i] == '%')
            {
                if (i + 2 >= name.Length || !byte.TryParse(name.AsSpan(i + 1, 2), System.Globalization.NumberStyles.AllowHexSpecifier, System.Globalization.CultureInfo.InvariantCulture, out byte b))
                {
                    return null;
                }

                bytes.Add(b);
                i += 2;
            }
            else if (name[i] < 0x7f)
            {
                bytes.Add((byte)name[i]);
            }
            else
            {
                return null;
            }
        }

        var key = ListenerKey.Parse(Encoding.UTF8.GetString(bytes.ToArray()));
        return key.Transport == ListenerTransport.Unrecognized ? null : key;
    }
}
