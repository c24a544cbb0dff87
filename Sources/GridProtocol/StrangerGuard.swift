import GridCore
public import NIOCore
import Synchronization

/// The shared owner of a listener's `StrangerTally`: each accepted connection asks it for a `StrangerGate`.
public final class StrangerGuard: Sendable {
    public let limits: StrangerLimits
    private let tally: Mutex<StrangerTally>

    public init(limits: StrangerLimits = StrangerLimits()) {
        self.limits = limits
        self.tally = Mutex(StrangerTally(limits: limits))
    }

    /// A gate for a new connection from `address`, or why it is refused.
    public func admit(address: String) -> Result<StrangerGate, StrangerTally.Refusal> {
        if let refusal = tally.withLock({ $0.admit(address) }) { return .failure(refusal) }
        return .success(StrangerGate(address: address, owner: self))
    }

    /// The counts now (for tests and metrics).
    public var snapshot: StrangerTally { tally.withLock { $0 } }

    fileprivate func authenticated(_ address: String) { tally.withLock { $0.authenticated(address) } }
    fileprivate func closed(_ address: String, wasAuthenticated: Bool) {
        tally.withLock { $0.closed(address, wasAuthenticated: wasAuthenticated) }
    }
}

/// One connection's authentication state, shared by its decoder (which refuses bulk bytes and long lines until it is
/// open), its `StrangerHandler` (which closes it at the deadline unless it is settled) and the shell that authenticates
/// it (which opens it, once `HELLO_OK` or the peer's `OK` is sent).
public final class StrangerGate: Sendable {
    /// `checking`: it said `HELLO` and this side is checking it (asking the manager, say); the HELLO deadline is for
    /// strangers who say nothing, so this side's own slowness under load does not close an honest client.
    /// `authenticated`: it is who it says, and owes one more step (a worker's `REGISTER` after `HELLO_OK`): full limits,
    /// but the deadline still stands; `taking`: the step came and this side is carrying it out (the grace of a check).
    private enum State: Equatable { case pending, checking, authenticated(awaiting: String, taking: Bool), open, closed }

    public let address: String
    private let owner: StrangerGuard?
    private let state: Mutex<State>

    init(address: String, owner: StrangerGuard?) {
        self.address = address
        self.owner = owner
        self.state = Mutex(.pending)
    }

    /// A gate that is open from the start: for connections this side opened itself.
    public static func trusted() -> StrangerGate {
        let gate = StrangerGate(address: "", owner: nil)
        gate.open()
        return gate
    }

    /// Whether it authenticated (full limits), settled or not.
    public var isOpen: Bool {
        state.withLock { s in
            switch s {
            case .open, .authenticated: true
            case .pending, .checking, .closed: false
            }
        }
    }

    /// Whether it authenticated and took every step it owed: the deadline no longer applies.
    public var isSettled: Bool { state.withLock { $0 == .open } }

    /// Whether it said `HELLO` and is being checked.
    public var isChecking: Bool { state.withLock { $0 == .checking } }

    /// The step an authenticated connection still owes (nil when it owes none or is not authenticated).
    public var awaiting: String? {
        state.withLock { s in
            if case .authenticated(let step, _) = s { return step }
            return nil
        }
    }

    /// Whether the step it owed came and is being carried out (`takingStep`).
    public var isTakingStep: Bool {
        state.withLock { s in
            if case .authenticated(_, true) = s { return true }
            return false
        }
    }

    /// It said `HELLO`; the check (bounded by its own timeout) has begun. Still no bulk bytes, still counted as pending.
    public func heard() {
        state.withLock { s in if s == .pending { s = .checking } }
    }

    /// The connection authenticated but owes `step` before it is settled: full limits now, and the handler closes it
    /// unless `open()` follows within the deadline's grace.
    public func authenticated(awaiting step: String) {
        let counted = state.withLock { s -> Bool in
            guard s == .pending || s == .checking else { return false }
            s = .authenticated(awaiting: step, taking: false)
            return true
        }
        if counted { owner?.authenticated(address) }
    }

    /// The step it owed came (a `REGISTER`) and this side carries it out: like a HELLO being checked, its own slowness
    /// (a store under load) does not close the connection before the grace ends.
    public func takingStep() {
        state.withLock { s in
            if case .authenticated(let step, false) = s { s = .authenticated(awaiting: step, taking: true) }
        }
    }

    /// The connection authenticated and owes nothing more: no deadline, full limits. Only the first call counts.
    public func open() {
        let counted = state.withLock { s -> Bool? in
            switch s {
            case .pending, .checking:
                s = .open
                return true
            case .authenticated:
                s = .open
                return false  // counted when it authenticated
            case .open, .closed:
                return nil
            }
        }
        if counted == true { owner?.authenticated(address) }
    }

