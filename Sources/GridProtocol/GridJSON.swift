public import Foundation

/// The one JSON dialect of the grid: snake_case keys on the wire, camelCase in Swift, sorted keys for stable output.
///
/// Property names avoid runs of capitals (`ramGb`, `jobId`) so that keys round-trip through the snake_case conversion.
public enum GridJSON {
    public static func encoder() -> JSONEncoder {
        let e = JSONEncoder()
        e.keyEncodingStrategy = .convertToSnakeCase
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return e
    }

    public static func decoder() -> JSONDecoder {
        let d = JSONDecoder()
        d.keyDecodingStrategy = .convertFromSnakeCase
        return d
    }

    /// One configured encoder and decoder for the hot paths (they are never reconfigured, so sharing them is safe).
    static let sharedEncoder = encoder()
    static let sharedDecoder = decoder()

    public static func encode<T: Encodable>(_ value: T) throws -> Data { try sharedEncoder.encode(value) }

    public static func decode<T: Decodable>(_ type: T.Type, from data: Data) throws -> T { try sharedDecoder.decode(type, from: data) }
}
