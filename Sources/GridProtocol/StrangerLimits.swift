/// What a connection that has not authenticated yet (no `HELLO_OK`, or for a peer no accepted `PEER_AUTH`) may cost
/// the side that accepted it. A stranger gets a deadline, a short line, no bulk bytes, and a place in a per-address
/// count; whatever it does beyond that is refused and closed. Defaults fit a campus: a lab behind one NAT address may
/// open many connections at once, but never hold unbounded ones open without a token.
public struct StrangerLimits: Sendable, Hashable {
    /// Seconds a connection may stay open without authenticating; then it is closed.
    public var helloDeadlineSeconds: Double
    /// The longest line accepted before authentication (a `HELLO` is a few hundred bytes).
    public var maxLineBytes: Int
    /// Connections from one address that have not authenticated yet; one more is closed at once. 256: a class behind
    /// one NAT address, or every client of a loaded machine on loopback, may open that many at once while the manager
    /// checks their tokens.
    public var maxPendingPerAddress: Int
    /// Connections from one address altogether, authenticated or not.
    public var maxOpenPerAddress: Int

    public init(helloDeadlineSeconds: Double = 10, maxLineBytes: Int = 16 << 10, maxPendingPerAddress: Int = 256, maxOpenPerAddress: Int = 1024) {
        self.helloDeadlineSeconds = helloDeadlineSeconds
        self.maxLineBytes = maxLineBytes
        self.maxPendingPerAddress = maxPendingPerAddress
        self.maxOpenPerAddress = maxOpenPerAddress
    }
}

/// The per-address count of open connections behind `StrangerLimits`: pure, no clock, no I/O. Each connection is
/// `admit`ted (or refused), becomes `authenticated` at most once, and is `closed` exactly once.
public struct StrangerTally: Sendable, Hashable {
    /// Why a connection was refused.
    public enum Refusal: Error, Sendable, Hashable, CustomStringConvertible {
        case tooManyPending(Int)
        case tooManyOpen(Int)

        public var description: String {
            switch self {
            case .tooManyPending(let n): "\(n) connections from this address have not said HELLO yet"
            case .tooManyOpen(let n): "\(n) connections from this address are open"
            }
        }
    }

    public let limits: StrangerLimits
    /// Not yet authenticated, per address.
    public private(set) var pending: [String: Int] = [:]
    /// Open (authenticated or not), per address.
    public private(set) var open: [String: Int] = [:]

    public init(limits: StrangerLimits) {
        self.limits = limits
    }

    /// A new connection from `address`: counted and nil, or refused (and not counted).
    public mutating func admit(_ address: String) -> Refusal? {
        let p = pending[address, default: 0]
        let o = open[address, default: 0]
        if p >= limits.maxPendingPerAddress { return .tooManyPending(p) }
        if o >= limits.maxOpenPerAddress { return .tooManyOpen(o) }
        pending[address] = p + 1
        open[address] = o + 1
        return nil
    }

    /// A counted connection from `address` authenticated: it no longer counts as pending.
    public mutating func authenticated(_ address: String) {
        Self.decrement(&pending, address)
    }

    /// A counted connection from `address` closed; `wasAuthenticated` says whether `authenticated` was called for it.
    public mutating func closed(_ address: String, wasAuthenticated: Bool) {
        if !wasAuthenticated { Self.decrement(&pending, address) }
        Self.decrement(&open, address)
    }

    private static func decrement(_ table: inout [String: Int], _ key: String) {
        guard let n = table[key] else { return }
        table[key] = n > 1 ? n - 1 : nil
    }
}
