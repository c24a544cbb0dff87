public import GridCore

/// Which manager leads the grid, decided from the lease row (issue 16). Pure: time and the row come in as events, the
/// shell carries out the action each returns (a compare-and-set on the row, starting or ending a term).
///
/// A manager leads while it holds the row: its `holder` is this manager and its `epoch` is the one it won. It renews
/// the row every tick by a compare-and-set expecting its own epoch, so a manager that took the row over (a higher
/// epoch) makes the renewal fail and the old leader steps down. A follower takes the row once it has expired (by the
/// follower's clock), with the next epoch. Every write of a term is fenced by its epoch in the store, so a leader that
/// learns late that it was deposed cannot commit anything in the meantime: this machine only decides when to try.
public struct Leadership: Sendable {
    /// This manager, as it writes itself into the row.
    public struct Me: Hashable, Sendable {
        public var id: String
        public var workerAddress: String
        public var apiURL: String
        public init(id: String, workerAddress: String, apiURL: String) {
            self.id = id
            self.workerAddress = workerAddress
            self.apiURL = apiURL
        }
    }

    public enum Event: Sendable {
        /// Time passed: `now` (Unix seconds) and the row as just read (nil: no manager ever led).
        case tick(now: Double, observed: LeaderLease?)
        /// The row could not be read or written at `now` (the database is unreachable).
        case unreachable(now: Double)
        /// The answer to the last `.trySwap`.
        case swapped(Bool)
        /// A write of the current term was refused: the row has another epoch.
        case deposed(current: Int64?)
        /// The row as read at `now` right after stepping down without learning who leads (a refused renewal, an
        /// unreachable store): names the new leader if another manager holds a live lease. Decides nothing, and a
        /// leader ignores it (only a tick may end or start a term).
        case learned(now: Double, observed: LeaderLease?)
    }

    public enum Action: Equatable, Sendable {
        case none
        /// Compare-and-set the row: write `lease` if the row's epoch is `expecting` (nil: no row yet). Answer `.swapped`.
        case trySwap(expecting: Int64?, to: LeaderLease)
        /// This manager now leads with `epoch`: build the term (fenced store, scheduler, worker protocol).
        case startLeading(epoch: Int64)
        /// The term is over: drop it and every worker session of it.
        case stepDown
    }

    public let me: Me
    /// Seconds a written lease lasts.
    public let ttl: Double
    /// The epoch this manager leads with, nil while it follows.
    public private(set) var epoch: Int64?
    /// The last row seen held by another manager and not expired: where followers send writes and workers.
    public private(set) var leader: LeaderLease?
    /// The swap in flight, if any: what `.swapped` answers.
    public private(set) var pending: LeaderLease?
    /// When the current term last renewed the row (this manager's clock).
    public private(set) var renewedAt: Double?

    public init(me: Me, ttl: Double) {
        self.me = me
        self.ttl = ttl.isFinite && ttl > 0 ? min(ttl, 3600) : 3
    }

    public var isLeading: Bool { epoch != nil }

    public mutating func handle(_ event: Event) -> Action {
        switch event {
        case .tick(let now, let observed): return tick(now: now, observed: observed)
        case .unreachable(let now):
            pending = nil
            // A leader that could not renew for a whole lease must assume another took over.
            if epoch != nil, !stillFresh(now: now) { return stepDown() }
            return .none
        case .swapped(let ok): return swapped(ok)
        case .deposed:
            pending = nil
            return epoch == nil ? .none : stepDown()
        case .learned(let now, let observed):
            if epoch == nil, now.isFinite { leader = liveOther(observed, now: now) }
            return .none
        }
    }

    /// `observed` if it is another manager's lease and live at `now`: the leader to name.
    private func liveOther(_ observed: LeaderLease?, now: Double) -> LeaderLease? {
        observed.flatMap { $0.holder != me.id && $0.expiresAt.isFinite && now < $0.expiresAt ? $0 : nil }
    }

    private mutating func tick(now: Double, observed: LeaderLease?) -> Action {
        // A clock that says nothing sensible decides nothing; a leader keeps its term until the row says otherwise.
        guard now.isFinite else { return .none }
        if let epoch {
            guard let row = observed, row.epoch == epoch, row.holder == me.id else {
                // Deposed: the row names who leads now (if its lease is live), so the follower can say so at once.
                leader = liveOther(observed, now: now)
                return stepDown()
            }
            return ask(expecting: epoch, lease(epoch: epoch, now: now))
        }
        guard let row = observed else {
            leader = nil
            return ask(expecting: nil, lease(epoch: 1, now: now))
        }
        let expired = !row.expiresAt.isFinite || now >= row.expiresAt
        if row.holder != me.id && !expired {
            leader = row
            return .none
        }
        // Expired, or a row naming this manager that it does not lead with (a term it already dropped): take it over.
        leader = nil
        // Epochs are positive; a damaged row with a negative one is followed by epoch 1. The last epoch is never
        // overflowed: the grid then has no leader until an operator resets the row.
        let (next, overflow) = max(row.epoch, 0).addingReportingOverflow(1)
        guard !overflow else { return .none }
        return ask(expecting: row.epoch, lease(epoch: next, now: now))
    }

    private mutating func swapped(_ ok: Bool) -> Action {
        guard let asked = pending else { return .none }
        pending = nil
        if let epoch {
            guard asked.epoch == epoch else { return .none }
            if ok {
                renewedAt = asked.expiresAt - ttl
                return .none
            }
            return stepDown()
        }
        guard ok else { return .none }
        epoch = asked.epoch
        renewedAt = asked.expiresAt - ttl
        leader = nil
        return .startLeading(epoch: asked.epoch)
    }

    private mutating func ask(expecting: Int64?, _ lease: LeaderLease) -> Action {
        pending = lease
        return .trySwap(expecting: expecting, to: lease)
    }

    private mutating func stepDown() -> Action {
        epoch = nil
        renewedAt = nil
        pending = nil
        return .stepDown
    }

    /// Whether the term renewed within one lease of `now` (a clock gone backwards counts as fresh: the row decides).
    private func stillFresh(now: Double) -> Bool {
        guard let renewedAt, now.isFinite else { return false }
        return now - renewedAt < ttl
    }

    private func lease(epoch: Int64, now: Double) -> LeaderLease {
        LeaderLease(holder: me.id, epoch: epoch, expiresAt: now + ttl, workerAddress: me.workerAddress, apiURL: me.apiURL)
    }
}
