public import GridCore

/// The leader's copy of the pending queue, kept in scheduling order between passes, so that a pass costs what changed
/// since the last one rather than a read of the whole queue (issue 17: placements flat to 1M queued). A pure value: the
/// manager feeds it what the store's change log says (`upsert`, `remove`), asks it for the jobs in the order
/// `Placement.plan` would sort them (`ordered(usage:)`), and records the pending reasons it wrote.
///
/// Jobs are kept in groups of one priority and one owner, each sorted by age (submission, then id). Fair share only
/// reorders whole groups (an owner's usage is the same for all its jobs), so a pass sorts the groups, not the jobs, and
/// merges groups that tie. A job that leaves a group leaves a stale key behind; stale keys are skipped by ticket and
/// swept when they are half a group.
///
/// The copy is a cache, never the authority: the store re-checks every assignment of a plan when it commits it, so a
/// job the copy still holds after it left the queue is at worst planned and skipped, and the manager re-reads the whole
/// queue when the change log cannot bring it up to date.
public struct PendingQueue: Sendable {
    /// A job as the queue holds it: what placement needs, and the pending reason the store has for it.
    public struct Entry: Sendable, Hashable {
        public var job: Placement.Job
        public var reason: String?
        var ticket: UInt64
    }

    struct GroupKey: Hashable, Sendable {
        var priority: Int
        var owner: UserID
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
        if let old = entries[job.id] {
            if old.job.priority == job.priority && old.job.owner == job.owner && old.job.submitted == job.submitted {
                entries[job.id] = Entry(job: job, reason: reason, ticket: old.ticket)
                return
            }
            groups[GroupKey(priority: old.job.priority, owner: old.job.owner)]?.stale += 1
        }
        nextTicket &+= 1
        entries[job.id] = Entry(job: job, reason: reason, ticket: nextTicket)
        let key = Key(submitted: job.submitted, id: job.id, ticket: nextTicket)
        let g = GroupKey(priority: job.priority, owner: job.owner)
        // In place: a copy of the group taken out of the dictionary would copy its keys on every append.
        if let last = groups[g]?.keys.last, key < last { groups[g]?.sorted = false }
        groups[g, default: Group()].keys.append(key)
    }

    /// Drops a job that is no longer pending (started, cancelled, finished). Unknown ids are ignored.
    public mutating func remove(_ id: JobID) {
        guard let old = entries.removeValue(forKey: id) else { return }
        let g = GroupKey(priority: old.job.priority, owner: old.job.owner)
        groups[g]?.stale += 1
        if let group = groups[g], group.stale >= group.keys.count { groups[g] = nil }
    }

    /// Empties the queue (before a whole re-read).
    public mutating func removeAll() {
        entries = [:]
        groups = [:]
    }

    /// The workers a job must avoid (they could not start it). Ignored for jobs not queued.
    public mutating func setAvoid(_ id: JobID, _ avoid: Set<WorkerID>) {
        guard entries[id] != nil, entries[id]?.job.avoid != avoid else { return }
        entries[id]?.job.avoid = avoid
    }

    /// The store now holds `reason` for `id` (the manager wrote it).
    public mutating func recorded(reason: String, for id: JobID) {
        guard entries[id] != nil else { return }
        entries[id]?.reason = reason
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
    /// with less `usage` first), then age (submission, then id). Mutating only to sort and sweep its groups.
    public mutating func ordered(usage: [UserID: Double]) -> [Placement.Job] {
        for (g, var group) in groups {
            guard !group.sorted || group.stale * 2 > group.keys.count else { continue }
            groups[g] = nil
            if group.stale > 0 { group.keys.removeAll { !isLive($0) } }
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
        var out: [Placement.Job] = []
        out.reserveCapacity(entries.count)
        var i = 0
        while i < keys.count {
            // A run of groups that tie on priority and usage: their jobs interleave by age.
            var j = i + 1
            while j < keys.count, keys[j].priority == keys[i].priority, usage[keys[j].owner, default: 0] == usage[keys[i].owner, default: 0] { j += 1 }
            let run = keys[i..<j].map { groups[$0]!.keys }
            if run.count == 1 {
                for key in run[0] where isLive(key) { out.append(entries[key.id]!.job) }
            } else {
                merge(run, into: &out)
            }
            i = j
        }
        return out
    }

    private func isLive(_ key: Key) -> Bool { entries[key.id]?.ticket == key.ticket }

    /// Appends the live jobs of `lists` (each sorted by age) in age order: a k-way merge on a binary heap of list heads.
    private func merge(_ lists: [[Key]], into out: inout [Placement.Job]) {
        var heads: [(key: Key, list: Int, at: Int)] = []
        func less(_ a: Int, _ b: Int) -> Bool { heads[a].key < heads[b].key }
        func up(_ start: Int) {
            var c = start
            while c > 0 {
                let p = (c - 1) / 2
                guard less(c, p) else { return }
                heads.swapAt(c, p)
                c = p
            }
        }
        func down(_ start: Int) {
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
        for (n, list) in lists.enumerated() where !list.isEmpty {
            heads.append((list[0], n, 0))
            up(heads.count - 1)
        }
        while let top = heads.first {
            if isLive(top.key) { out.append(entries[top.key.id]!.job) }
            let next = top.at + 1
            if next < lists[top.list].count {
                heads[0] = (lists[top.list][next], top.list, next)
            } else {
                heads[0] = heads[heads.count - 1]
                heads.removeLast()
            }
            if !heads.isEmpty { down(0) }
        }
    }
}
