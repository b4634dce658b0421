namespace ZeroDowntime.Hosting.Fuzz;

/// <summary>A property of the reader did not hold for an input.</summary>
internal sealed class FuzzPropertyException(string message, Exception? inner = null) : Exception(message, inner);
