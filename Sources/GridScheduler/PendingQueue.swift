public import GridCore

/// The leader's copy of the pending queue, kept in scheduling order between passes, so that a pass costs what changed
/// since the last one rather than a read of the whole queue (issue 17: placements flat to 1M queued). A pure value: the
/// manager feeds it what the store's change log says (`upsert`, `remove`), asks it for the jobs in the order
/// `Placement.plan` would sort them (`ordered(usage:)`), and records the pending reasons it wrote.
///
/// Jobs are kept in groups of one priority, one owner and one shape (request, minimum tier, `requires-python`), each
/// sorted by age (submission, then id). Fair share only reorders whole groups (an owner's usage is the same for all its
/// jobs), so a pass sorts the groups, not the jobs, and merges groups that tie. A group is what HTCondor calls an
/// autocluster: when one of its jobs fits nowhere, none of the others behind it does either, and a pass skips the rest
/// of the group at once (`Ordered.Iterator.skipRestOfGroup`) instead of walking it. A job that leaves a group leaves a
/// stale key behind; stale keys are skipped by ticket and swept when they are half a group.
///
/// The copy is a cache, never the authority: the store re-checks every assignment of a plan when it commits it, so a
/// job the copy still holds after it left the queue is at worst planned and skipped, and the manager re-reads the whole
/// queue when the change log cannot bring it up to date.
public struct PendingQueue: Sendable {
    /// A job as the queue holds it: what placement needs, the pending reason the store has for it, and the ticket of
    /// its current key in its group.
    struct Entry: Sendable, Hashable {
        var job: Placement.Job
        var reason: String?
        var ticket: UInt64
    }

    /// A group: the jobs of one priority and owner that are alike for placement (what `Placement` calls a shape, but
    /// for the workers and owners a job avoids, which only make a job harder to place).
    struct GroupKey: Hashable, Sendable {
        var priority: Int
        var owner: UserID
        var request: Resources
        var minTier: SandboxTier
        var requiresPython: String?
        var diskGb: Int

        init(_ job: Placement.Job) {
            diskGb = job.diskGb
            priority = job.priority
            owner = job.owner
            request = job.request
            minTier = job.minTier
            requiresPython = job.requiresPython
        }
    }

    struct Key: Sendable {
        var submitted: Double
        var id: JobID
        var ticket: UInt64
        static func < (a: Key, b: Key) -> Bool { a.submitted != b.submitted ? a.submitted < b.submitted : a.id < b.id }
    }

    struct Group: Sendable {
        var keys: [Key] = []
        var sorted = true
        var stale = 0
    }

    private var entries: [JobID: Entry] = [:]
    private var groups: [GroupKey: Group] = [:]
    private var nextTicket: UInt64 = 0
    /// Jobs whose pending reason was not worked out since they last changed, and the workers (`Placement.fingerprint`)
    /// the others' reasons were worked out for. A reason depends only on the job and on what the workers are (not on
    /// what they have free), so a pass need not work it out again while neither changed.
    private var unreasoned: Set<JobID> = []
    private var reasonedFor: Int?
    private var reasonedAt = -Double.infinity

    public init() {}

    /// How many jobs are queued.
    public var count: Int { entries.count }
    public var isEmpty: Bool { entries.isEmpty }

    public func contains(_ id: JobID) -> Bool { entries[id] != nil }

    /// The job with `id`, as queued.
    public func job(_ id: JobID) -> Placement.Job? { entries[id]?.job }

    /// The pending reason the store holds for `id`, as last read or recorded.
    public func reason(of id: JobID) -> String? { entries[id]?.reason }

    /// Adds a pending job, or replaces it (it changed in the store). `reason` is the pending reason the store holds.
    public mutating func upsert(_ job: Placement.Job, reason: String?) {
        let g = GroupKey(job)
        if let old = entries[job.id] {
            let was = GroupKey(old.job)
            if was == g && old.job.submitted == job.submitted {
                entries[job.id] = Entry(job: job, reason: reason, ticket: old.ticket)
                unreasoned.insert(job.id)
                return
            }
            groups[was]?.stale += 1
        }
        unreasoned.insert(job.id)
        nextTicket &+= 1
        entries[job.id] = Entry(job: job, reason: reason, ticket: nextTicket)
        let key = Key(submitted: job.submitted, id: job.id, ticket: nextTicket)
        // In place: a copy of the group taken out of the dictionary would copy its keys on every append.
        if let last = groups[g]?.keys.last, key < last { groups[g]?.sorted = false }
        groups[g, default: Group()].keys.append(key)
    }

