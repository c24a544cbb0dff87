import Foundation
import GridCore
public import GridProtocol
public import NIOCore
import NIOPosix
import NIOSSL
import Synchronization

/// A connection to a peer's port (grid protocol), authenticated with `HELLO`: requests carry fresh ids and each waits
/// for the one reply that echoes its id, so many requests can share one link at once.
///
/// Used by the CLI, by tests, and by peers to talk to each other. Replies are bounded by the requests in flight
/// (every request has exactly one reply), so the link never buffers more than it asked for. A reply is handed to its
/// waiting request straight from the event loop (`ReplyHandler`), and one timer per link fails requests whose time
/// is up: a request costs no task and no timer of its own.
public final class PeerLink: Sendable {
    public typealias Reply = (message: GridMessage, payload: ByteBuffer?)

    public let host: String
    public let port: Int
    private let channel: any Channel
    private let state = Mutex(State())

    private struct State: ~Copyable {
        /// Requests in flight, matched to replies by id (`Correlator`, pure); a reply that comes before its request
        /// waits is kept for it.
        var requests = Correlator<Result<Reply, any Error>, CheckedContinuation<Reply, any Error>>()
        var hello: Msg.HelloOk?
        var sweeper: RepeatedTask?
        /// Frames sent by callers off the event loop and not yet written, and whether a drain is scheduled: requests
        /// made together go out in one write (one system call, one wake-up of the peer), not one each.
        var outbox: [(id: Int, frame: GridFrame)] = []
        var draining = false
    }

    /// Seconds on the event loops' monotonic clock, for the requests' deadlines.
    private static func clock() -> Double { Double(NIODeadline.now().uptimeNanoseconds) / 1e9 }

    /// The `HELLO_OK` of the peer: its worker id and the user it accepted us as.
    public var hello: Msg.HelloOk? { state.withLock { $0.hello } }

    private init(host: String, port: Int, channel: any Channel) {
        self.host = host
        self.port = port
        self.channel = channel
    }

    /// Where a person's client gets its pass for a session at peer `worker` (the one the peer says it is): its key and
    /// the manager's grant for it (`POST /api/v1/peer-tickets`, `GridClient.grantSource`; the CLI keeps its own key
    /// and last grant, and uses them while no manager is reachable).
    public typealias GrantSource = @Sendable (_ worker: String) async throws -> PeerTrust.Pass

    /// Connects to `host:port` as a person without handing the peer any secret: says `HELLO {nonce}`; the peer proves
    /// which worker it is (its manager-signed credential, its signature over our nonce, and over TLS its certificate);
    /// `grant` gives this person's pass; only once the peer's proof holds under the manager's key that came with it
    /// does the person prove itself (`SESSION`: its certificate, and its key's signature over that peer's id and
    /// nonce). Throws a `GridError` the user can act on; when the peer's proof fails, nothing was sent but our nonce.
    /// `expecting`: the worker the caller means to reach; a peer that proves to be another is refused before the
    /// person's `SESSION` is sent (what a peer says after `SESSION` is its own word, unchecked).
    public static func connect(
        host: String, port: Int, grant: GrantSource, name: String? = nil, timeout: Double = 15, tls: PeerTLS? = nil, expecting: String? = nil
    ) async throws -> PeerLink {
        let link = try await open(host: host, port: port, timeout: timeout, tls: tls)
        do {
            let nonce = PeerTrust.nonce()
            let reply = try await link.request(.hello(Msg.Hello(token: "", name: name, nonce: nonce)), timeout: timeout)
            guard case .helloOk(let proven) = reply.message, let theirs = proven.nonce, PeerTrust.isWellFormed(nonce: theirs) else {
                throw GridError(.badRequest, "the peer at \(host):\(port) answered HELLO with \(reply.message.type) and no nonce of its own")
            }
            if let expecting, proven.workerId != expecting {
                throw GridError(
                    .forbidden,
                    "the peer at \(host):\(port) is worker \(TerminalText.field(proven.workerId)), not \(TerminalText.field(expecting)): nothing was sent to it")
            }
            let pass = try await grant(proven.workerId)
            let identity = try await link.identity(tls: tls)
            if let e = PeerTrust.checkPeerForSession(
                proven, nonce: nonce, managerKey: pass.grant.managerKey, now: Int64(Date().timeIntervalSince1970), worker: proven.workerId,
                link: identity, host: host, port: port)
            {
                throw GridError(e.code, "the peer at \(host):\(port) is not who it says: \(e.message)")
            }
            let opened = try await link.request(
                .session(pass.session(holder: proven.workerId, nonce: theirs, now: Int64(Date().timeIntervalSince1970))), timeout: timeout)
            guard case .helloOk(let ok) = opened.message else {
                throw GridError(.badRequest, "the peer answered SESSION with \(opened.message.type)")
            }
            link.state.withLock { $0.hello = ok }
        } catch {
            link.close()
            throw error
        }
        return link
    }

