import NIOCore
import NIOPosix

/// A minimal Redis client (RESP2: SET, GET, WAIT) for the load generator: one connection, one request in flight.
///
/// With `replicas` > 0 every SET is followed, in the same write, by `WAIT replicas 0`, and counts as done only once
/// that many replicas have it: the reference for our SET, which keeps two copies before it answers.
final class RESPConnection: KVConnection, @unchecked Sendable {
    // Safe: the load generator uses each connection from one task at a time (see `KVConnection`), so `iterator` and
    // `buffer` are never touched concurrently.
    private let channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>
    private var iterator: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator
    private var buffer = ByteBuffer()
    private let replicas: Int

    private init(channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>, replicas: Int) {
        self.channel = channel
        self.replicas = replicas
        iterator = channel.inbound.makeAsyncIterator()
    }

    static func connect(port: Int, replicas: Int = 0) async throws -> RESPConnection {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        return RESPConnection(channel: channel, replicas: replicas)
    }

    func set(_ key: String, _ value: [UInt8]) async throws {
        var batch = [["SET".utf8Array, key.utf8Array, value]]
        if replicas > 0 { batch.append(["WAIT".utf8Array, "\(replicas)".utf8Array, "0".utf8Array]) }
        let replies = try await commands(batch)
        guard case .simple(let s) = replies[0], s == "OK" else { throw BenchError("redis did not answer SET with OK") }
        if replicas > 0 {
            guard case .integer(let n) = replies[1], n >= replicas else { throw BenchError("redis WAIT did not reach \(replicas) replica(s)") }
        }
    }

    /// `WAIT replicas timeoutMs`: how many replicas have every write so far.
    func wait(replicas: Int, timeoutMs: Int) async throws -> Int {
        guard case .integer(let n) = try await command(["WAIT".utf8Array, "\(replicas)".utf8Array, "\(timeoutMs)".utf8Array]) else {
            throw BenchError("redis answered WAIT with something other than an integer")
        }
        return n
    }

    func get(_ key: String) async throws -> [UInt8]? {
        switch try await command(["GET".utf8Array, key.utf8Array]) {
        case .bulk(let bytes): return bytes
        case .null: return nil
        default: throw BenchError("redis answered GET with something other than a bulk string")
        }
    }

    func close() async {
        try? await channel.channel.close()
    }

    enum Reply {
        case simple(String)
        case bulk([UInt8])
        case null
        case integer(Int)
    }

    private func command(_ parts: [[UInt8]]) async throws -> Reply {
        try await commands([parts])[0]
    }

    /// Sends every command in one write (pipelined) and reads their replies, in order.
    private func commands(_ batch: [[[UInt8]]]) async throws -> [Reply] {
        var out = channel.channel.allocator.buffer(capacity: batch.reduce(64) { $0 + 32 + $1.reduce(0) { $0 + $1.count + 16 } })
        for parts in batch {
            out.writeString("*\(parts.count)\r\n")
            for p in parts {
                out.writeString("$\(p.count)\r\n")
                out.writeBytes(p)
                out.writeString("\r\n")
            }
        }
        try await channel.outbound.write(out)
        var replies: [Reply] = []
        while replies.count < batch.count {
            if let reply = try Self.parse(&buffer) {
                replies.append(reply)
                continue
            }
            guard var more = try await iterator.next() else { throw BenchError("redis closed the connection") }
            buffer.writeBuffer(&more)
        }
        return replies
    }

    /// Parses one reply from the front of `buffer`, consuming it; nil when more bytes are needed.
    static func parse(_ buffer: inout ByteBuffer) throws -> Reply? {
        let view = buffer.readableBytesView
        guard let cr = view.firstIndex(of: UInt8(ascii: "\r")), view.index(after: cr) < view.endIndex else { return nil }
        let head = String(decoding: view[view.startIndex..<cr], as: UTF8.self)
        let headLength = cr - view.startIndex + 2
        guard let kind = head.first else { throw BenchError("empty redis reply") }
        let rest = String(head.dropFirst())
        switch kind {
        case "+":
            buffer.moveReaderIndex(forwardBy: headLength)
            return .simple(rest)
        case "-":
            buffer.moveReaderIndex(forwardBy: headLength)
            throw BenchError("redis error: \(rest)")
        case ":":
            buffer.moveReaderIndex(forwardBy: headLength)
            return .integer(Int(rest) ?? 0)
        case "$":
            guard let n = Int(rest) else { throw BenchError("bad redis bulk length \(rest)") }
            if n < 0 {
                buffer.moveReaderIndex(forwardBy: headLength)
                return .null
            }
            guard buffer.readableBytes >= headLength + n + 2 else { return nil }
            buffer.moveReaderIndex(forwardBy: headLength)
            let bytes = buffer.readBytes(length: n)!
            buffer.moveReaderIndex(forwardBy: 2)
            return .bulk(bytes)
        default:
            throw BenchError("unexpected redis reply \(head)")
        }
    }
}

extension String {
    var utf8Array: [UInt8] { Array(utf8) }
}