    /// Drops a job that is no longer pending (started, cancelled, finished). Unknown ids are ignored.
    public mutating func remove(_ id: JobID) {
        guard let old = entries.removeValue(forKey: id) else { return }
        unreasoned.remove(id)
        let g = GroupKey(old.job)
        groups[g]?.stale += 1
        if let group = groups[g], group.stale >= group.keys.count { groups[g] = nil }
    }

    /// Empties the queue (before a whole re-read).
    public mutating func removeAll() {
        entries = [:]
        groups = [:]
        unreasoned = []
        reasonedFor = nil
        reasonedAt = -.infinity
    }

    /// The workers a job must avoid (they could not start it). Ignored for jobs not queued.
    public mutating func setAvoid(_ id: JobID, _ avoid: Set<WorkerID>) {
        guard entries[id] != nil, entries[id]?.job.avoid != avoid else { return }
        entries[id]?.job.avoid = avoid
        unreasoned.insert(id)
    }

    /// The store now holds `reason` for `id` (the manager wrote it).
    public mutating func recorded(reason: String, for id: JobID) {
        guard entries[id] != nil else { return }
        entries[id]?.reason = reason
    }

    /// How often, at most, every job's pending reason is worked out again because the workers changed (each worker
    /// that joins or leaves changes them; on a large grid, nearly every pass): seconds.
    public static let reasonRefreshSeconds: Double = 5

    /// The jobs whose pending reason is to be worked out at `now` for `workers` (a `Placement.fingerprint`): every job
    /// when the workers changed since that was last done (at most once in `reasonRefreshSeconds`), else those queued or
    /// changed since the last call. They count as worked out from now on.
    public mutating func takeUnreasoned(for workers: Int, now: Double) -> [Placement.Job] {
        defer { unreasoned = [] }
        if reasonedFor != workers, !(now - reasonedAt < Self.reasonRefreshSeconds) {
            reasonedFor = workers
            reasonedAt = now
            return entries.values.map(\.job)
        }
        // Within the interval, with other workers: a whole refresh is owed even if the workers change back meanwhile,
        // since what is reasoned now is reasoned for these workers.
        if reasonedFor != workers { reasonedFor = nil }
        return unreasoned.compactMap { entries[$0]?.job }
    }

    /// Plans one pass from the queue (pure): `Placement.plan` over the queue in scheduling order, stopping once no
    /// worker has room and skipping the rest of a group once one of its jobs fits nowhere, with a pending reason for
    /// every job that needs one now (`takeUnreasoned`), not for every job.
    /// `checkSeed` draws where check runs go (`Placement.checkOwner`).
    public mutating func plan(workers: [Placement.Worker], usage: [UserID: Double], now: Double, checkSeed: UInt64 = 0) -> Placement.Plan {
        var order = ordered(usage: usage).makeIterator()
        var plan = Placement.plan(&order, workers: workers, stopWhenFull: true, skipGroups: true, checkSeed: checkSeed)
        let assigned = Set(plan.assignments.map(\.job))
        let missing = takeUnreasoned(for: Placement.fingerprint(workers), now: now).filter { plan.pending[$0.id] == nil && !assigned.contains($0.id) }
        for (id, reason) in Placement.reasons(for: missing, workers: workers) { plan.pending[id] = reason }
        return plan
    }

    /// The store committed `plan` and started `started`: they leave the queue; a job planned and not started (the store's
    /// re-check refused it) is reconsidered, reason and all, next pass.
    public mutating func committed(_ plan: Placement.Plan, started: some Sequence<JobID>) {
        for id in started { remove(id) }
        for a in plan.assignments where entries[a.job] != nil { unreasoned.insert(a.job) }
    }

    /// The pending reasons of a plan that differ from those the store holds, in words: a pass writes only what changed,
    /// not a reason per queued job (the words of each distinct reason are made once).
    public func changedReasons(_ pending: [JobID: Placement.PendingReason]) -> [JobID: String] {
        var words: [Placement.PendingReason: String] = [:]
        var changed: [JobID: String] = [:]
        for (id, reason) in pending {
            let text: String
            if let known = words[reason] {
                text = known
            } else {
                text = reason.description
                words[reason] = text
            }
            if entries[id]?.reason != text { changed[id] = text }
        }
        return changed
    }