    /// What the link's TLS certificate says of the peer at its other end: the worker id it names (nil: none), or
    /// `plainText` without TLS.
    func identity(tls: PeerTLS?) async throws -> PeerTrust.LinkIdentity {
        guard tls != nil else { return .plainText }
        let der = try await channel.nioSSL_peerCertificate().get().map { try $0.toDERBytes() }
        return .certificate(der.flatMap(ManagerTrust.peerWorkerId(certificate:)))
    }

    /// Connects to another peer as a peer: says `HELLO {nonce}` (no token), hands the answer to `prove`, which checks
    /// the other side's credential and proof and returns this peer's `PEER_AUTH` (or throws, and nothing more is
    /// sent), then waits for its `OK`.
    public static func connectAsPeer(
        host: String, port: Int, nonce: String, name: String? = nil, timeout: Double = 5, tls: PeerTLS? = nil,
        prove: @Sendable (Msg.HelloOk, PeerTrust.LinkIdentity) throws -> Msg.PeerAuth
    ) async throws -> PeerLink {
        let link = try await open(host: host, port: port, timeout: timeout, tls: tls)
        do {
            let reply = try await link.request(.hello(Msg.Hello(token: "", name: name, nonce: nonce)), timeout: timeout)
            guard case .helloOk(let ok) = reply.message else {
                throw GridError(.unauthorized, "the peer at \(host):\(port) answered HELLO with \(reply.message.type)")
            }
            let auth = try prove(ok, try await link.identity(tls: tls))
            _ = try await link.request(.peerAuth(auth), timeout: timeout)
            link.state.withLock { $0.hello = ok }
        } catch {
            link.close()
            throw error
        }
        return link
    }

