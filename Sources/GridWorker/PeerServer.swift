import GridCore
public import GridProtocol
public import Logging
public import NIOCore
import NIOPosix
import NIOSSL
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
/// `HELLO {nonce}`, answered with this peer's credential and proof; then a person proves itself with `SESSION` (its
/// manager-signed certificate and its signature over our nonce; no token ever comes here), another peer with
/// `PEER_AUTH` (its credential and signature). Then
/// every request gets one reply with its id. Requests of one connection run concurrently, at most `maxInFlight` at a time (then the connection is not read
/// until one ends: backpressure), and while its replies wait unread past a mark, nothing it sent is carried out. A thin shell: `PeerService` decides; `PeerConnection` (a channel handler) hands
/// each request to a task and writes its reply from the event loop, with no stream in between.
public struct PeerServer: Service {
    /// The bound port, and whether its connections speak TLS (fixed when it was bound: each connection's check of the
    /// other side's certificate follows it, not what handlers its pipeline happens to hold).
    public struct Listener: Sendable {
        let channel: NIOAsyncChannel<any Channel, Never>
        public let tls: PeerTLSSwitch
        /// Where it listens.
        public var localAddress: SocketAddress? { channel.channel.localAddress }
    }

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
        let channel: NIOAsyncChannel<any Channel, Never> = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelOption(.autoRead, value: false)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            // Replies wait here while the other side does not read: past the high mark the connection is not read
            // (nor what was read carried out) until they drain to the low one (`PeerConnection`). Two chunks' worth,
            // so a reader of a file's chunks keeps one on the way while the next is read from disk.
            .childChannelOption(.writeBufferWaterMark, value: .init(low: 4 << 20, high: 8 << 20))
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
                    try channel.pipeline.syncOperations.addHandler(GridFrameWriter(maxLineBytes: limits.maxLineBytes))
                    return channel
                }
            }
        return Listener(channel: channel, tls: tls)
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
                // A graceful shutdown stops accepting by cancelling the loop: that is this service's normal end, not a
                // failure (a service that throws makes its ServiceGroup cancel every other service at once, and a
                // stopping worker could not report the runs it stops).
                do {
                    try await cancelWhenGracefulShutdown { try await accept(submit: submit) }
                } catch is CancellationError {}
            }
            for await request in requests {
                group.addTask { await request.run() }
            }
        }
    }

    private func accept(submit: AsyncStream<PeerRequest>.Continuation) async throws {
        let onTLS = listener.tls.required
        try await listener.channel.executeThenClose { inbound in
            for try await channel in inbound {
                let (service, logger) = (service, logger)
                channel.eventLoop.execute {
                    do {
                        // A refused stranger has no gate: its handler already said why and closes it.
                        guard let gate = try channel.pipeline.syncOperations.handler(type: StrangerHandler.self).gate else { return }
                        try channel.pipeline.syncOperations.addHandler(PeerConnection(service: service, gate: gate, onTLS: onTLS, submit: submit, logger: logger))
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

    private let service: PeerService
    private let logger: Logger
    /// Hands each request to `PeerServer.run()`'s task group.
    private let submit: AsyncStream<PeerRequest>.Continuation
    /// Opened once the caller is authenticated: the decoder then accepts bulk bytes and long lines, and the HELLO
    /// deadline no longer applies.
    private let gate: StrangerGate
    /// The connection speaks TLS (its listener was bound so): a connecting peer's certificate must name the worker it
    /// proves to be.
    private let onTLS: Bool
    /// Who the caller is and what may be done before that is known (pure, `PeerGreeting`).
    private var greeting = PeerGreeting<PeerService.Caller>()
    private var inFlight = 0
    private var paused = false
    /// A flush of the replies written since is queued on the event loop.
    private var flushScheduled = false
    private var inputClosed = false
    private var remote = "?"
    /// The session or peer check under way (one at a time, before the connection is open): owned by this connection,
    /// cancelled when it closes, so no check outlives it.
    private var handshake: Task<Void, Never>?
    /// This connection, to the service (`Caller.connection`): its queued tasks are dropped when it closes.
    private let id = PeerConnection.ids.add(1, ordering: .relaxed).newValue
    private static let ids = Atomic<Int>(0)
    private var hadRequests = false
    /// Closes the connection once its replies have stayed unread for `PeerConfig.replyStallSeconds`.
    private var stall: Scheduled<Void>?

    init(service: PeerService, gate: StrangerGate, onTLS: Bool, submit: AsyncStream<PeerRequest>.Continuation, logger: Logger) {
        self.onTLS = onTLS
        self.service = service
        self.gate = gate
        self.submit = submit
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        remote = context.channel.remoteAddress?.description ?? "?"
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // While its replies wait unread, what the other side sent waits too (a read's worth at most: reading stops).
        // A client that sent thousands of reads of a large value, and read none of the answers, had every answer
        // queued on this peer, the fast path's too.
        // So do frames read beyond the requests in flight: one read can hold a thousand small requests, and each started
        // at once (the reading pause comes after the read) held its answer too: a client whose session's standing had
        // to be asked again (no fast path) had a thousand answers of 255 KB queued here.
        if !parked.isEmpty || !context.channel.isWritable || inFlight >= PeerServer.maxInFlight {
            parked.append(unwrapInboundIn(data))
            updateReading(context: context)
            return
        }
        receive(unwrapInboundIn(data), context: context)
    }

    /// Frames read while the replies waited unread (`channelRead`): carried out, in order, once they drain.
    private var parked = CircularBuffer<InboundFrame>()
    /// About how many bytes the replies written since the last flush take.
    private var unflushed = 0

    /// About how large a reply is: its bulk bytes, and a memory value it carries in its line (the large ones).
    static func estimatedBytes(_ frame: GridFrame) -> Int {
        var bytes = (frame.payload?.readableBytes ?? 0) + 64
        if case .memResult(let r) = frame.message, let value = r.value { bytes += value.encodedSizeBound }
        return bytes
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        watchStall(context: context)
        drainParked(context: context)
        updateReading(context: context)
        closeIfDone(context: context)
        context.fireChannelWritabilityChanged()
    }

    /// Carries out the frames that waited (`channelRead`), in order, while the replies are read and fewer than
    /// `maxInFlight` requests run.
    private func drainParked(context: ChannelHandlerContext) {
        while !parked.isEmpty, context.channel.isWritable, inFlight < PeerServer.maxInFlight, !greeting.isClosing {
            receive(parked.removeFirst(), context: context)
        }
    }

    /// While the connection is not writable (its replies unread), a timer closes it after the stall limit; writable
    /// again, the timer goes. A client that asked and never read held its replies here for good.
    private func watchStall(context: ChannelHandlerContext) {
        guard !context.channel.isWritable else {
            stall?.cancel()
            stall = nil
            return
        }
        guard stall == nil else { return }
        let limit = service.config.replyStallSeconds
        let seconds = limit.isFinite ? min(max(limit, 0.1), 86_400) : 120
        let (channel, logger, remote) = (context.channel, logger, remote)
        stall = context.eventLoop.scheduleTask(in: .milliseconds(Int64(seconds * 1000))) {
            guard !channel.isWritable else { return }
            logger.info("closed a connection whose replies stayed unread", metadata: ["grid.peer": "\(remote)", "grid.seconds": "\(Int(seconds))"])
            channel.close(promise: nil)
        }
    }

    /// Reads the connection only while fewer than `maxInFlight` requests run and its replies are being read.
    private func updateReading(context: ChannelHandlerContext) {
        let pause = inFlight >= PeerServer.maxInFlight || !context.channel.isWritable || !parked.isEmpty
        guard pause != paused else { return }
        paused = pause
        context.channel.setOption(.autoRead, value: !pause).whenFailure { _ in }
    }

    private func receive(_ item: InboundFrame, context: ChannelHandlerContext) {
        if case .invalid(let error, _, _) = item {
            // Debug: each is answered (or closes the connection); a peer that sends many should not fill the log.
            logger.debug("refused input", metadata: ["grid.peer": "\(remote)", "grid.error": "\(error)"])
        }
        carryOut(greeting.received(item), context: context)
    }

    /// Carries out what `PeerGreeting` decided.
    private func carryOut(_ action: PeerGreeting<PeerService.Caller>.Action, context: ChannelHandlerContext) {
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let service = service
        switch action {
        case .none:
            return
        case .reply(let frame):
            reply(frame, context: context)
        case .replyAndClose(let frame):
            reply(frame, context: context, thenClose: true)
        case .greetPeer(let nonce, let id):
            // Another peer: we prove ourselves first (our credential, our signature over its nonce), then it does.
            gate.heard()
            handshake = Task {
                let result = await service.peerHello(nonce: nonce)
                bound.eventLoop.execute {
                    let (handler, context) = bound.value
                    handler.resolved(handler.greeting.greeted(result, id: id), context: context)
                }
            }
        case .checkProof(let proof, let nonce, let id):
            // Over TLS, the certificate the connecting peer showed must name the worker it proves to be.
            let certificate = onTLS ? context.channel.nioSSL_peerCertificate() : nil
            check(id: id, bound) {
                var link = PeerTrust.LinkIdentity.plainText
                if let certificate {
                    let der = try? await certificate.get()?.toDERBytes()
                    link = .certificate(der.flatMap(ManagerTrust.peerWorkerId(certificate:)))
                }
                return await service.authenticatePeer(proof, nonce: nonce, link: link).map { ($0, GridMessage.ok(Msg.Ok())) }
            }
        case .checkSession(let session, let nonce, let id):
            check(id: id, bound) { await service.welcome(await service.authenticateSession(session, nonce: nonce)) }
        case .open(let frame):
            // Full limits from here on: bulk bytes, long lines, no HELLO deadline.
            gate.open()
            reply(frame, context: context)
        case .deliver(let frame, let caller):
            // A key of the caller's held here is read on the event loop: no task, no actor.
            // Only for a caller whose session is known to stand (otherwise the actor asks first).
            if case .getMem(let m) = frame.message, caller.peer == nil, service.stands(caller), let hit = service.memory.fastGet(m.key, user: caller.user) {
                return reply(GridFrame(id: frame.id, .memResult(hit)), context: context)
            }
            var caller = caller
            caller.connection = id
            hadRequests = true
            start(frame, caller: caller, context: context)
        }
    }

    /// Runs a check of the caller (`check`, off the event loop, in the connection's `handshake` task) and hands its
    /// result to `PeerGreeting.checked` back on the event loop.
    private func check(
        id: Int, _ bound: NIOLoopBound<(PeerConnection, ChannelHandlerContext)>,
        _ check: @escaping @Sendable () async -> Result<(PeerService.Caller, GridMessage), GridError>
    ) {
        handshake = Task {
            let result = await check()
            bound.eventLoop.execute {
                let (handler, context) = bound.value
                handler.resolved(handler.greeting.checked(result, id: id), context: context)
            }
        }
    }

    /// A check ended: its action, then the frames that waited for it, in order.
    private func resolved(_ decided: (PeerGreeting<PeerService.Caller>.Action, held: [InboundFrame]), context: ChannelHandlerContext) {
        carryOut(decided.0, context: context)
        for item in decided.held { receive(item, context: context) }
        closeIfDone(context: context)
    }

    /// Runs one request in the server's task group; its reply is written from the event loop.
    private func start(_ frame: GridFrame, caller: PeerService.Caller, context: ChannelHandlerContext) {
        inFlight += 1
        updateReading(context: context)
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
            greeting.close()
            context.close(promise: nil)
        }
    }

    private func finished(_ frame: GridFrame, context: ChannelHandlerContext) {
        inFlight -= 1
        if greeting.isClosing { return }
        reply(frame, context: context)
        drainParked(context: context)
        updateReading(context: context)
        closeIfDone(context: context)
    }

    private func reply(_ frame: GridFrame, context: ChannelHandlerContext, thenClose: Bool = false) {
        if thenClose {
            greeting.close()
            context.writeAndFlush(wrapOutboundOut(frame)).whenComplete { _ in context.close(promise: nil) }
        } else {
            // Written now, flushed once the event loop has run what is queued on it: the replies that finish together
            // (a read's worth of memory hits, the tasks an interpreter answered at once) leave in one write. Flushed at
            // once past 1 MiB: over TLS a reply is only counted against the connection's mark once flushed (the TLS
            // handler holds it until then), and a read's worth of large memory hits held gigabytes.
            unflushed += Self.estimatedBytes(frame)
            context.write(wrapOutboundOut(frame), promise: nil)
            if unflushed >= 1 << 20 {
                unflushed = 0
                context.flush()
            }
            guard !flushScheduled else { return }
            flushScheduled = true
            let bound = NIOLoopBound((self, context.channel), eventLoop: context.eventLoop)
            context.eventLoop.execute {
                let (handler, channel) = bound.value
                handler.flushScheduled = false
                handler.unflushed = 0
                channel.flush()
            }
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
        guard inputClosed, inFlight == 0, parked.isEmpty, !greeting.isChecking else { return }
        greeting.close()
        context.flush()  // the replies written and not yet flushed go first
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        handshake?.cancel()
        handshake = nil
        stall?.cancel()
        stall = nil
        // Its tasks still waiting are dropped: nobody reads their results, and a closed connection holds no queue.
        if hadRequests {
            // In the server's task group, as a request is.
            let (service, id) = (service, id)
            _ = submit.yield(PeerRequest { await service.connectionClosed(id) })
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.debug("peer connection ended", metadata: ["grid.peer": "\(remote)", "grid.error": "\(error)"])
        greeting.close()
        context.close(promise: nil)
    }
}
