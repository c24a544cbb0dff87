import Foundation
import GridCore
import GridScheduler
import GridStore
import GridProtocol
import Synchronization

/// One leadership term of this manager (issue 16): the core built for it on the fenced store, and the worker
/// connections it serves. Dropping the term closes them all, so workers reconnect to whoever leads next.
final class ManagerTerm: Sendable {
    let epoch: Int64
    let core: ManagerCore
    private let channels = Mutex<(next: Int, open: [Int: GridLink], dropped: Bool)>((0, [:], false))

    init(epoch: Int64, core: ManagerCore) {
        self.epoch = epoch
        self.core = core
    }

    /// Counts `link` as a session of this term; nil (and the link is closed) if the term is already over.
    func track(_ channel: GridLink) -> Int? {
        let id: Int? = channels.withLock { c in
            if c.dropped { return nil }
            c.next += 1
            c.open[c.next] = channel
            return c.next
        }
        if id == nil { channel.close() }
        return id
    }

    func untrack(_ id: Int) { _ = channels.withLock { $0.open.removeValue(forKey: id) } }

    /// Ends the term: closes every session of it.
    func drop() {
        let open = channels.withLock { c in
            c.dropped = true
            defer { c.open = [:] }
            return Array(c.open.values)
        }
        for link in open { link.close() }
    }
}

/// What the listeners need to know about leadership, now: the term this manager leads (nil: it follows) and the
/// leader it last saw (for `NOT_LEADER` and the not-leader answer of the API).
final class LeaderState: Sendable {
    struct Snapshot: Sendable {
        var term: ManagerTerm?
        var leader: LeaderLease?
        /// This manager as it writes itself into the row (set once its ports are bound).
        var me: Leadership.Me?
    }
    private let state = Mutex(Snapshot())

    var snapshot: Snapshot { state.withLock { $0 } }
    var term: ManagerTerm? { state.withLock { $0.term } }
    var leader: LeaderLease? { state.withLock { $0.leader } }

    func set(term: ManagerTerm?) { state.withLock { $0.term = term } }
    func set(leader: LeaderLease?) { state.withLock { $0.leader = leader } }
    func set(me: Leadership.Me) { state.withLock { $0.me = me } }
}

/// Recognises a write refused because this manager's term is over (the store's fence).
enum Deposition {
    static func isDeposed(_ error: any Error) -> Bool {
        if error is GridStoreError { return true }
        return "\(error)".contains("campusgrid: deposed")
    }
}
