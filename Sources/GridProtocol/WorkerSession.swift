public import GridCore

/// The manager's side of one worker connection, as a pure state machine.
///
/// The shell feeds it every decoded frame (or decoding failure) and the results of token checks, and carries out the
/// one action each event returns. It enforces the order `HELLO → REGISTER → …` and turns bad input into `ERROR`s.
public enum WorkerSession {
    /// Who is on the other end, once the token was checked.
    public struct Identity: Hashable, Sendable {
        public var workerId: WorkerID
        public var name: String
        public var ownerId: UserID
        public var ownerName: String
        /// The worker's own Ed25519 public key from its `HELLO` (what its peer credentials name); nil: it offers no
        /// peer services, or predates them.
        public var peerKey: String?
        /// The SHA-256 of the join token it said `HELLO` with: revoking that token lets it go (`ManagerCore`).
        public var tokenHash: String?
        public init(workerId: WorkerID, name: String, ownerId: UserID, ownerName: String, peerKey: String? = nil, tokenHash: String? = nil) {
            self.workerId = workerId
            self.name = name
            self.ownerId = ownerId
            self.ownerName = ownerName
            self.peerKey = peerKey
            self.tokenHash = tokenHash
        }
    }

    public struct StateMachine: Sendable {
        public enum State: Hashable, Sendable {
            case awaitingHello
            case authenticating
            case awaitingRegister(Identity)
            case active(Identity)
            case closed
        }

        public enum Action: Hashable, Sendable {
            /// Send this message (id echoes the request's).
            case send(GridMessage, id: Int)
            /// Check the token of this `HELLO`, then call `authenticated` or `authenticationFailed`.
            case authenticate(Msg.Hello, id: Int)
            /// Record the worker's resources and running jobs, answer `REGISTERED`.
            case register(Identity, Msg.Register, id: Int)
            /// A message of a registered worker for the manager's core.
            case deliver(Identity, GridMessage, id: Int)
            /// Send this error, then close the connection.
            case closeWithError(GridError, id: Int)
            /// Answer `ERROR` (a claim out of range): log it; the connection stays up.
            case refuse(GridError, id: Int)
            /// Close without a word (the peer closed, or we already said why).
            case close
            case none
        }

        public private(set) var state: State = .awaitingHello
        public let heartbeatSeconds: Double
        /// The manager's public key, handed to every worker in `HELLO_OK` (it signs peer credentials and tickets).
        public let managerKey: String?
        /// The peer key of the `HELLO` being checked.
        private var helloPeerKey: String?

        public init(heartbeatSeconds: Double, managerKey: String? = nil) {
            self.heartbeatSeconds = heartbeatSeconds
            self.managerKey = managerKey
        }

        /// A decoded message arrived.
        public mutating func received(_ message: GridMessage, id: Int) -> Action {
            switch (state, message) {
            case (.closed, _):
                return .none
            case (_, .ping):
                return .send(.pong, id: id)
            case (.awaitingHello, .hello(let hello)):
                guard ProtocolVersion.supported.contains(hello.version) else {
                    state = .closed
                    return .closeWithError(
                        GridError(
                            .versionMismatch,
                            "protocol version \(hello.version) is not supported; this manager speaks \(ProtocolVersion.supported)"
                        ),
                        id: id
                    )
                }
                state = .authenticating
                helloPeerKey = hello.peerKey.flatMap { $0.isEmpty || $0.utf8.count > 128 ? nil : $0 }
                return .authenticate(hello, id: id)
            case (.awaitingHello, _), (.authenticating, _):
                state = .closed
                return .closeWithError(GridError(.notAuthenticated, "send HELLO with a token before \(message.type)"), id: id)
            case (.awaitingRegister, .register) where WorkerClaims.problem(message) != nil,
                (.active, .loadUpdate) where WorkerClaims.problem(message) != nil,
                (.active, .jobStarted) where WorkerClaims.problem(message) != nil,
                (.active, .jobLog) where WorkerClaims.problem(message) != nil,
                (.active, .jobDone) where WorkerClaims.problem(message) != nil:
                // A figure out of range: refused with the reason, the connection stays up, nothing is computed from it.
                return .refuse(WorkerClaims.problem(message)!, id: id)
            case (.awaitingRegister(let who), .register(let reg)):
                state = .active(who)
                return .register(who, reg, id: id)
            case (.awaitingRegister, _):
                return .send(.error(Msg.Error(GridError(.badRequest, "send REGISTER before \(message.type)"))), id: id)
            case (.active, .hello), (.active, .register):
                return .send(.error(Msg.Error(GridError(.badRequest, "\(message.type) was already received"))), id: id)
            case (.active(let who), _):
                return .deliver(who, message, id: id)
            }
        }

        /// The decoder refused some input.
        ///
        /// Before `HELLO_OK` every refusal closes the connection: a stranger that sent a line that is not a message
        /// (`x\n`, over and over) was answered with an `ERROR` and a log line for each, until its deadline.
        public mutating func invalid(_ error: GridError, id: Int?, fatal: Bool) -> Action {
            switch state {
            case .closed: return .none
            case .awaitingHello, .authenticating:
                state = .closed
                return .closeWithError(error, id: id ?? 0)
            case .awaitingRegister, .active: break
            }
            if fatal {
                state = .closed
                return .closeWithError(error, id: id ?? 0)
            }
            return .send(.error(Msg.Error(error)), id: id ?? 0)
        }

        /// The token of the `HELLO` was good.
        public mutating func authenticated(_ identity: Identity, id: Int) -> Action {
            guard case .authenticating = state else { return .none }
            var identity = identity
            if identity.peerKey == nil { identity.peerKey = helloPeerKey }
            state = .awaitingRegister(identity)
            return .send(
                .helloOk(
                    Msg.HelloOk(
                        version: ProtocolVersion.current, workerId: identity.workerId, owner: identity.ownerName,
                        heartbeatSeconds: heartbeatSeconds, managerKey: managerKey)),
                id: id
            )
        }

        /// The token of the `HELLO` was refused.
        public mutating func authenticationFailed(_ error: GridError, id: Int) -> Action {
            guard case .authenticating = state else { return .none }
            state = .closed
            return .closeWithError(error, id: id)
        }

        /// The connection ended.
        public mutating func closed() -> Identity? {
            defer { state = .closed }
            switch state {
            case .active(let who), .awaitingRegister(let who): return who
            default: return nil
            }
        }
    }
}
