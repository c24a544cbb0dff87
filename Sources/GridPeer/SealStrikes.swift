/// How much signature checking each peer has made this peer waste lately: the signatures it checked for entries that
/// then failed (`MEM_SYNC`). Pure: the caller gives the time.
///
/// Any proven peer (any student's worker) may send `MEM_SYNC`, and every entry it sends costs a signature check or
/// more before it can be refused: 1,000 forged entries a batch, batch after batch, would keep a core busy. An honest
/// peer wastes none (it relays only entries it checked itself, and the checks are the same everywhere), so a peer
/// gets `allowed` wasted checks a `window`; past that its `MEM_SYNC`s are refused unchecked until the window ends.
/// Good entries are never counted: replication at any rate costs what it must.
public struct SealStrikes: Sendable {
    /// Wasted signature checks a peer may cost in a window (about 50–100 ms of one core).
    public static let allowed = 1_000
    /// The window, in seconds.
    public static let window: Double = 60
    /// The most peers tracked at once; past it, windows that have ended are forgotten, then the oldest.
    public static let tracked = 4_096

    private var peers: [String: (start: Double, wasted: Int)] = [:]

    public init() {}

    /// How many more wasted checks `peer` may cost in its current window (0: refuse its entries unchecked).
    public func allowance(of peer: String, now: Double) -> Int {
        guard let p = peers[peer], Self.inWindow(p.start, now: now) else { return Self.allowed }
        return max(0, Self.allowed - p.wasted)
    }

    /// When `peer`'s current window ends (when it may send again, once its allowance is spent), or nil when it has
    /// none.
    public func windowEnds(for peer: String, now: Double) -> Double? {
        guard let p = peers[peer], Self.inWindow(p.start, now: now) else { return nil }
        return p.start + Self.window
    }

    /// Counts `wasted` checks against `peer` (negative counts as none).
    public mutating func record(_ wasted: Int, by peer: String, now: Double) {
        guard wasted > 0 else { return }
        if let p = peers[peer], Self.inWindow(p.start, now: now) {
            peers[peer] = (p.start, p.wasted.addingReportingOverflow(wasted).overflow ? Int.max : p.wasted + wasted)
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

    /// A window runs from its start for `window` seconds; a clock that stepped back starts a new one (`now` before the
    /// start), and so does a NaN time.
    private static func inWindow(_ start: Double, now: Double) -> Bool { now >= start && now < start + window }
}
