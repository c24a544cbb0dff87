public import GridCore

/// The peer port's side of a connection's opening, pure (issue 14): `HELLO {nonce}` → `HELLO_OK` (our credential and
/// a nonce of ours), then another peer's `PEER_AUTH` (its proof) → `OK`, or a person's `SESSION` (its certificate and
/// its proof for this connection) → `HELLO_OK {owner}`; then requests. A `HELLO {token}` (what clients older than
/// `SESSION` sent: the person's API token itself) is refused, and the token never looked at: a secret never goes to a
/// peer, and a session opened with one outlived the token's revocation. `PeerConnection` carries its actions out on
/// the event loop; the checks themselves (the credential and proof, the manager's `AUTH_CHECK {certificate}`) run off
/// it, and their results come back as events.
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
        /// A `HELLO {nonce}` (another peer's, or a person's): prove ourselves over its `nonce` (it was heard: the
        /// HELLO deadline no longer applies).
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

    /// The most frames kept while a check runs. Each is at most a stranger's line (16 KiB), and a check may wait on the
    /// manager: 16 keep a pending connection under 256 KiB (64 let 256 connections of one address hold 256 MiB). A
    /// client sends its requests once its session is open; this is for one that pipelines a few behind it.
    public static var maxHeld: Int { 16 }

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
            // Before the connection is open every refusal closes it: a stranger's lines that are not messages were each
            // answered and logged until its deadline.
            guard case .open = state else { return refuse(error, id: id ?? 0, close: true) }
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
            guard hello.token.isEmpty else { return refuse(Self.noTokens, id: frame.id, close: true) }
            guard let nonce = hello.nonce, !nonce.isEmpty else {
                return refuse(GridError(.badRequest, "HELLO needs a nonce (the peer proves itself over it)"), id: frame.id, close: true)
            }
            state = .checking([])
            return .greetPeer(nonce: nonce, id: frame.id)
        default:
            return refuse(GridError(.notAuthenticated, "send HELLO {nonce} before \(frame.message.type)"), id: frame.id, close: true)
        }
    }

    /// Why a `HELLO {token}` is refused.
    public static var noTokens: GridError {
        GridError(
            .unauthorized,
            "a peer takes no API token (a secret never goes to a peer): open a session with a certificate from your manager "
                + "(HELLO {nonce}, then SESSION), as campusgrid's own client does")
    }

    /// The proof (or the session) was checked: `answer` is what an accepted caller is told (`HELLO_OK`, `OK`). Returns the
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
