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
/// Each of `clients` concurrent clients opens its own connection, then does `opsPerClient` operations: a SET of a
/// 100-byte value under its own key, then a GET of it, alternating; every GET is checked. Bounded in count and in
/// time (`timeLimit` seconds for the whole run).
public enum KVLoad {
    public struct Result: Sendable {
        public var operations: Int
        public var seconds: Double
        public var opsPerSecond: Double { Double(operations) / seconds }
    }

    public static func run(
        clients: Int, opsPerClient: Int, valueBytes: Int = 100, timeLimit: Double,
        connect: @escaping @Sendable (Int) async throws -> any KVConnection
    ) async throws -> Result {
        var connections: [any KVConnection] = []
        for c in 0..<clients { connections.append(try await connect(c)) }
        let deadline = Stats.now() + timeLimit
        let start = Stats.now()
        let done = try await withThrowingTaskGroup(of: Int.self) { group in
            for (c, connection) in connections.enumerated() {
                group.addTask {
                    var value = [UInt8](repeating: 0, count: valueBytes)
                    var ops = 0
                    for i in 0..<opsPerClient {
                        if i % 64 == 0 && Stats.now() > deadline { break }
                        let key = "bench:\(c):\(i / 2 % 1000)"
                        if i % 2 == 0 {
                            value[0] = UInt8(truncatingIfNeeded: i)
                            value[1] = UInt8(truncatingIfNeeded: c)
                            try await connection.set(key, value)
                        } else {
                            guard let got = try await connection.get(key), got.count == valueBytes, got[1] == UInt8(truncatingIfNeeded: c) else {
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
}
