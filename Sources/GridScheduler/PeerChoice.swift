public import GridCore

/// Which online peer runs a public function task, for `GET_BEST_PEER` (a pure decision, issue 14): the one with the least
/// work per slot (grid jobs and function tasks), then the asking peer (it saves a hop), then the lowest machine load,
/// then the id. A peer that said it is stopping is never chosen: its peer services are the first thing it stops, so a
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
        return candidates.filter { !$0.stopping }.min { a, b in
            let (ba, bb) = (rank(a.busy), rank(b.busy))
            if ba != bb { return ba < bb }
            if (a.id == prefer) != (b.id == prefer) { return a.id == prefer }
            let (la, lb) = (rank(a.load), rank(b.load))
            if la != lb { return la < lb }
            return a.id < b.id
        }
    }
}
