public import GridCore

/// Which online peer runs a public function task, for `GET_BEST_PEER` (a pure decision, issue 14): the one with the least
/// work per slot (grid jobs and function tasks), then the asking peer (it saves a hop), then the lowest machine load,
/// then the id. The asker keeps its task, though, unless that peer has a free slot or at least one task per slot less
/// than the asker: between peers that are both saturated, a forward only moves the queue, at the cost of a hop, a
/// signature and two checks of it (as Ray spills a task back only to a node with room for it). A peer that said it is stopping is never chosen: its peer services are the first thing it stops, so a
/// task forwarded to it would fail, and the asking peer would run it after a failed round trip.
public enum PeerChoice {
    /// An online peer as the manager sees it.
    public struct Candidate: Hashable, Sendable {
        public var id: WorkerID
        /// Grid jobs plus function tasks, per slot.
        public var busy: Double
        /// Reported machine load.
        public var load: Double
        /// It said it is stopping (`LOAD_UPDATE.stopping`).
        public var stopping: Bool

        public init(id: WorkerID, busy: Double, load: Double, stopping: Bool = false) {
            self.id = id
            self.busy = busy
            self.load = load
            self.stopping = stopping
        }
    }

    /// Work per slot: `jobs + tasks` over `slots` (at least 1); never traps, whatever the counts.
    public static func busy(jobs: Int, tasks: Int, slots: Int) -> Double {
        (Double(jobs) + Double(tasks)) / Double(max(1, slots))
    }

    /// The best of `candidates` for a task asked by `prefer`; nil when none can take it. A number that is not finite
    /// (it came from a peer) ranks last.
    public static func best(_ candidates: [Candidate], prefer: WorkerID?) -> Candidate? {
        func rank(_ x: Double) -> Double { x.isFinite ? x : .infinity }
        let open = candidates.filter { !$0.stopping }
        let best = open.min { a, b in
            let (ba, bb) = (rank(a.busy), rank(b.busy))
            if ba != bb { return ba < bb }
            if (a.id == prefer) != (b.id == prefer) { return a.id == prefer }
            let (la, lb) = (rank(a.load), rank(b.load))
            if la != lb { return la < lb }
            return a.id < b.id
        }
        if let best, let asker = open.first(where: { $0.id == prefer }), best.id != asker.id, !worthForwarding(from: asker, to: best) {
            return asker
        }
        return best
    }

    /// Whether a task of `asker`'s is better off on `other`: it has a free slot (less than one task per slot), or at
    /// least one task per slot less than the asker.
    public static func worthForwarding(from asker: Candidate, to other: Candidate) -> Bool {
        let theirs = other.busy.isFinite ? other.busy : .infinity
        let mine = asker.busy.isFinite ? asker.busy : .infinity
        return theirs < 1 || theirs <= mine - 1
    }
}
