import GridCore
import GridPeer
import GridProtocol
import Synchronization

/// This peer's replicas of distributed-memory keys (a `MemoryTable`) with the membership they are placed by, behind
/// one mutex: the peer's actor writes and rebalances through it, and the peer port answers a `GET_MEM` for a key held
/// here straight from the event loop (`fastGet`), without a task or an actor hop.
final class LocalReplicas: Sendable {
    private struct State {
        var table: MemoryTable
        var selfId: String?
        var peers: [String] = []
    }

    private let state: Mutex<State>
    let replicas: Int

    init(replicas: Int, budget: StorageBudget = .unlimited(what: "memory values")) {
        self.replicas = replicas
        self.state = Mutex(State(table: MemoryTable(budget: budget)))
    }

    /// The peer's id and the online peers (itself included), as the actor knows them.
    func setView(selfId: String?, peers: [String]) {
        state.withLock {
            $0.selfId = selfId
            $0.peers = peers
        }
    }

    /// The reply to `user`'s `GET_MEM key` when this peer owns their key and holds a live value for it; nil sends the request
    /// the long way (not an owner, nothing here, a deletion, a bad key: the actor answers those).
    func fastGet(_ key: String, user: String) -> Msg.MemResult? {
        guard (try? PeerNames.validateKey(key)) != nil, PeerNamespace.isValidUser(user) else { return nil }
        let stored = PeerNamespace.stored(key, user: user, kind: .memory)
        return state.withLock { s in
            guard let selfId = s.selfId, let value = s.table.get(stored)?.value else { return nil }
            let owners = Rendezvous.owners(of: stored, among: s.peers, replicas: replicas)
            guard owners.contains(selfId) else { return nil }
            return Msg.MemResult(key: key, value: value, owners: owners)
        }
    }

    func store(_ key: String, _ entry: MemoryTable.Entry, writer: String? = nil) -> MemoryTable.Outcome {
        state.withLock { s in
            let deletedBy = Self.deleter(key, held: s.table.get(key))
            return s.table.store(key, entry, writer: writer, heldDeletedBy: deletedBy)
        }
    }

    /// The person whose deletion of public name `key` is `held` (its seal's, checked when it came); nil when `held` is
    /// no deletion of a public name (`PeerNamespace.deletionBars`, `PeerNamespace.mayWrite`).
    static func deleter(_ key: String, held: MemoryTable.Entry?) -> String? {
        guard let held, held.value == nil, PeerNamespace.owner(of: key) == nil else { return nil }
        return PeerTrust.Seal.person(text: held.seal)
    }

    /// What a batch of entries did here: for each that lost to a newer replica held here, that newer replica; for each
    /// that did not fit this peer's budget, why (by key).
    struct Applied: Sendable {
        var lost: [Msg.MemEntry] = []
        var refused: [String: String] = [:]
        var allKept: Bool { lost.isEmpty && refused.isEmpty }
    }

    /// Applies `entries` (see `Applied`).
    @discardableResult
    /// `writers`: by key, the person each entry's seal was checked for (`MemoryTable.store`).
    func apply(_ entries: [Msg.MemEntry], writers: [String: String] = [:]) -> Applied {
        state.withLock { s in
            var out = Applied()
            for e in entries {
                let entry = MemoryTable.Entry(value: e.value, version: e.version, origin: e.origin, seal: e.seal)
                let deletedBy = Self.deleter(e.key, held: s.table.get(e.key))
                switch s.table.store(e.key, entry, writer: writers[e.key], heldDeletedBy: deletedBy) {
                case .kept: continue
                case .refused(let reason): out.refused[e.key] = reason
                case .lost:
                    if let cur = s.table.get(e.key), cur.version != e.version || cur.origin != e.origin {
                        out.lost.append(Msg.MemEntry(key: e.key, value: cur.value, version: cur.version, origin: cur.origin))
                    }
                }
            }
            return out
        }
    }

    /// Bytes held here, everyone's together.
    var heldBytes: Int64 { state.withLock { $0.table.heldBytes } }

    func get(_ key: String) -> MemoryTable.Entry? { state.withLock { $0.table.get(key) } }
    func drop(_ key: String) { state.withLock { $0.table.drop(key) } }
    func keys(prefix: String) -> [String] { state.withLock { $0.table.keys(prefix: prefix) } }
    /// Every entry, as they are now (a copy: the lock is not held while the caller reads them).
    var entries: [String: MemoryTable.Entry] { state.withLock { $0.table.entries } }
    var liveCount: Int { state.withLock { $0.table.liveCount } }
    func collectGarbage(now: Int64) { state.withLock { $0.table.collectGarbage(now: now) } }

    func rebalance(selfId: String, peers: [String], replicas: Int) -> [MemoryTable.Move] {
        state.withLock { $0.table.rebalance(selfId: selfId, peers: peers, replicas: replicas) }
    }
}