    /// The connection closed. Only the first call counts.
    func close() {
        let was = state.withLock { s -> State? in
            guard s != .closed else { return nil }
            defer { s = .closed }
            return s
        }
        guard let was else { return }
        let wasAuthenticated: Bool
        switch was {
        case .open, .authenticated: wasAuthenticated = true
        case .pending, .checking, .closed: wasAuthenticated = false
        }
        owner?.closed(address, wasAuthenticated: wasAuthenticated)
    }
}

/// First in a listener's pipeline (after TLS): counts the connection with its `StrangerGuard`, closes it at once when
/// its address has too many, and closes it at the HELLO deadline unless its gate was opened by then. Bytes pass
/// through untouched.
public final class StrangerHandler: ChannelInboundHandler {
    public typealias InboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    private let admission: Result<StrangerGate, StrangerTally.Refusal>
    private let deadline: TimeAmount
    private var timer: Scheduled<Void>?
    private var started = false

    /// The gate of this connection (nil when it was refused).
    public var gate: StrangerGate? { try? admission.get() }

    /// How much longer than the deadline a connection whose HELLO is being checked may wait for the check.
    static let checkGrace = TimeAmount.seconds(60)

    public init(guard strangers: StrangerGuard, address: String) {
        self.admission = strangers.admit(address: address)
        self.deadline = .milliseconds(Int64(strangers.limits.helloDeadlineSeconds * 1000))
    }

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
        switch admission {
        case .failure(let refusal):
            refuse(context: context, "connection refused: \(refusal)")
        case .success(let gate):
            let seconds = deadline.nanoseconds / 1_000_000_000
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            timer = context.eventLoop.scheduleTask(in: deadline) {
                let (handler, context) = bound.value
                handler.atDeadline(gate, context: context, seconds: seconds, graced: false)
            }
        }
    }

    /// The deadline passed (or, `graced`, the grace of a HELLO being checked): closes the connection unless it settled.
    /// A HELLO being checked gets the grace (the check has a timeout of its own, and this side's slowness under load
    /// must not close an honest client); an authenticated connection that owes a step (a worker's `REGISTER`) gets
    /// one more deadline from when this is first seen, so at least a deadline after its `HELLO_OK`.
    private func atDeadline(_ gate: StrangerGate, context: ChannelHandlerContext, seconds: Int64, graced: Bool) {
        if gate.isSettled { return }
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        if let step = gate.awaiting {
            timer = context.eventLoop.scheduleTask(in: deadline) {
                let (handler, context) = bound.value
                if gate.isSettled { return }
                guard gate.isTakingStep else { return handler.refuse(context: context, "no \(step) within \(seconds) s of HELLO_OK") }
                handler.timer = context.eventLoop.scheduleTask(in: Self.checkGrace) {
                    if !gate.isSettled { handler.refuse(context: context, "the \(step) could not be taken in time") }
                }
            }
        } else if gate.isChecking, !graced {
            timer = context.eventLoop.scheduleTask(in: Self.checkGrace) {
                let (handler, context) = bound.value
                handler.atDeadline(gate, context: context, seconds: seconds, graced: true)
            }
        } else {
            refuse(context: context, graced ? "the HELLO could not be checked in time" : "no HELLO within \(seconds) s")
        }
    }

    /// How long a refusal's `ERROR` line may take to go out before the connection is closed without it.
    static let refusalWrite = TimeAmount.seconds(1)

    /// Says why (one `ERROR` line, as the protocol does) and closes: once the line is out, or after `refusalWrite`
    /// whether it is out or not. Before, the close waited for the write alone, and a write can wait for ever: under TLS
    /// until a handshake the stranger never begins, in plain text behind replies the stranger never reads. Such
    /// connections were never closed and kept their pending places, until every new connection was refused.
    private func refuse(context: ChannelHandlerContext, _ why: String) {
        var buffer = context.channel.allocator.buffer(capacity: 160)
        try? GridFrame(id: 0, .error(Msg.Error(GridError(.notAuthenticated, why)))).write(to: &buffer)
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        let closing = context.eventLoop.scheduleTask(in: Self.refusalWrite) { bound.value.close(promise: nil) }
        context.writeAndFlush(wrapOutboundOut(buffer)).whenComplete { _ in
            closing.cancel()
            bound.value.close(promise: nil)
        }
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.fireChannelRead(data)
    }

    public func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        gate?.close()
        context.fireChannelInactive()
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        gate?.close()
    }
}
