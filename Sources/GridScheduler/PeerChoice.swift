public import GridCore

/// Which online peer runs a public function task, for `GET_BEST_PEER` (a pure decision, issue 14): the one with the least
/// work per slot (grid jobs and function tasks), then the asking peer (it saves a hop), then the lowest machine load,
/// then the id. The asker keeps its task, though, unless that peer has a free slot or clearly less work than the asker
/// (`TaskLoad.worthForwarding`): between peers that are both saturated, a forward only moves the queue, at the cost of
/// a hop, a signature and two checks of it (as Ray spills a task back only to a node with room for it). A peer that
/// said it is stopping is never chosen: its peer services are the first thing it stops, so a task forwarded to it
/// would fail, and the asking peer would run it after a failed round trip.
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

    /// The tasks the manager has sent a peer's way since its last load report (`GET_BEST_PEER` answers that named it
    /// to another peer, each for one task): counted on top of what it reported while `reservedSeconds` have not passed
    /// since the first of them (`at`: the window does not slide, so they always end), at most `maxReserved`. Before,
    /// every peer that asked within a report's interval was sent to the same idle-looking peer, and reused the answer
    /// for every task of the next 50 ms: two peers given tasks at the same pace forwarded a quarter of their tasks to
    /// each other and back (a peer that had forwarded its tasks away looked idle in its next report). Never traps; a
    /// time that is not finite, or a clock that went back, counts none.
    public static func reserved(count: Int, at: Double, now: Double) -> Int {
        guard count > 0, at.isFinite, now.isFinite, now >= at, now - at < reservedSeconds else { return 0 }
        return min(count, maxReserved)
    }

    /// Whether an answer naming `best` counts a task on it: the ask names a task (`taskId`; a user's question relayed
    /// by a peer names none) and comes from an online peer (`senderIsPeer`) asking in its own name (`prefer` is the
    /// sender: a worker asking in another's name counts nothing), and `best` is another peer.
    public static func counts(taskId: String?, prefer: WorkerID?, sender: WorkerID, senderIsPeer: Bool, best: WorkerID) -> Bool {
        taskId != nil && senderIsPeer && prefer == sender && best != sender
    }

    /// Whether a peer that has counted `spent` of its tasks on others in the window that began at `at` may count one
    /// more: no more than the tasks it last reported holding (`reported`, at least one, at most `maxReserved`), since
    /// it can forward no more than it holds (a review: a peer asking in a loop kept every peer looking full). Never
    /// traps; the window as `reserved` keeps it.
    public static func mayCount(spent: Int, at: Double, now: Double, reported: Int) -> Bool {
        reserved(count: spent, at: at, now: now) < min(max(1, reported), maxReserved)
    }

    /// One more task counted on a peer holding `count` since `at`: the count and the start of its window. The window
    /// starts with the first task counted and does not slide (a review: a worker asking in a loop kept every peer
    /// looking busy for ever); an expired one starts again. Never traps.
    public static func reserve(count: Int, at: Double, now: Double) -> (count: Int, at: Double) {
        let held = reserved(count: count, at: at, now: now)
        return held == 0 ? (1, now) : (min(held + 1, maxReserved), at)
    }

    /// How long tasks sent a peer's way count on it without a load report of its own: a few of its report intervals.
    public static let reservedSeconds = 0.25
    /// The most tasks counted so: a peer that asks for its own tasks in a loop can make others look busy by this much
    /// (which keeps other peers' tasks where they were sent, never blocks them), window after window.
    public static let maxReserved = 256

    /// Work per slot (`TaskLoad.busy`).
    public static func busy(jobs: Int, tasks: Int, slots: Int) -> Double { TaskLoad.busy(jobs: jobs, tasks: tasks, slots: slots) }

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

    /// Whether a task of `asker`'s is better off on `other` (`TaskLoad.worthForwarding`).
    public static func worthForwarding(from asker: Candidate, to other: Candidate) -> Bool {
        TaskLoad.worthForwarding(mine: asker.busy, theirs: other.busy)
    }
}
