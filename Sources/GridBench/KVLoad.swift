import Foundation

/// One client connection of a key-value store, as the load generator drives it. One task uses a connection at a
/// time; each request waits for its reply (no pipelining), as a simple client would.
public protocol KVConnection: Sendable {
    func set(_ key: String, _ value: [UInt8]) async throws
    func get(_ key: String) async throws -> [UInt8]?
    func close() async
}

/// The load generator for distributed memory: the same code drives Redis (over RESP) and the peers (over the grid
/// protocol), so the two differ only in the server and its protocol.
///
/// Each of `clients` concurrent clients opens its own connection, then does `opsPerClient` operations on keys of its
/// own (at most 1,000 per client), 100-byte values. `mix` says which: a SET then a GET of it, alternating (the default);
/// only SETs; or only GETs of keys each client stored first (not timed). Every GET is checked. Bounded in count and in
/// time (`timeLimit` seconds for the whole run).
public enum KVLoad {
    public enum Mix: String, Sendable {
        case setThenGet = "set+get"
        case setOnly = "set"
        case getOnly = "get"
    }

    public struct Result: Sendable {
        public var operations: Int
        public var seconds: Double
        public var opsPerSecond: Double { Double(operations) / seconds }
    }

    public static func run(
        clients: Int, opsPerClient: Int, valueBytes: Int = 100, mix: Mix = .setThenGet, timeLimit: Double,
        connect: @escaping @Sendable (Int) async throws -> any KVConnection
    ) async throws -> Result {
        var connections: [any KVConnection] = []
        for c in 0..<clients { connections.append(try await connect(c)) }
        let keys = max(1, min(1000, opsPerClient))
        if mix == .getOnly {
            // Every key a client will read, stored first (not timed).
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (c, connection) in connections.enumerated() {
                    group.addTask { for k in 0..<keys { try await connection.set("bench:\(c):\(k)", value(k, c, bytes: valueBytes)) } }
                }
                try await group.waitForAll()
            }
        }
        let deadline = Stats.now() + timeLimit
        let start = Stats.now()
        let done = try await withThrowingTaskGroup(of: Int.self) { group in
            for (c, connection) in connections.enumerated() {
                group.addTask {
                    var ops = 0
                    for i in 0..<opsPerClient {
                        if i % 64 == 0 && Stats.now() > deadline { break }
                        let set: Bool
                        let k: Int
                        switch mix {
                        case .setThenGet: (set, k) = (i % 2 == 0, i / 2 % keys)
                        case .setOnly: (set, k) = (true, i % keys)
                        case .getOnly: (set, k) = (false, i % keys)
                        }
                        let key = "bench:\(c):\(k)"
                        if set {
                            try await connection.set(key, value(i, c, bytes: valueBytes))
                        } else {
                            guard let got = try await connection.get(key), got.count == max(2, valueBytes), got[1] == UInt8(truncatingIfNeeded: c) else {
                                throw BenchError("a GET of \(key) did not return what was SET")
                            }
                        }
                        ops += 1
                    }
                    return ops
                }
            }
            var total = 0
            for try await n in group { total += n }
            return total
        }
        let seconds = Stats.now() - start
        for c in connections { await c.close() }
        return Result(operations: done, seconds: seconds)
    }

    /// A value for client `c`'s operation `i`: the client in byte 1 (what a GET checks), at least 2 bytes.
    static func value(_ i: Int, _ c: Int, bytes: Int) -> [UInt8] {
        var v = [UInt8](repeating: 0, count: max(2, bytes))
        v[0] = UInt8(truncatingIfNeeded: i)
        v[1] = UInt8(truncatingIfNeeded: c)
        return v
    }
}
