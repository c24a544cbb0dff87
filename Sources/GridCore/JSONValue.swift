/// Any JSON value: function-task arguments and results, distributed-memory values.
public enum JSONValue: Hashable, Sendable, Codable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() {
            self = .null
        } else if let b = try? c.decode(Bool.self) {
            self = .bool(b)
        } else if let n = try? c.decode(Double.self) {
            self = .number(n)
        } else if let s = try? c.decode(String.self) {
            self = .string(s)
        } else if let a = try? c.decode([JSONValue].self) {
            self = .array(a)
        } else {
            self = .object(try c.decode([String: JSONValue].self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let b): try c.encode(b)
        case .number(let n):
            if n.rounded() == n, abs(n) < 9.0e15 { try c.encode(Int64(n)) } else { try c.encode(n) }
        case .string(let s): try c.encode(s)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        }
    }
}

extension JSONValue {
    /// The size of this value written as compact JSON, at most (strings counted with their escapes), without writing
    /// it: a cheap check against a size limit.
    public var encodedSizeBound: Int {
        switch self {
        case .null: 4
        case .bool: 5
        case .number: 24
        case .string(let s): Self.stringSize(s)
        case .array(let a): 2 + a.reduce(max(0, a.count - 1)) { $0 + $1.encodedSizeBound }
        case .object(let o): 2 + o.reduce(max(0, o.count - 1)) { $0 + Self.stringSize($1.key) + 1 + $1.value.encodedSizeBound }
        }
    }

    /// The memory this value takes once decoded, about, and never less than that (a small enum per value, an array's
    /// and a dictionary's storage, a string's heap buffer past the 15 bytes kept inline). A value's JSON text can be
    /// ten times smaller than that (`[[],[],…]`), so what a peer keeps is counted by the larger of the two.
    public var memoryFootprint: Int {
        switch self {
        case .null, .bool, .number: 24
        case .string(let s): 24 + Self.heapString(s)
        case .array(let a): a.reduce(56) { $0 &+ $1.memoryFootprint }
        case .object(let o): o.reduce(88) { $0 &+ 56 &+ Self.heapString($1.key) &+ $1.value.memoryFootprint }
        }
    }

    private static func heapString(_ s: String) -> Int {
        let n = s.utf8.count
        return n > 15 ? 32 + n : 0
    }

    /// The size of `s` written as a JSON string, quotes and escapes counted.
    public static func encodedSize(ofString s: String) -> Int { stringSize(s) }

    private static func stringSize(_ s: String) -> Int {
        var n = 2
        for byte in s.utf8 {
            n += byte < 0x20 ? 6 : (byte == 0x22 || byte == 0x5C || byte == 0x2F) ? 2 : 1
        }
        return n
    }
}
