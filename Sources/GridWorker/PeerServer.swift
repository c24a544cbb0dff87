import GridCore
public import GridProtocol
public import Logging
public import NIOCore
import NIOPosix
public import ServiceLifecycle
import Synchronization
public import GridClient

/// Whether this worker's peer port speaks TLS, and with what: on a TLS grid (the manager link is pinned) the port
/// is TLS from the start, and accepts nothing until the manager has signed this worker's key at `REGISTER`.
public final class PeerTLSSwitch: Sendable {
    public let required: Bool
    private let current = Mutex<PeerTLS?>(nil)

    public init(required: Bool) { self.required = required }

    /// The material in use (nil before `REGISTERED`, or on a plain-text grid).
    public var tls: PeerTLS? { current.withLock { $0 } }

    public func set(_ tls: PeerTLS) { current.withLock { $0 = tls } }
}

/// The peer port: clients (the CLI) and other peers connect here with the grid protocol. The first message must be
/// `HELLO`: a client's carries its API token, which the peer checks with its manager (cached); another peer's carries a
/// nonce, answered with this peer's credential and proof, and the peer must then prove itself with `PEER_AUTH`. Then
/// every request gets one reply with its id. Requests of one connection run concurrently, at most `maxInFlight` at a time (then the connection is not read
/// until one ends: backpressure). A thin shell: `PeerService` decides; `PeerConnection` (a channel handler) hands
/// each request to a task and writes its reply from the event loop, with no stream in between.
public struct PeerServer: Service {
    public typealias Listener = NIOAsyncChannel<any Channel, Never>

    let listener: Listener
    let service: PeerService
    let logger: Logger
    static let maxInFlight = 32

    /// Binds the port (0: any free one) before the worker registers, so it can report the port. Accepted connections
    /// are not read until `run` gives them their handler.
    /// `strangers`: what a connection may do before it authenticates (deadline, line length, per-address caps).
    public static func bind(
        host: String, port: Int, limits: FrameLimits = FrameLimits(), strangers: StrangerLimits = StrangerLimits(),
        tls: PeerTLSSwitch = PeerTLSSwitch(required: false)
    ) async throws -> Listener {
        let strangerGuard = StrangerGuard(limits: strangers)
        var limits = limits
        limits.maxStrangerLineBytes = strangers.maxLineBytes
        return try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelOption(.autoRead, value: false)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .bind(host: host, port: port) { [limits] channel in
                channel.eventLoop.makeCompletedFuture {
                    if tls.required {
                        // No certificate yet (the worker has not registered): nothing is accepted in plain text.
                        guard let handler = tls.tls?.serverHandler() else {
                            throw GridError(.unreachable, "this peer has no certificate from its manager yet")
                        }
                        try channel.pipeline.syncOperations.addHandler(handler)
                    }
                    let stranger = StrangerHandler(guard: strangerGuard, address: channel.remoteAddress?.ipAddress ?? "?")
                    try channel.pipeline.syncOperations.addHandler(stranger)
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(GridFrameDecoder(limits: limits, gate: stranger.gate)))
                    try channel.pipeline.syncOperations.addHandler(MessageToByteHandler(GridFrameEncoder()))
                    return channel
                }
            }
    }

    public init(listener: Listener, service: PeerService, logger: Logger) {
        self.listener = listener
        self.service = service
        self.logger = logger
    }

    /// Accepts connections and runs every request they make as a child of one task group, so none outlives `run()`:
    /// on shutdown the listener closes, the request stream ends, and the group waits for (cancelled) requests in flight.
    public func run() async throws {
        let (requests, submit) = AsyncStream.makeStream(of: PeerRequest.self)
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask {
                defer { submit.finish() }
                try await cancelWhenGracefulShutdown { try await accept(submit: submit) }
            }
            for await request in requests {
                group.addTask { await request.run() }
            }
        }
    }

    private func accept(submit: AsyncStream<PeerRequest>.Continuation) async throws {
        try await listener.executeThenClose { inbound in
            for try await channel in inbound {
                let (service, logger) = (service, logger)
                channel.eventLoop.execute {
                    do {
                        // A refused stranger has no gate: its handler already said why and closes it.
                        guard let gate = try channel.pipeline.syncOperations.handler(type: StrangerHandler.self).gate else { return }
                        try channel.pipeline.syncOperations.addHandler(PeerConnection(service: service, gate: gate, submit: submit, logger: logger))
                        channel.setOption(.autoRead, value: true).whenFailure { _ in channel.close(promise: nil) }
                    } catch {
                        channel.close(promise: nil)
                    }
                }
            }
        }
    }
}

