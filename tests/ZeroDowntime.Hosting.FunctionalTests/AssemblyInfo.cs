// Process-level tests start real servers on a 2-core machine: run one test at a time, so that timings and
// load are the test's own.
[assembly: CollectionBehavior(DisableTestParallelization = true)]

// The tests exercise Linux-only behaviour (SCM_RIGHTS, SO_PEERCRED, Unix sockets, /proc); CI runs them on Linux.
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]
