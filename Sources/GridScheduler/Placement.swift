import GridCore

/// Where queued jobs should run, planned from a read-only snapshot: a pure function, no I/O, no clock.
///
/// Rules (DESIGN §7): a job goes only to a worker whose free resources cover it and whose tier is strong enough; among
/// those, the least-loaded. Jobs are considered by priority (high first), then fair share (the user with less recent
/// usage first), then age. The store re-checks and commits the plan in one transaction.
public enum Placement {
    /// A worker as the scheduler sees it.
    public struct Worker: Hashable, Sendable {
        public var id: WorkerID
        public var total: Resources
        public var free: Resources
        /// Reported CPU load, 0...1.
        public var load: Double
        public var tier: SandboxTier
        /// Free job slots.
        public var freeSlots: Int

        public init(id: WorkerID, total: Resources, free: Resources, load: Double, tier: SandboxTier, freeSlots: Int) {
            self.id = id
            self.total = total
            self.free = free
            self.load = load
            self.tier = tier
            self.freeSlots = freeSlots
        }

        /// Load as the scheduler ranks it: reported machine load plus the share of CPUs already given out.
        var effectiveLoad: Double {
            let given = total.cpus > 0 ? Double(total.cpus - free.cpus) / Double(total.cpus) : 1
            return load + given
        }
    }

    /// A queued job as the scheduler sees it.
    public struct Job: Hashable, Sendable {
        public var id: JobID
        public var owner: UserID
        public var priority: Int
        public var request: Resources
        public var minTier: SandboxTier
        /// Submission order (time or sequence); lower is older.
        public var submitted: Double

        public init(id: JobID, owner: UserID, priority: Int, request: Resources, minTier: SandboxTier, submitted: Double) {
            self.id = id
            self.owner = owner
            self.priority = priority
            self.request = request
            self.minTier = minTier
            self.submitted = submitted
        }
    }

    /// Why a job is still pending, in words for `status` and the job page.
    public enum PendingReason: Hashable, Sendable, CustomStringConvertible {
        case noWorkerOnline
        /// No online worker could ever run it: the unmet requirements of the closest one.
        case noWorkerFits(unmet: [String])
        /// Some online workers could run it, but none has room right now.
        case waitingForCapacity

        public var description: String {
            switch self {
            case .noWorkerOnline: "no worker is online"
            case .noWorkerFits(let unmet): "no online worker has \(unmet.joined(separator: ", "))"
            case .waitingForCapacity: "waiting for a worker with enough free resources"
            }
        }
    }

    public struct Assignment: Hashable, Sendable {
        public var job: JobID
        public var worker: WorkerID
    }

    public struct Plan: Hashable, Sendable {
        public var assignments: [Assignment]
        public var pending: [JobID: PendingReason]
    }

    /// Plans placements for `jobs` on `workers`. `usage` is each user's recent usage (any unit; less goes first).
    public static func plan(jobs: [Job], workers: [Worker], usage: [UserID: Double] = [:]) -> Plan {
        var workers = workers
        var order = jobs
        order.sort { a, b in
            if a.priority != b.priority { return a.priority > b.priority }
            let ua = usage[a.owner, default: 0]
            let ub = usage[b.owner, default: 0]
            if ua != ub { return ua < ub }
            if a.submitted != b.submitted { return a.submitted < b.submitted }
            return a.id < b.id
        }
        var assignments: [Assignment] = []
        var pending: [JobID: PendingReason] = [:]
        var roomLeft = workers.contains { $0.freeSlots > 0 }
        for job in order {
            var best: Int?
            if roomLeft {
                for (i, w) in workers.enumerated()
                where w.freeSlots > 0 && w.tier >= job.minTier && w.free.covers(job.request) {
                    if let b = best {
                        let (lw, lb) = (w.effectiveLoad, workers[b].effectiveLoad)
                        if lw < lb || (lw == lb && w.id < workers[b].id) { best = i }
                    } else {
                        best = i
                    }
                }
            }
            if let b = best {
                workers[b].free = workers[b].free - job.request
                workers[b].freeSlots -= 1
                assignments.append(Assignment(job: job.id, worker: workers[b].id))
                if workers[b].freeSlots == 0 { roomLeft = workers.contains { $0.freeSlots > 0 } }
            } else {
                pending[job.id] = reason(for: job, workers: workers)
            }
        }
        return Plan(assignments: assignments, pending: pending)
    }

    /// Why `job` cannot be placed on any of `workers` now.
    public static func reason(for job: Job, workers: [Worker]) -> PendingReason {
        if workers.isEmpty { return .noWorkerOnline }
        if workers.contains(where: { $0.tier >= job.minTier && $0.total.covers(job.request) }) { return .waitingForCapacity }
        // Report what the closest worker lacks: the one with the fewest unmet requirements.
        var best: [String]?
        for w in workers {
            var unmet = w.total.unmet(job.request)
            if w.tier < job.minTier { unmet.append("sandbox tier \(job.minTier.rawValue) or stronger") }
            if best == nil || unmet.count < best!.count { best = unmet }
        }
        return .noWorkerFits(unmet: best ?? [])
    }
}