/// One request of a peer connection, run by `PeerServer.run()`'s task group.
struct PeerRequest: Sendable {
    let run: @Sendable () async -> Void
}

/// One connection of the peer port: authentication first, then each request in a task of its own, its reply written
/// on the event loop. State is touched on the event loop only.
final class PeerConnection: ChannelInboundHandler {
    typealias InboundIn = InboundFrame
    typealias OutboundOut = GridFrame

    private enum Auth {
        case waiting
        /// HELLO (or PEER_AUTH) is being checked; frames that come meanwhile wait their turn.
        case checking([InboundFrame])
        /// A peer said HELLO with a nonce and got our credential; its `PEER_AUTH` must answer our `nonce`.
        case awaitingProof(nonce: String)
        case done(PeerService.Caller)
        case closing
    }

    private let service: PeerService
    private let logger: Logger
    /// Hands each request to `PeerServer.run()`'s task group.
    private let submit: AsyncStream<PeerRequest>.Continuation
    /// Opened once the caller is authenticated: the decoder then accepts bulk bytes and long lines, and the HELLO
    /// deadline no longer applies.
    private let gate: StrangerGate
    private var auth = Auth.waiting
    private var inFlight = 0
    private var paused = false
    private var inputClosed = false
    private var remote = "?"
    /// The token or peer check under way (one at a time, before the connection is open): owned by this connection,
    /// cancelled when it closes, so no check outlives it.
    private var handshake: Task<Void, Never>?

    init(service: PeerService, gate: StrangerGate, submit: AsyncStream<PeerRequest>.Continuation, logger: Logger) {
        self.service = service
        self.gate = gate
        self.submit = submit
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        remote = context.channel.remoteAddress?.description ?? "?"
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        receive(unwrapInboundIn(data), context: context)
    }

    private func receive(_ item: InboundFrame, context: ChannelHandlerContext) {
        switch auth {
        case .closing:
            return
        case .checking(var waiting):
            waiting.append(item)
            auth = .checking(waiting)
            return
        case .waiting, .done:
            break
        case .awaitingProof(let nonce):
            guard case .frame(let frame) = item, case .peerAuth(let proof) = frame.message else {
                let e = GridError(.notAuthenticated, "a peer must send PEER_AUTH after HELLO_OK")
                return reply(GridFrame(id: 0, .error(Msg.Error(e))), context: context, thenClose: true)
            }
            auth = .checking([])
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            let service = service
            handshake = Task {
                let result = await service.authenticatePeer(proof, nonce: nonce)
                bound.eventLoop.execute {
                    let (handler, context) = bound.value
                    handler.authenticated(result, answer: { _ in .ok(Msg.Ok()) }, id: frame.id, context: context)
                }
            }
            return
        }
        switch item {
        case .invalid(let error, let id, let fatal):
            logger.info("refused input", metadata: ["grid.peer": "\(remote)", "grid.error": "\(error)"])
            reply(GridFrame(id: id ?? 0, .error(Msg.Error(error))), context: context, thenClose: fatal)
        case .frame(let frame):
            guard case .done(let caller) = auth else { return greet(frame, context: context) }
            if case .hello = frame.message {
                reply(GridFrame(id: frame.id, .error(Msg.Error(GridError(.badRequest, "HELLO was already received")))), context: context)
                return
            }
            // A key of the caller's held here is read on the event loop: no task, no actor.
            if case .getMem(let m) = frame.message, caller.peer == nil, let hit = service.memory.fastGet(m.key, user: caller.user) {
                return reply(GridFrame(id: frame.id, .memResult(hit)), context: context)
            }
            start(frame, caller: caller, context: context)
        }
    }

