import Foundation
import GridCore
import GridProtocol
import NIOCore
import NIOPosix

/// A connection to a peer's port (grid protocol), authenticated with `HELLO`: requests carry fresh ids and each waits
/// for the one reply that echoes its id, so many requests can share one link at once.
///
/// Used by the CLI, by tests, and by peers to talk to each other. Replies are bounded by the requests in flight
/// (every request has exactly one reply), so the link never buffers more than it asked for.
public actor PeerLink {
    public typealias Reply = (message: GridMessage, payload: ByteBuffer?)

    public let host: String
    public let port: Int
    private var outbound: NIOAsyncChannelOutboundWriter<GridFrame>?
    private var pending: [Int: CheckedContinuation<Reply, any Error>] = [:]
    private var nextId = 1
    private var closedError: GridError?
    private var reader: Task<Void, Never>?
    /// The `HELLO_OK` of the peer: its worker id and the user it accepted us as.
    public private(set) var hello: Msg.HelloOk?

    private init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Connects to `host:port` and says `HELLO` with `token`. Throws a `GridError` the user can act on.
    public static func connect(host: String, port: Int, token: String, name: String? = nil, timeout: Double = 5) async throws -> PeerLink {
        let link = PeerLink(host: host, port: port)
        try await link.open(token: token, name: name, timeout: timeout)
        return link
    }

    private func open(token: String, name: String?, timeout: Double) async throws {
        let channel: NIOAsyncChannel<InboundFrame, GridFrame>
        do {
            channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(.milliseconds(Int64(timeout * 1000)))
                .channelOption(.socketOption(.so_reuseaddr), value: 1)
                .connect(host: host, port: port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(GridFrameDecoder()))
                        try channel.pipeline.syncOperations.addHandler(MessageToByteHandler(GridFrameEncoder()))
                        return try NIOAsyncChannel<InboundFrame, GridFrame>(wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            throw GridError(.unreachable, "cannot reach the peer at \(host):\(port) (\(error)); is a worker listening there?")
        }
        let ready = AsyncStream<NIOAsyncChannelOutboundWriter<GridFrame>>.makeStream()
        reader = Task { [weak self] in
            do {
                try await channel.executeThenClose { inbound, outbound in
                    ready.continuation.yield(outbound)
                    ready.continuation.finish()
                    for try await item in inbound {
                        guard let self else { return }
                        await self.deliver(item)
                    }
                }
            } catch {}
            ready.continuation.finish()
            await self?.fail(GridError(.unreachable, "the peer at \(self?.host ?? "?"):\(self?.port ?? 0) closed the connection"))
        }
        for await out in ready.stream { outbound = out }
        guard outbound != nil else { throw GridError(.unreachable, "the connection to \(host):\(port) closed at once") }
        let reply = try await request(.hello(Msg.Hello(token: token, name: name)), timeout: timeout)
        guard case .helloOk(let ok) = reply.message else { throw GridError(.badRequest, "the peer answered HELLO with \(reply.message.type)") }
        hello = ok
    }

    /// Sends `message` (with bulk `payload`) and waits for its reply. An `ERROR` reply is thrown as a `GridError`.
    public func request(_ message: GridMessage, payload: ByteBuffer? = nil, timeout: Double = 120) async throws -> Reply {
        if let closedError { throw closedError }
        guard let outbound else { throw GridError(.unreachable, "not connected") }
        let id = nextId
        nextId += 1
        let timer = Task { [weak self] in
            try await Task.sleep(for: .milliseconds(Int64(timeout * 1000)))
            await self?.resolve(id, .failure(GridError(.timeout, "no answer to \(message.type) from \(self?.host ?? "?"):\(self?.port ?? 0) in \(Int(timeout)) s")))
        }
        defer { timer.cancel() }
        let reply: Reply = try await withCheckedThrowingContinuation { continuation in
            pending[id] = continuation
            Task { [weak self] in
                do {
                    try await outbound.write(GridFrame(id: id, message, payload: payload))
                } catch {
                    await self?.resolve(id, .failure(GridError(.unreachable, "could not send to the peer: \(error)")))
                }
            }
        }
        if case .error(let e) = reply.message { throw GridError(e.code, e.message) }
        return reply
    }

    private func deliver(_ item: InboundFrame) {
        switch item {
        case .frame(let frame):
            resolve(frame.id, .success((frame.message, frame.payload)))
        case .invalid(let error, let id, let fatal):
            if let id, pending[id] != nil {
                resolve(id, .failure(error))
            } else if fatal {
                fail(error)
            }
        }
    }

    private func resolve(_ id: Int, _ result: Result<Reply, any Error>) {
        guard let continuation = pending.removeValue(forKey: id) else { return }
        continuation.resume(with: result)
    }

    private func fail(_ error: GridError) {
        if closedError == nil { closedError = error }
        outbound = nil
        for (_, c) in pending { c.resume(throwing: error) }
        pending = [:]
    }

    /// Whether the link can still be used.
    public var isOpen: Bool { closedError == nil && outbound != nil }

    /// Closes the connection; requests in flight fail.
    public func close() {
        outbound?.finish()
        outbound = nil
        reader?.cancel()
        fail(GridError(.unreachable, "closed"))
    }
}

