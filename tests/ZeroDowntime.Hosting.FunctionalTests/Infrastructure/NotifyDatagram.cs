namespace ZeroDowntime.Hosting.FunctionalTests.Infrastructure;

/// <summary>One datagram on a NOTIFY_SOCKET: its text and the inodes of the descriptors that came with it.</summary>
internal sealed record NotifyDatagram(string Text, IReadOnlyList<ulong> Inodes);