    /// Before the token is checked: only `HELLO` (or `PING`).
    private func greet(_ frame: GridFrame, context: ChannelHandlerContext) {
        switch frame.message {
        case .ping:
            reply(GridFrame(id: frame.id, .pong), context: context)
        case .hello(let hello):
            guard ProtocolVersion.supported.contains(hello.version) else {
                let e = GridError(.versionMismatch, "protocol version \(hello.version) is not supported (\(ProtocolVersion.supported))")
                return reply(GridFrame(id: frame.id, .error(Msg.Error(e))), context: context, thenClose: true)
            }
            auth = .checking([])
            gate.heard()
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            let service = service
            if let nonce = hello.nonce, hello.token.isEmpty {
                // Another peer: we prove ourselves first (our credential, our signature over its nonce), then it does.
                handshake = Task {
                    let result = await service.peerHello(nonce: nonce)
                    bound.eventLoop.execute {
                        let (handler, context) = bound.value
                        handler.peerGreeted(result, id: frame.id, context: context)
                    }
                }
                return
            }
            handshake = Task {
                let result = await service.authenticate(hello.token)
                let me = await service.selfId ?? ""
                bound.eventLoop.execute {
                    let (handler, context) = bound.value
                    handler.authenticated(
                        result,
                        answer: { caller in
                            .helloOk(Msg.HelloOk(version: ProtocolVersion.current, workerId: me, owner: caller.user, heartbeatSeconds: 0))
                        }, id: frame.id, context: context)
                }
            }
        default:
            let e = GridError(.notAuthenticated, "send HELLO with a token before \(frame.message.type)")
            reply(GridFrame(id: frame.id, .error(Msg.Error(e))), context: context, thenClose: true)
        }
    }

    /// Our answer to a peer's `HELLO {nonce}` is ready: send it, then wait for its `PEER_AUTH`.
    private func peerGreeted(_ result: Result<Msg.HelloOk, GridError>, id: Int, context: ChannelHandlerContext) {
        guard case .checking(let waiting) = auth else { return }
        switch result {
        case .success(let ok):
            auth = .awaitingProof(nonce: ok.nonce ?? "")
            reply(GridFrame(id: id, .helloOk(ok)), context: context)
            for item in waiting { receive(item, context: context) }
            closeIfDone(context: context)
        case .failure(let e):
            auth = .waiting
            reply(GridFrame(id: id, .error(Msg.Error(e))), context: context, thenClose: true)
        }
    }

    private func authenticated(
        _ result: Result<PeerService.Caller, GridError>, answer: (PeerService.Caller) -> GridMessage, id: Int, context: ChannelHandlerContext
    ) {
        guard case .checking(let waiting) = auth else { return }
        switch result {
        case .success(let caller):
            auth = .done(caller)
            gate.open()
            reply(GridFrame(id: id, answer(caller)), context: context)
            for item in waiting { receive(item, context: context) }
            closeIfDone(context: context)
        case .failure(let e):
            auth = .waiting
            reply(GridFrame(id: id, .error(Msg.Error(e))), context: context, thenClose: true)
        }
    }

    /// Runs one request in the server's task group; its reply is written from the event loop.
    private func start(_ frame: GridFrame, caller: PeerService.Caller, context: ChannelHandlerContext) {
        inFlight += 1
        if inFlight >= PeerServer.maxInFlight, !paused {
            paused = true
            context.channel.setOption(.autoRead, value: false).whenFailure { _ in }
        }
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let service = service
        let request = PeerRequest {
            let answer = await service.handle(frame.message, payload: frame.payload, caller: caller)
            bound.eventLoop.execute {
                let (handler, context) = bound.value
                handler.finished(GridFrame(id: frame.id, answer.message, payload: answer.payload), context: context)
            }
        }
        if case .terminated = submit.yield(request) {
            // The server is stopping: no new request runs.
            auth = .closing
            context.close(promise: nil)
        }
    }

    private func finished(_ frame: GridFrame, context: ChannelHandlerContext) {
        inFlight -= 1
        if case .closing = auth { return }
        reply(frame, context: context)
        if paused, inFlight < PeerServer.maxInFlight {
            paused = false
            context.channel.setOption(.autoRead, value: true).whenFailure { _ in }
        }
        closeIfDone(context: context)
    }

    private func reply(_ frame: GridFrame, context: ChannelHandlerContext, thenClose: Bool = false) {
        if thenClose {
            auth = .closing
            context.writeAndFlush(wrapOutboundOut(frame)).whenComplete { _ in context.close(promise: nil) }
        } else {
            context.writeAndFlush(wrapOutboundOut(frame), promise: nil)
        }
    }

    /// The client closed its side: answer what is in flight, then close.
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event {
            inputClosed = true
            closeIfDone(context: context)
        }
        context.fireUserInboundEventTriggered(event)
    }

    private func closeIfDone(context: ChannelHandlerContext) {
        guard inputClosed, inFlight == 0 else { return }
        if case .checking = auth { return }
        auth = .closing
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        handshake?.cancel()
        handshake = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.debug("peer connection ended", metadata: ["grid.peer": "\(remote)", "grid.error": "\(error)"])
        auth = .closing
        context.close(promise: nil)
    }
}
