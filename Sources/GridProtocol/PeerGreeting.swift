public import GridCore

/// The peer port's side of a connection's opening, pure (issue 14): `HELLO {nonce}` → `HELLO_OK` (our credential and
/// a nonce of ours), then another peer's `PEER_AUTH` (its proof) → `OK`, or a person's `SESSION` (its certificate and
/// its proof for this connection) → `HELLO_OK {owner}`; or an older client's `HELLO {token}`; then requests. `PeerConnection`
/// carries its actions out on the event loop; the checks themselves (the manager's `AUTH_CHECK`, the credential and
/// proof) run off it, and their results come back as events.
///
/// Before the connection is open only `HELLO` and `PING` are answered; anything else is refused and the connection
/// closed. Frames that come while a check runs wait their turn, at most `maxHeld` of them: a stranger cannot make the
/// port keep more.
public struct PeerGreeting<Caller: Sendable>: Sendable {
    enum State: Sendable {
        case waiting
        /// A check is under way; frames that came meanwhile, in order.
        case checking([InboundFrame])
        /// The caller said `HELLO` with a nonce and got our credential; its `PEER_AUTH` (a peer) or `SESSION` (a
        /// person) must answer our `nonce`.
        case awaitingProof(nonce: String)
        case open(Caller)
        case closing
    }

    public enum Action: Sendable {
        /// Nothing to do (a frame kept for later, or the connection is closing).
        case none
        case reply(GridFrame)
        /// Reply, then close the connection.
        case replyAndClose(GridFrame)
        /// A person's `HELLO`: check its token (it was heard: the HELLO deadline no longer applies).
        case checkToken(String, id: Int)
        /// Another peer's `HELLO`: prove ourselves over its `nonce`.
        case greetPeer(nonce: String, id: Int)
        /// The other peer's `PEER_AUTH`, to check against our `nonce`.
        case checkProof(Msg.PeerAuth, nonce: String, id: Int)
        /// A person's `SESSION`, to check against our `nonce`.
        case checkSession(Msg.Session, nonce: String, id: Int)
        /// The caller is who it says: open the connection (full limits), then send this.
        case open(GridFrame)
        /// A request of the authenticated caller.
        case deliver(GridFrame, Caller)
    }

    /// The most frames kept while a check runs.
    public static var maxHeld: Int { 64 }

    private(set) var state = State.waiting

    public init() {}

    public var isChecking: Bool {
        if case .checking = state { return true }
        return false
    }

    public var isClosing: Bool {
        if case .closing = state { return true }
        return false
    }

    /// The connection is closing (an error, the server stopping): nothing more is done.
    public mutating func close() { state = .closing }

    /// One item of input.
    public mutating func received(_ item: InboundFrame) -> Action {
        switch state {
        case .closing:
            return .none
        case .checking(var held):
            guard held.count < Self.maxHeld else {
                state = .closing
                let e = GridError(.badRequest, "more than \(Self.maxHeld) requests before HELLO was answered")
                return .replyAndClose(GridFrame(id: 0, .error(Msg.Error(e))))
            }
            held.append(item)
            state = .checking(held)
            return .none
        case .awaitingProof(let nonce):
            guard case .frame(let frame) = item else {
                return refuse(GridError(.notAuthenticated, "send PEER_AUTH (a peer) or SESSION (a person) after HELLO_OK"), id: 0, close: true)
            }
            switch frame.message {
            case .peerAuth(let proof):
                state = .checking([])
                return .checkProof(proof, nonce: nonce, id: frame.id)
            case .session(let session):
                state = .checking([])
                return .checkSession(session, nonce: nonce, id: frame.id)
            default:
                return refuse(GridError(.notAuthenticated, "send PEER_AUTH (a peer) or SESSION (a person) after HELLO_OK"), id: frame.id, close: true)
            }
        case .waiting, .open:
            break
        }
        switch item {
        case .invalid(let error, let id, let fatal):
            return refuse(error, id: id ?? 0, close: fatal)
        case .frame(let frame):
            guard case .open(let caller) = state else { return greet(frame) }
            if case .hello = frame.message { return refuse(GridError(.badRequest, "HELLO was already received"), id: frame.id, close: false) }
            return .deliver(frame, caller)
        }
    }

    /// Before the connection is open: `HELLO` or `PING` only.
    private mutating func greet(_ frame: GridFrame) -> Action {
        switch frame.message {
        case .ping:
            return .reply(GridFrame(id: frame.id, .pong))
        case .hello(let hello):
            guard ProtocolVersion.supported.contains(hello.version) else {
                let e = GridError(.versionMismatch, "protocol version \(hello.version) is not supported (\(ProtocolVersion.supported))")
                return refuse(e, id: frame.id, close: true)
            }
            state = .checking([])
            if let nonce = hello.nonce, hello.token.isEmpty { return .greetPeer(nonce: nonce, id: frame.id) }
            return .checkToken(hello.token, id: frame.id)
        default:
            return refuse(GridError(.notAuthenticated, "send HELLO with a token before \(frame.message.type)"), id: frame.id, close: true)
        }
    }

    /// The token (or the proof) was checked: `answer` is what an accepted caller is told (`HELLO_OK`, `OK`). Returns the
    /// action, and the frames that waited meanwhile, to be received again in order (none if refused).
    public mutating func checked(_ result: Result<(Caller, GridMessage), GridError>, id: Int) -> (Action, held: [InboundFrame]) {
        guard case .checking(let held) = state else { return (.none, []) }
        switch result {
        case .success(let (caller, answer)):
            state = .open(caller)
            return (.open(GridFrame(id: id, answer)), held)
        case .failure(let e):
            return (refuse(e, id: id, close: true), [])
        }
    }

    /// Our answer to a peer's `HELLO {nonce}` is ready (our credential and proof, and our own nonce it must answer).
    public mutating func greeted(_ result: Result<Msg.HelloOk, GridError>, id: Int) -> (Action, held: [InboundFrame]) {
        guard case .checking(let held) = state else { return (.none, []) }
        switch result {
        case .success(let ok):
            state = .awaitingProof(nonce: ok.nonce ?? "")
            return (.reply(GridFrame(id: id, .helloOk(ok))), held)
        case .failure(let e):
            return (refuse(e, id: id, close: true), [])
        }
    }

    private mutating func refuse(_ error: GridError, id: Int, close: Bool) -> Action {
        let frame = GridFrame(id: id, .error(Msg.Error(error)))
        if close {
            state = .closing
            return .replyAndClose(frame)
        }
        return .reply(frame)
    }
}