    /// An open connection with its reply handler, before any `HELLO`.
    private static func open(host: String, port: Int, timeout: Double, tls: PeerTLS?) async throws -> PeerLink {
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(.milliseconds(Int64(timeout * 1000)))
                .channelOption(.socketOption(.so_reuseaddr), value: 1)
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        if let tls { try channel.pipeline.syncOperations.addHandler(try tls.clientHandler()) }
                        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(GridFrameDecoder()))
                        try channel.pipeline.syncOperations.addHandler(GridFrameWriter())
                    }
                }
                .connect(host: host, port: port).get()
        } catch {
            throw GridError(.unreachable, "cannot reach the peer at \(host):\(port) (\(error)); is a worker listening there?")
        }
        let link = PeerLink(host: host, port: port, channel: channel)
        do {
            try await channel.eventLoop.submit {
                try channel.pipeline.syncOperations.addHandler(ReplyHandler(link: link))
            }.get()
        } catch {
            channel.close(promise: nil)
            throw GridError(.unreachable, "the connection to \(host):\(port) closed at once")
        }
        link.startSweeper()
        return link
    }

    /// Sends `message` (with bulk `payload`) and waits for its reply. An `ERROR` reply is thrown as a `GridError`.
    public func request(_ message: GridMessage, payload: ByteBuffer? = nil, timeout: Double = 120) async throws -> Reply {
        // Any Double a caller passes makes a label, never a trap (`Int(1e19)` traps).
        let label = "\(message.type) from \(host):\(port) in \(timeout.isFinite ? Int(min(max(timeout, 0), 1e9)) : 0) s"
        let id = try state.withLock { s -> Int in
            switch s.requests.begin(deadline: Self.clock() + timeout, label: label) {
            case .success(let id): return id
            case .failure(let closed): throw Self.error(of: closed.outcome)
            }
        }
        send(GridFrame(id: id, message, payload: payload), id: id)
        let reply: Reply = try await withCheckedThrowingContinuation { continuation in
            let ready = state.withLock { s in
                s.requests.wait(id, continuation, missing: .failure(GridError(.unreachable, "the request was dropped")))
            }
            if let ready { continuation.resume(with: ready) }
        }
        if case .error(let e) = reply.message { throw GridError(e.code, e.message) }
        return reply
    }

    /// Queues `frame` for the event loop, which writes every queued frame and flushes once.
    private func send(_ frame: GridFrame, id: Int) {
        let schedule = state.withLock { s -> Bool in
            s.outbox.append((id, frame))
            defer { s.draining = true }
            return !s.draining
        }
        guard schedule else { return }
        channel.eventLoop.execute { [self] in
            let frames = state.withLock { s -> [(id: Int, frame: GridFrame)] in
                defer {
                    s.outbox = []
                    s.draining = false
                }
                return s.outbox
            }
            for (id, frame) in frames {
                channel.write(frame).whenFailure { [weak self] error in
                    self?.resolve(id, .failure(GridError(.unreachable, "could not send to the peer: \(error)")))
                }
            }
            channel.flush()
        }
    }

    /// Hands a reply (or a failure) to request `id`, now or when it starts waiting.
    private func resolve(_ id: Int, _ result: Result<Reply, any Error>) {
        let waiting = state.withLock { $0.requests.resolve(id, result) }
        waiting?.resume(with: result)
    }

    private static func error(of outcome: Result<Reply, any Error>) -> any Error {
        if case .failure(let e) = outcome { return e }
        return GridError(.unreachable, "closed")
    }

    fileprivate func deliver(_ item: InboundFrame) {
        switch item {
        case .frame(let frame):
            resolve(frame.id, .success((frame.message, frame.payload)))
        case .invalid(let error, let id, let fatal):
            if let id, state.withLock({ $0.requests.isInFlight(id) }) {
                resolve(id, .failure(error))
            } else if fatal {
                fail(error)
                channel.close(promise: nil)
            }
        }
    }

    /// Fails every request, now and later, with `error`.
    fileprivate func fail(_ error: GridError) {
        let (waiters, outcome, sweeper) = state.withLock { s -> ([CheckedContinuation<Reply, any Error>], Result<Reply, any Error>, RepeatedTask?) in
            let waiters = s.requests.close(.failure(error))
            defer { s.sweeper = nil }
            return (waiters, s.requests.closed ?? .failure(error), s.sweeper)
        }
        sweeper?.cancel()
        for w in waiters { w.resume(with: outcome) }
    }

    /// One timer for the link: every 100 ms, requests whose time is up fail with `timeout`.
    private func startSweeper() {
        let task = channel.eventLoop.scheduleRepeatedTask(initialDelay: .milliseconds(100), delay: .milliseconds(100)) { [weak self] _ in
            self?.sweep()
        }
        let closed = state.withLock { s -> Bool in
            if s.requests.closed != nil { return true }
            s.sweeper = task
            return false
        }
        if closed { task.cancel() }
    }

    private func sweep() {
        let now = Self.clock()
        let overdue = state.withLock { $0.requests.overdue(now: now) }
        for (id, label) in overdue { resolve(id, .failure(GridError(.timeout, "no answer to \(label)"))) }
    }

    /// Whether the link can still be used.
    public var isOpen: Bool { state.withLock { $0.requests.closed == nil } && channel.isActive }

    /// Closes the connection; requests in flight fail.
    public func close() {
        fail(GridError(.unreachable, "closed"))
        channel.close(promise: nil)
    }
}

/// The link's end of the pipeline: replies go to their requests; a closed connection fails what still waits.
private final class ReplyHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = InboundFrame

    private let link: PeerLink

    init(link: PeerLink) { self.link = link }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        link.deliver(unwrapInboundIn(data))
    }

    func channelInactive(context: ChannelHandlerContext) {
        link.fail(GridError(.unreachable, "the peer at \(link.host):\(link.port) closed the connection"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        link.fail(GridError(.unreachable, "the connection to \(link.host):\(link.port) failed: \(error)"))
        context.close(promise: nil)
    }
}
