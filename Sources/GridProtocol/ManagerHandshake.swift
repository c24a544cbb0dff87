public import GridCore

/// The worker's side of a new connection to a manager, frame by frame (pure; issue 14): `HELLO` was sent; `HELLO_OK`
/// is answered with `REGISTER`; `REGISTERED` ends the handshake. What else may come, and what it means:
/// - `NOT_LEADER` (a follower of a grid of several managers): go to the manager it names;
/// - an `ERROR` that retrying cannot cure (a refused token, another protocol version): stop, and say why;
/// - any other `ERROR`, a malformed frame, a frame out of turn before `HELLO_OK`, or the connection closing: drop the
///   connection and try again (with backoff, by the link loop);
/// - a job or the peer list before `REGISTERED` (the manager's scheduler may run as soon as it counts the worker online):
///   kept, at most `maxEarly` of them, and handed over with `REGISTERED`; more than that is a misbehaving manager.
public struct ManagerHandshake: Sendable {
    public enum Step: Hashable, Sendable {
        case awaitingHelloOk
        case awaitingRegistered
        case registered
        case failed
    }

    public enum Action: Sendable {
        /// Adopt the identity in `HELLO_OK`, then send `REGISTER`.
        case register(Msg.HelloOk)
        /// A frame kept for after registration: read on.
        case readOn
        /// Registered: attach the connection, then handle the frames that came early, in order.
        case registered(Msg.Registered, early: [GridFrame])
        /// The manager does not lead: try the one it names (possibly unknown: empty).
        case followLeader(String)
        /// Refused for good: retrying will not help.
        case fatal(String)
        /// Drop this connection and try again.
        case reconnect(String)
    }

    public static let maxEarly = 64
    /// Error codes that no retry cures.
    public static let fatalCodes: Set<GridError.Code> = [.unauthorized, .forbidden, .versionMismatch, .notAuthenticated]

    public private(set) var step: Step = .awaitingHelloOk
    private var early: [GridFrame] = []

    public init() {}

    public mutating func received(_ frame: GridFrame) -> Action {
        switch (step, frame.message) {
        case (.registered, _), (.failed, _):
            return fail("the handshake is over")
        case (_, .notLeader(let n)):
            step = .failed
            return .followLeader(n.leader)
        case (_, .error(let e)):
            step = .failed
            return Self.fatalCodes.contains(e.code) ? .fatal(e.message) : .reconnect("the manager said: \(e.message)")
        case (.awaitingHelloOk, .helloOk(let ok)):
            step = .awaitingRegistered
            return .register(ok)
        case (.awaitingHelloOk, let other):
            return fail("the manager sent \(other.type) before HELLO_OK")
        case (.awaitingRegistered, .registered(let r)):
            step = .registered
            defer { early = [] }
            return .registered(r, early: early)
        case (.awaitingRegistered, _):
            guard early.count < Self.maxEarly else { return fail("the manager sent more than \(Self.maxEarly) frames before REGISTERED") }
            early.append(frame)
            return .readOn
        }
    }

    /// A frame that could not be read.
    public mutating func invalid(_ error: GridError) -> Action { fail("bad frame from the manager: \(error.message)") }

    /// The connection closed (or the handshake's time ran out) before `REGISTERED`.
    public mutating func closed() -> Action {
        step == .registered ? .reconnect("the connection closed") : fail("the manager closed the connection during the handshake")
    }

    private mutating func fail(_ reason: String) -> Action {
        step = .failed
        early = []
        return .reconnect(reason)
    }
}
