using Microsoft.Extensions.Logging;

namespace ZeroDowntime.Hosting.FunctionalTests.Infrastructure;

/// <summary>
/// The sample's own events that only the process-level tests wait for (samples/WebApi/FailRequestsAfterTakeover.cs),
/// by id and name as <see cref="Tests.Infrastructure.Events"/> keeps the library's.
/// </summary>
internal static class SampleEvents
{
    /// <summary>At start, with <c>Sample:FailRequestsAfterMs</c> set: "Will answer 500 on / from {Ms} ms after taking over".</summary>
    public static readonly EventId FailRequestsPlanned = new(1002, nameof(FailRequestsPlanned));

    /// <summary>At the first 500 on <c>/</c>, once: "Answering 500 on / from now on: {Ms} ms after taking over ({Reason})".</summary>
    public static readonly EventId FailingRequests = new(1003, nameof(FailingRequests));
}
