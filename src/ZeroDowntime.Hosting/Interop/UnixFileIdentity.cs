
namespace ZeroDowntime.Hosting.Interop;

/// <summary>
/// Which file a path named at one moment: device, inode and birth time (the change time where the filesystem keeps no
/// birth time). The inode alone is not enough: ext4 hands a freed inode number to the next file created in the same
/// directory (a socket bound at the same path after the old file was removed gets the very same number, 20 times in
/// 20 here), so two different sockets at one path can have equal device and inode, never an equal birth time too.
/// </summary>
/// <param name="DevMajor">The device's major number.</param>
/// <param name="DevMinor">The device's minor number.</param>
/// <param name="Inode">The inode number.</param>
/// <param name="Seconds">Birth time (or change time), seconds.</param>
/// <param name="Nanoseconds">Birth time (or change time), nanoseconds.</param>
/// <param name="IsBirthTime">True when the time is the birth time, which no rename or chmod changes.</param>
internal readonly record struct UnixFileIdentity(uint DevMajor, uint DevMinor, ulong Inode, long Seconds, uint Nanoseconds, bool IsBirthTime)
{
    // struct statx (linux/stat.h): stx_btime at 80 and stx_ctime at 96, each a statx_timestamp { s64 tv_sec; u32 tv_nsec; }.
    private const int BirthTimeOffset = 80;
    private const int ChangeTimeOffset = 96;

    /// <summary>The identity of what <paramref name="path"/> names now (a final symlink not followed), or null when nothing.</summary>
    public static unsafe UnixFileIdentity? Of(string path)
    {
        Libc.StatX buffer;
        if (Libc.statx(Libc.AT_FDCWD, path, Libc.AT_SYMLINK_NOFOLLOW, Libc.STATX_BASIC_STATS | Libc.STATX_BTIME, &buffer) != 0)
        {
            return null;
        }

        bool birth = (buffer.Mask & Libc.STATX_BTIME) != 0;
        byte* raw = (byte*)&buffer;
        int offset = birth ? BirthTimeOffset : ChangeTimeOffset;
        return new UnixFileIdentity(buffer.DevMajor, buffer.DevMinor, buffer.Inode, *(long*)(raw + offset), *(uint*)(raw + offset + 8), birth);
    }

    /// <summary>
    /// True when <paramref name="other"/> (read later) is this file. <paramref name="renamedSince"/>: the file was
    /// renamed in between, which changes the change time; then, without a birth time, device and inode must do.
    /// </summary>
    public bool IsSameFile(UnixFileIdentity other, bool renamedSince = false) =>
        DevMajor == other.DevMajor && DevMinor == other.DevMinor && Inode == other.Inode
        && ((renamedSince && !IsBirthTime) || (Seconds == other.Seconds && Nanoseconds == other.Nanoseconds));
}
