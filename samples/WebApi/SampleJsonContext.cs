using System.Text.Json.Serialization;

namespace ZeroDowntime.Sample;

/// <summary>
/// The JSON the endpoints write (<c>Results.BadRequest(string)</c> writes its message as a JSON string). Native AOT
/// turns reflection-based System.Text.Json off, so without this context those answers would be 500 instead of 400;
/// with it the JIT and the AOT build write the same bytes (the serializer options are the same web defaults).
/// </summary>
[JsonSerializable(typeof(string))]
[JsonSerializable(typeof(int))]
internal sealed partial class SampleJsonContext : JsonSerializerContext;
