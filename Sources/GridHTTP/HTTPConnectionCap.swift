public import GridProtocol
public import HummingbirdCore
public import Logging
public import NIOCore
import Synchronization

/// An HTTP port's bounds on connections: the manager's (the grid port has its own, `StrangerGuard`) and a worker's
/// status page: how many one client address
/// (an IPv6 /64 as one) may hold open, and how many all together; one more is closed at once. With Hummingbird's idle
/// timeout (`idleTimeout`: no request byte for that long closes a connection that is not answering
/// one) they bound what strangers that connect and say nothing can hold. Before, the port had neither: every silent
/// connection (or one that never began its TLS handshake) stayed open for good, and enough of them used up the
/// manager's descriptors, the grid port's and its database's included.
public final class HTTPConnectionCap: Sendable {
    /// Connections per address and in all. A class behind one NAT address opens several per browser, and a page's live
    /// regions hold one each: 512 per address leaves them room.
    public static let limits = StrangerLimits(maxPendingPerAddress: 512, maxOpenPerAddress: 512, maxPendingInAll: 8_192)
    /// How long a connection may go without a request byte while no answer is being written, by default.
    public static let defaultIdleSeconds: Double = 30

    private let tally: Mutex<StrangerTally>
    /// This cap's idle timeout.
    public let idleTimeout: TimeAmount

    public init(limits: StrangerLimits = HTTPConnectionCap.limits, idleSeconds: Double = HTTPConnectionCap.defaultIdleSeconds) {
        tally = Mutex(StrangerTally(limits: limits))
        let seconds = idleSeconds.isFinite ? min(max(idleSeconds, 0.1), 86_400) : Self.defaultIdleSeconds
        idleTimeout = .milliseconds(Int64(seconds * 1000))
    }

    /// Counts a connection from `address`; false (not counted) when it is one too many.
    func admit(_ address: String) -> Bool { tally.withLock { $0.admit(address) == nil } }

    /// A counted connection from `address` closed.
    func closed(_ address: String) { tally.withLock { $0.closed(address, wasAuthenticated: false) } }

    /// Open connections now, in all.
    public var open: Int { tally.withLock { $0.pendingInAll } }
}

/// First in an HTTP connection's pipeline: counts it with its `HTTPConnectionCap`, or closes it at once when the cap
/// is reached; uncounts it when it closes.
public final class HTTPConnectionCapHandler: ChannelInboundHandler {
    public typealias InboundIn = NIOAny
    private let cap: HTTPConnectionCap
    private var counted: String?
    private var started = false

    public init(cap: HTTPConnectionCap) { self.cap = cap }

    public func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { start(context: context) }
    }

    public func channelActive(context: ChannelHandlerContext) {
        start(context: context)
        context.fireChannelActive()
    }

    private func start(context: ChannelHandlerContext) {
        guard !started else { return }
        started = true
        // Loopback is the machine's own (a reverse proxy there makes everyone one address): counted in all, each
        // connection on its own, as the other limits leave it out.
        let ip = context.channel.remoteAddress?.ipAddress ?? "?"
        let address = ClientAddress.isLoopback(ip) ? "loopback#\(ObjectIdentifier(self).hashValue)" : ip
        if cap.admit(address) { counted = address } else { context.close(promise: nil) }
    }

    public func channelInactive(context: ChannelHandlerContext) {
        release()
        context.fireChannelInactive()
    }

    public func handlerRemoved(context: ChannelHandlerContext) { release() }

    private func release() {
        if let address = counted { cap.closed(address) }
        counted = nil
    }
}

/// A child channel that puts a handler of its own (one per connection, made by `front`) in front of `Base`'s: the
/// connection cap, or the HTTPS port's answer to plain HTTP.
public struct FrontedHTTPChannel<Base: ServerChildChannel>: ServerChildChannel, HTTPChannelHandler where Base: HTTPChannelHandler {
    public typealias Value = Base.Value
    let front: @Sendable () -> any ChannelHandler
    let base: Base

    public init(front: @escaping @Sendable () -> any ChannelHandler, base: Base) {
        self.front = front
        self.base = base
    }

    public func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(front())
        }.flatMap {
            base.setup(channel: channel, logger: logger)
        }
    }

    public func handle(value: Base.Value, logger: Logger) async {
        await base.handle(value: value, logger: logger)
    }

    public var responder: HTTPChannelHandler.Responder { base.responder }
}

extension HTTPServerBuilder {
    /// Plain HTTP/1 with the connection cap and the idle timeout.
    public static func cappedHTTP1(cap: HTTPConnectionCap) -> HTTPServerBuilder {
        .init { responder in
            FrontedHTTPChannel(
                front: { HTTPConnectionCapHandler(cap: cap) },
                base: HTTP1Channel(responder: responder, configuration: .init(idleTimeout: cap.idleTimeout)))
        }
    }
}
