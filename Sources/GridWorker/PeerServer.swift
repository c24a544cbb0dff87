import GridCore
import GridProtocol
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization

/// The peer port: clients (the CLI) and other peers connect here with the grid protocol. The first message must be
/// `HELLO` with a token, which the peer checks with its manager (cached); then every request gets one reply with its
/// id. Requests of one connection run concurrently, at most `maxInFlight` at a time (more waits: backpressure).
/// A thin shell: `PeerService` decides.
public struct PeerServer: Service {
    public typealias Listener = NIOAsyncChannel<NIOAsyncChannel<InboundFrame, GridFrame>, Never>

    let listener: Listener
    let service: PeerService
    let logger: Logger
    let maxInFlight = 32

    /// Binds the port (0: any free one) before the worker registers, so it can report the port.
    public static func bind(host: String, port: Int, limits: FrameLimits = FrameLimits()) async throws -> Listener {
        try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .bind(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(GridFrameDecoder(limits: limits)))
                    try channel.pipeline.syncOperations.addHandler(MessageToByteHandler(GridFrameEncoder()))
                    return try NIOAsyncChannel<InboundFrame, GridFrame>(
                        wrappingChannelSynchronously: channel, configuration: .init(isOutboundHalfClosureEnabled: true))
                }
            }
    }

    public init(listener: Listener, service: PeerService, logger: Logger) {
        self.listener = listener
        self.service = service
        self.logger = logger
    }

    public func run() async throws {
        try await cancelWhenGracefulShutdown {
            try await withThrowingDiscardingTaskGroup { group in
                try await listener.executeThenClose { inbound in
                    for try await connection in inbound {
                        group.addTask { await self.serve(connection) }
                    }
                }
            }
        }
    }

    private func serve(_ channel: NIOAsyncChannel<InboundFrame, GridFrame>) async {
        let remote = channel.channel.remoteAddress?.description ?? "?"
        do {
            try await channel.executeThenClose { inbound, outbound in
                var caller: PeerService.Caller?
                let inFlight = Counter()
                try await withThrowingDiscardingTaskGroup { group in
                    loop: for try await item in inbound {
                        switch item {
                        case .invalid(let error, let id, let fatal):
                            logger.info("refused input", metadata: ["grid.peer": "\(remote)", "grid.error": "\(error)"])
                            try await outbound.write(GridFrame(id: id ?? 0, .error(Msg.Error(error))))
                            if fatal { break loop }
                        case .frame(let frame):
                            guard let who = caller else {
                                // Nothing but HELLO (or PING) before the token was checked.
                                switch frame.message {
                                case .ping:
                                    try await outbound.write(GridFrame(id: frame.id, .pong))
                                    continue loop
                                case .hello(let hello):
                                    guard ProtocolVersion.supported.contains(hello.version) else {
                                        let e = GridError(.versionMismatch, "protocol version \(hello.version) is not supported (\(ProtocolVersion.supported))")
                                        try await outbound.write(GridFrame(id: frame.id, .error(Msg.Error(e))))
                                        break loop
                                    }
                                    switch await service.authenticate(hello.token) {
                                    case .success(let c):
                                        caller = c
                                        let me = await service.selfId ?? ""
                                        try await outbound.write(
                                            GridFrame(
                                                id: frame.id,
                                                .helloOk(Msg.HelloOk(version: ProtocolVersion.current, workerId: me, owner: c.user, heartbeatSeconds: 0))))
                                    case .failure(let e):
                                        try await outbound.write(GridFrame(id: frame.id, .error(Msg.Error(e))))
                                        break loop
                                    }
                                default:
                                    let e = GridError(.notAuthenticated, "send HELLO with a token before \(frame.message.type)")
                                    try await outbound.write(GridFrame(id: frame.id, .error(Msg.Error(e))))
                                    break loop
                                }
                                continue loop
                            }
                            if case .hello = frame.message {
                                try await outbound.write(GridFrame(id: frame.id, .error(Msg.Error(GridError(.badRequest, "HELLO was already received")))))
                                continue loop
                            }
                            let work: @Sendable () async -> Void = {
                                let reply = await service.handle(frame.message, payload: frame.payload, caller: who)
                                try? await outbound.write(GridFrame(id: frame.id, reply.message, payload: reply.payload))
                            }
                            if inFlight.tryTake(maxInFlight) {
                                group.addTask {
                                    await work()
                                    inFlight.give()
                                }
                            } else {
                                await work()
                            }
                        }
                    }
                }
            }
        } catch {
            logger.debug("peer connection ended", metadata: ["grid.peer": "\(remote)", "grid.error": "\(error)"])
        }
    }
}

/// Requests in flight on one connection.
final class Counter: Sendable {
    private let value = Mutex(0)

    func tryTake(_ limit: Int) -> Bool {
        value.withLock { v in
            guard v < limit else { return false }
            v += 1
            return true
        }
    }

    func give() { value.withLock { $0 -= 1 } }
}
