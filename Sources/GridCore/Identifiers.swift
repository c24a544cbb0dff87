/// A user account's id (a row id in the manager's store).
public typealias UserID = Int64
/// A job's id (a row id in the manager's store); shown to users as a plain number.
public typealias JobID = Int64
/// A worker's id: chosen by the manager at first registration and kept by the worker in its data directory.
public typealias WorkerID = String

/// What a worker's id and the host it names may be made of: they go into signed texts, file names, log lines, URLs and
/// the dashboard. Pure.
public enum WorkerNaming {
    /// Whether `id` may be a worker's id: 1 to 64 bytes of ASCII letters, digits, `.`, `_` or `-` (the manager makes
    /// `w-` and ten hex digits).
    public static func isWellFormed(id: String) -> Bool {
        let bytes = id.utf8
        return (1...64).contains(bytes.count) && bytes.allSatisfy { isAlphanumeric($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") }
    }

    /// Whether `host` may be the address a worker says it is reached at: empty (where it connected from), or up to 255
    /// bytes of ASCII letters, digits, `.`, `-`, `_`, `:` (IPv6), `%` (a zone) and `[`, `]`.
    public static func isWellFormed(host: String) -> Bool {
        let bytes = host.utf8
        return bytes.count <= 255 && bytes.allSatisfy { isAlphanumeric($0) || Array(".-_:%[]".utf8).contains($0) }
    }

    private static func isAlphanumeric(_ b: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(b) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(b)
            || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(b)
    }
}
