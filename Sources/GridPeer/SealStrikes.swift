/// How much signature checking each peer has made this peer waste lately: the signatures it checked for entries that
/// then failed (`MEM_SYNC`). Pure: the caller gives the time.
///
/// Any proven peer (any student's worker) may send `MEM_SYNC`, and every entry it sends costs a signature check or
/// more before it can be refused: 1,000 forged entries a batch, batch after batch, would keep a core busy. An honest
/// peer wastes none (it relays only entries it checked itself, and the checks are the same everywhere), so a peer
/// gets `allowed` wasted checks a `window`, and all peers together `allowedInAll`; past that a peer that wasted any is
/// refused unchecked until the window ends. Good entries are never counted: replication at any rate costs what it
/// must. A peer that has wasted nothing always gets `grace` checks, so honest peers are never refused.
///
/// Checks run off the actor, so batches of one peer overlap: each `reserve`s what it may spend before it starts and
/// `settle`s what it spent after, so overlapping batches share one allowance (a reservation counts against the
/// allowance while it lasts, never as waste).
public struct SealStrikes: Sendable {
    /// Wasted signature checks a peer may cost in a window (about 50–100 ms of one core).
    public static let allowed = 1_000
    /// Wasted checks all peers together may cost in a window (one account may run hundreds of workers).
    public static let allowedInAll = 10_000
    /// What a peer that has wasted nothing in the window may always spend.
    public static let grace = 16
    /// The window, in seconds.
    public static let window: Double = 60
    /// The most peers tracked at once; past it, windows that have ended are forgotten, then the oldest.
    public static let tracked = 4_096

    private var peers: [String: (start: Double, wasted: Int)] = [:]
    private var all: (start: Double, wasted: Int) = (-.infinity, 0)
    /// Checks reserved by batches being checked now, per peer and in all (not windowed: `settle` gives them back).
    private var inFlight: [String: Int] = [:]
    private var inFlightAll = 0

    public init() {}

    /// How many more wasted checks `peer` may cost now (0: refuse its entries unchecked). Never 0 for a peer that has
    /// wasted nothing in its window.
    public func allowance(of peer: String, now: Double) -> Int {
        let mine = wasted(by: peer, now: now)
        let inAll = Self.inWindow(all.start, now: now) ? all.wasted : 0
        let left = min(
            Self.allowed.subtractingSaturated(mine.addingSaturated(inFlight[peer] ?? 0)),
            Self.allowedInAll.subtractingSaturated(inAll.addingSaturated(inFlightAll)))
        return mine == 0 ? max(left, Self.grace) : max(0, left)
    }

    /// When `peer`'s current window ends (when it may send again, once its allowance is spent): the later of its own
    /// and the one of all peers; nil when it has wasted nothing in its window.
    public func windowEnds(for peer: String, now: Double) -> Double? {
        guard let p = peers[peer], Self.inWindow(p.start, now: now) else { return nil }
        let own = p.start + Self.window
        return Self.inWindow(all.start, now: now) ? max(own, all.start + Self.window) : own
    }

    /// Takes up to `wanted` of `peer`'s allowance before a batch is checked (checks of failed entries stop there);
    /// returns what was granted. Every reservation is settled (`settle`).
    public mutating func reserve(_ wanted: Int, by peer: String, now: Double) -> Int {
        let granted = min(max(0, wanted), allowance(of: peer, now: now))
        inFlight[peer, default: 0] += granted
        inFlightAll += granted
        return granted
    }

    /// After a batch: gives back the `reserved` checks and counts the `spent` ones as wasted.
    public mutating func settle(reserved: Int, spent: Int, by peer: String, now: Double) {
        let held = inFlight[peer] ?? 0
        let back = min(max(0, reserved), held)
        inFlight[peer] = held - back == 0 ? nil : held - back
        inFlightAll = max(0, inFlightAll - back)
        record(spent, by: peer, now: now)
    }

    /// Counts `wasted` checks against `peer` (negative counts as none).
    public mutating func record(_ wasted: Int, by peer: String, now: Double) {
        guard wasted > 0 else { return }
        if Self.inWindow(all.start, now: now) {
            all.wasted = all.wasted.addingSaturated(wasted)
        } else {
            all = (now, wasted)
        }
        if let p = peers[peer], Self.inWindow(p.start, now: now) {
            peers[peer] = (p.start, p.wasted.addingSaturated(wasted))
            return
        }
        if peers.count >= Self.tracked, peers[peer] == nil {
            peers = peers.filter { Self.inWindow($0.value.start, now: now) }
            if peers.count >= Self.tracked, let oldest = peers.min(by: { $0.value.start < $1.value.start })?.key { peers[oldest] = nil }
        }
        peers[peer] = (now, wasted)
    }

    /// How many peers it tracks now.
    public var count: Int { peers.count }

    private func wasted(by peer: String, now: Double) -> Int {
        guard let p = peers[peer], Self.inWindow(p.start, now: now) else { return 0 }
        return p.wasted
    }

    /// A window runs from its start for `window` seconds; a clock that stepped back starts a new one (`now` before the
    /// start), and so does a NaN time.
    private static func inWindow(_ start: Double, now: Double) -> Bool { now >= start && now < start + window }
}

extension Int {
    fileprivate func addingSaturated(_ n: Int) -> Int {
        let (sum, overflow) = addingReportingOverflow(n)
        return overflow ? (n > 0 ? .max : .min) : sum
    }

    fileprivate func subtractingSaturated(_ n: Int) -> Int {
        let (difference, overflow) = subtractingReportingOverflow(n)
        return overflow ? (n > 0 ? .min : .max) : difference
    }
}
