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
    /// Connections that have not authenticated yet, from every address together: strangers spread over many
    /// addresses (an IPv6 /64 counts as one) still hold at most this many lines and deadlines (4,096 × 16 KiB is
    /// 64 MiB at worst). Past it, a new one is closed at once until some authenticate or time out.
    public var maxPendingInAll: Int

    public init(
        helloDeadlineSeconds: Double = 10, maxLineBytes: Int = 16 << 10, maxPendingPerAddress: Int = 256, maxOpenPerAddress: Int = 1024,
        maxPendingInAll: Int = 4096
    ) {
        self.helloDeadlineSeconds = helloDeadlineSeconds
        self.maxLineBytes = maxLineBytes
        self.maxPendingPerAddress = maxPendingPerAddress
        self.maxOpenPerAddress = maxOpenPerAddress
        self.maxPendingInAll = maxPendingInAll
    }
}

/// The per-address count of open connections behind `StrangerLimits`: pure, no clock, no I/O. Each connection is
/// `admit`ted (or refused), becomes `authenticated` at most once, and is `closed` exactly once. Addresses are counted
/// by `ClientAddress.key` (an IPv6 /64 as one).
public struct StrangerTally: Sendable, Hashable {
    /// Why a connection was refused.
    public enum Refusal: Error, Sendable, Hashable, CustomStringConvertible {
        case tooManyPending(Int)
        case tooManyOpen(Int)
        case tooManyPendingInAll(Int)

        public var description: String {
            switch self {
            case .tooManyPending(let n): "\(n) connections from this address have not said HELLO yet"
            case .tooManyOpen(let n): "\(n) connections from this address are open"
            case .tooManyPendingInAll(let n): "\(n) connections have not said HELLO yet"
            }
        }
    }

    public let limits: StrangerLimits
    /// Not yet authenticated, per address.
    public private(set) var pending: [String: Int] = [:]
    /// Open (authenticated or not), per address.
    public private(set) var open: [String: Int] = [:]
    /// Not yet authenticated, from every address.
    public private(set) var pendingInAll = 0

    public init(limits: StrangerLimits) {
        self.limits = limits
    }

    /// A new connection from `address`: counted and nil, or refused (and not counted).
    public mutating func admit(_ address: String) -> Refusal? {
        let key = ClientAddress.key(address)
        let p = pending[key, default: 0]
        let o = open[key, default: 0]
        if p >= limits.maxPendingPerAddress { return .tooManyPending(p) }
        if o >= limits.maxOpenPerAddress { return .tooManyOpen(o) }
        if pendingInAll >= limits.maxPendingInAll { return .tooManyPendingInAll(pendingInAll) }
        pending[key] = p + 1
        open[key] = o + 1
        pendingInAll += 1
        return nil
    }

    /// A counted connection from `address` authenticated: it no longer counts as pending.
    public mutating func authenticated(_ address: String) {
        if Self.decrement(&pending, ClientAddress.key(address)) { pendingInAll -= 1 }
    }

    /// A counted connection from `address` closed; `wasAuthenticated` says whether `authenticated` was called for it.
    public mutating func closed(_ address: String, wasAuthenticated: Bool) {
        let key = ClientAddress.key(address)
        if !wasAuthenticated, Self.decrement(&pending, key) { pendingInAll -= 1 }
        Self.decrement(&open, key)
    }

    /// Whether there was one to take away.
    @discardableResult
    private static func decrement(_ table: inout [String: Int], _ key: String) -> Bool {
        guard let n = table[key] else { return false }
        table[key] = n > 1 ? n - 1 : nil
        return true
    }
}