    /// The queued jobs in the order `Placement.plan` considers them: priority (high first), then fair share (the owner
    /// with less `usage` first), then age (submission, then id). Lazy: a pass that fills every worker early reads only
    /// the front of the queue. Mutating only to sort and sweep its groups.
    public mutating func ordered(usage: [UserID: Double]) -> Ordered {
        for (g, var group) in groups {
            guard !group.sorted || group.stale * 2 > group.keys.count else { continue }
            groups[g] = nil
            if group.stale > 0 { group.keys.removeAll { entries[$0.id]?.ticket != $0.ticket } }
            if !group.sorted { group.keys.sort(by: <) }
            group.sorted = true
            group.stale = 0
            if !group.keys.isEmpty { groups[g] = group }
        }
        let keys = groups.keys.sorted { a, b in
            if a.priority != b.priority { return a.priority > b.priority }
            let ua = usage[a.owner, default: 0]
            let ub = usage[b.owner, default: 0]
            if ua != ub { return ua < ub }
            return a.owner < b.owner
        }
        // Runs of groups that tie on priority and usage: their jobs interleave by age.
        var runs: [[[Key]]] = []
        var i = 0
        while i < keys.count {
            var j = i + 1
            while j < keys.count, keys[j].priority == keys[i].priority, usage[keys[j].owner, default: 0] == usage[keys[i].owner, default: 0] { j += 1 }
            runs.append(keys[i..<j].map { groups[$0]!.keys })
            i = j
        }
        return Ordered(entries: entries, runs: runs)
    }

    /// The queue in scheduling order, read lazily: each run of tying groups is merged by age on a binary heap of the
    /// groups' heads. A snapshot: changing the queue afterwards does not change it.
    public struct Ordered: Sequence, Sendable {
        let entries: [JobID: Entry]
        let runs: [[[Key]]]

        public func makeIterator() -> Iterator { Iterator(entries: entries, runs: runs) }

        public struct Iterator: IteratorProtocol {
            let entries: [JobID: Entry]
            let runs: [[[Key]]]
            var run = -1
            var heads: [(key: Key, list: Int, at: Int)] = []
            /// The job last returned is the head of `heads[0]`, not yet moved past: `skipRestOfGroup` drops its group.
            var returned = false

            public mutating func next() -> Placement.Job? {
                if returned {
                    returned = false
                    advanceTop()
                }
                while true {
                    if heads.isEmpty {
                        run += 1
                        guard run < runs.count else { return nil }
                        for (n, list) in runs[run].enumerated() where !list.isEmpty {
                            heads.append((list[0], n, 0))
                            up(heads.count - 1)
                        }
                        continue
                    }
                    let top = heads[0].key
                    if let entry = entries[top.id], entry.ticket == top.ticket {
                        returned = true
                        return entry.job
                    }
                    advanceTop()
                }
            }

            /// Skips the jobs after the one last returned in its group (same priority, owner and shape): they come
            /// out of no later `next()`. Nothing happens before the first `next()` or after the end.
            public mutating func skipRestOfGroup() {
                guard returned else { return }
                returned = false
                removeTop()
            }

            private mutating func advanceTop() {
                let top = heads[0]
                let list = runs[run][top.list]
                guard top.at + 1 < list.count else { return removeTop() }
                heads[0] = (list[top.at + 1], top.list, top.at + 1)
                down(0)
            }

            private mutating func removeTop() {
                heads[0] = heads[heads.count - 1]
                heads.removeLast()
                if !heads.isEmpty { down(0) }
            }

            private func less(_ a: Int, _ b: Int) -> Bool { heads[a].key < heads[b].key }

            private mutating func up(_ start: Int) {
                var c = start
                while c > 0 {
                    let p = (c - 1) / 2
                    guard less(c, p) else { return }
                    heads.swapAt(c, p)
                    c = p
                }
            }

            private mutating func down(_ start: Int) {
                var p = start
                while true {
                    let l = 2 * p + 1
                    let r = l + 1
                    var m = p
                    if l < heads.count, less(l, m) { m = l }
                    if r < heads.count, less(r, m) { m = r }
                    guard m != p else { return }
                    heads.swapAt(m, p)
                    p = m
                }
            }
        }
    }
}

extension PendingQueue.Ordered.Iterator: Placement.Order {}
