public import GridCore

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
        /// Breaks ties between equally loaded workers: a value the manager picks (at random, per registration), never
        /// something the worker chooses, such as its id.
        public var tieBreak: UInt64
        /// The worker's owner, and whether it takes other users' jobs (a restricted worker does only when its owner
        /// started it with `--allow-unsandboxed`; see `Admission`). A nil owner takes everyone's.
        public var owner: UserID?
        public var acceptsOthers: Bool
        /// A quarantined worker (contradicted too often by verification) runs only its owner's jobs.
        public var quarantined: Bool
        /// It takes no new job for now, room or not (stopping, or its disk nearly full): it is not drawn for check runs.
        public var draining = false
        /// Digests of the Python environments the worker has cached (`PythonRequirements.digest`).
        public var envs: Set<String>
        /// The worker's Python version (`3.11.7`); nil: unknown (an older worker), taken to fit any job.
        public var python: String?
        /// How many more jobs of users other than its owner its owner's workers may be given now (`OthersWindow.room`):
        /// shared by all the workers of one owner (the least given among them counts; a worker with no owner has its
        /// own). Its owner's jobs are not limited by it. `Int.max`: no limit.
        public var othersRoom: Int
        /// The most scratch disk the worker lets one job fill, in GB (`--max-job-disk-gb`): it runs no job that asks
        /// for more (`JobSpec.diskGb`). Infinity: no limit known.
        public var maxJobDiskGb: Double
        /// Whether the worker stops each job at the job's own disk limit. An older worker (one that sends no
        /// `job_disk_bytes`) stops every job at its own limit instead, whatever the job asks: it is given only jobs that
        /// ask for the default (`JobSpec.defaultDiskGb`), so that no check run on a newer worker, stopped at the job's
        /// smaller limit, contradicts it for a job it completed using more.
        public var enforcesJobDisk: Bool

        public init(
            id: WorkerID, total: Resources, free: Resources, load: Double, tier: SandboxTier, freeSlots: Int, tieBreak: UInt64 = 0,
            owner: UserID? = nil, acceptsOthers: Bool = true, quarantined: Bool = false, envs: Set<String> = [], python: String? = nil,
            othersRoom: Int = .max, maxJobDiskGb: Double = .infinity, enforcesJobDisk: Bool = true
        ) {
            self.maxJobDiskGb = maxJobDiskGb
            self.enforcesJobDisk = enforcesJobDisk
            self.othersRoom = othersRoom
            self.quarantined = quarantined
            self.envs = envs
            self.python = python
            self.tieBreak = tieBreak
            self.owner = owner
            self.acceptsOthers = acceptsOthers
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

        /// Whether this worker would run a job of `owner` (its tier aside).
        func takes(_ owner: UserID) -> Bool {
            guard let mine = self.owner else { return !quarantined }
            return Admission.accepts(jobOwner: owner, workerOwner: mine, acceptsOthers: acceptsOthers && !quarantined)
        }

        /// Whether this worker would run `job` (its tier and resources aside): it takes the job's owner and its owner
        /// is not one a check run must avoid.
        func takes(_ job: Job) -> Bool {
            if !job.avoidOwners.isEmpty, owner.map(job.avoidOwners.contains) ?? true { return false }
            return takes(job.owner)
        }

        /// Whether this worker's Python meets the job's `requires-python`.
        func hasPython(for job: Job) -> Bool {
            guard let spec = job.requiresPython, let python else { return true }
            return PythonVersionSpec.allows(spec, version: python)
        }

        /// Whether this worker lets one job fill as much scratch disk as `job` asks for (a NaN limit lets none), and
        /// stops it there: an older worker, which applies its own limit, only the default.
        func hasDisk(for job: Job) -> Bool {
            enforcesJobDisk ? Double(job.diskGb) <= maxJobDiskGb : job.diskGb == JobSpec.defaultDiskGb && Double(job.diskGb) <= maxJobDiskGb
        }

        /// What a worker's `REGISTER` says of its disk limit (`job_disk_bytes`, a claim: any value, or none), as
        /// `maxJobDiskGb` and `enforcesJobDisk`. Negative: no job fits. None (an older worker): the default, for jobs
        /// that ask for the default only. Never traps.
        public static func jobDisk(registered bytes: Int64?) -> (maxJobDiskGb: Double, enforcesJobDisk: Bool) {
            guard let bytes else { return (Double(JobSpec.defaultDiskGb), false) }
            return (Double(max(0, bytes)) / Double(1 << 30), true)
        }

        /// Whether this worker could ever run `job`: tier, owner, Python, disk and total resources (not what is free now).
        func couldRun(_ job: Job) -> Bool {
            tier >= job.minTier && takes(job) && hasPython(for: job) && hasDisk(for: job) && total.covers(job.request)
        }
    }

    /// The one fit rule: whether a worker of `tier`, with `free` resources and `freeSlots` job slots, has room now for a
    /// job that needs `request` in at least `minTier`. The planner uses it, and the store re-checks each assignment of a
    /// plan with it when it commits the plan.
    public static func hasRoom(tier: SandboxTier, free: Resources, freeSlots: Int, for minTier: SandboxTier, _ request: Resources) -> Bool {
        freeSlots > 0 && tier >= minTier && free.covers(request)
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
        /// Workers not to use for this job (they could not start it before).
        public var avoid: Set<WorkerID>
        /// Owners whose workers must not run this job: a check run goes to a worker of an owner none of the job's
        /// earlier runs had (a worker with no known owner is avoided too).
        public var avoidOwners: Set<UserID>
        /// The digest of the job's Python environment; nil when it declares no packages. Among the workers that fit,
        /// one that has it cached is preferred (no build), even over a less loaded one; not for a check run
        /// (`checkOwner`), which no worker's claims may steer.
        public var env: String?
        /// The job's `requires-python`; only workers whose Python meets it are used.
        public var requiresPython: String?
        /// The scratch disk the job may fill, in GB (`JobSpec.diskLimitGb`); only workers that allow that much are used.
        public var diskGb: Int

        public init(
            id: JobID, owner: UserID, priority: Int, request: Resources, minTier: SandboxTier, submitted: Double, avoid: Set<WorkerID> = [],
            avoidOwners: Set<UserID> = [], env: String? = nil, requiresPython: String? = nil, diskGb: Int = JobSpec.defaultDiskGb
        ) {
            self.diskGb = diskGb
            self.avoidOwners = avoidOwners
            self.env = env
            self.requiresPython = requiresPython
            self.id = id
            self.owner = owner
            self.priority = priority
            self.request = request
            self.minTier = minTier
            self.submitted = submitted
            self.avoid = avoid
        }
    }

    /// Why a job is still pending, in words for `status` and the job page.
    public enum PendingReason: Hashable, Sendable, CustomStringConvertible {
        case noWorkerOnline
        /// No online worker could ever run it: the unmet requirements of the closest one.
        case noWorkerFits(unmet: [String])
        /// Some online workers could run it, but none has room right now.
        case waitingForCapacity
        /// The only workers that could run it are unsandboxed (restricted tier) and run only their owners' jobs.
        case onlyUnsandboxedWorkers
        /// A check run waits for a worker of an owner none of the job's earlier runs had.
        case waitingForAnotherOwner
        /// The only workers that could run it are quarantined (contradicted by verification) and run only their
        /// owners' jobs.
        case onlyQuarantinedWorkers

        public var description: String {
            switch self {
            case .noWorkerOnline: "no worker is online"
            case .noWorkerFits(let unmet): "no online worker has \(unmet.joined(separator: ", "))"
            case .waitingForCapacity: "waiting for a worker with enough free resources"
            case .onlyUnsandboxedWorkers:
                "the only online workers that fit have no real sandbox (restricted tier) and run only their owners' jobs "
                    + "(their owners did not start them with --allow-unsandboxed)"
            case .waitingForAnotherOwner: "a check run waits for an online worker of another owner"
            case .onlyQuarantinedWorkers:
                "the only online workers that fit are quarantined (their results were contradicted by verification) and run only their owners' jobs"
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
    ///
    /// Workers with room are kept sorted by load, so each job takes the first that fits (usually after a few
    /// comparisons); a request shape that fit nowhere is remembered for the rest of the pass, so 100,000 queued jobs
    /// against 10,000 workers plan in well under a second.
    public static func plan(jobs: [Job], workers: [Worker], usage: [UserID: Double] = [:], checkSeed: UInt64 = 0) -> Plan {
        // The order is `PendingQueue`'s, the one place it is written. Jobs are told apart by id: a repeated id counts once.
        var queue = PendingQueue()
        for job in jobs { queue.upsert(job, reason: nil) }
        return plan(ordered: queue.ordered(usage: usage), workers: workers, checkSeed: checkSeed)
    }

    /// Plans placements for `order`, jobs already in scheduling order (priority, fair share, age), as `PendingQueue`
    /// keeps them: the same plan as `plan(jobs:workers:usage:)` without sorting the queue again. With `stopWhenFull`,
    /// planning stops once no worker has room: the jobs after that get no reason in the plan (what `reasons(for:workers:)`
    /// would give them does not depend on what is free).
    public static func plan(ordered order: some Sequence<Job>, workers: [Worker], stopWhenFull: Bool = false, checkSeed: UInt64 = 0) -> Plan {
        var jobs = InOrder(base: order.makeIterator())
        return plan(&jobs, workers: workers, stopWhenFull: stopWhenFull, skipGroups: false, checkSeed: checkSeed)
    }

    /// Which owner's workers run a check run (a job that avoids owners: the submitter's and those whose runs it
    /// checks): drawn among `owners` (`checkOwners`: those with a worker online that could ever run it, room or not) by
    /// `seed` and the job's id, each owner equally likely. The draw is by rendezvous (the owner whose own draw is
    /// highest), so an owner that joins takes only its share of the checks and one that leaves moves only those drawn
    /// to it: connecting and disconnecting workers does not draw the checks again. Neither a worker's load, its free
    /// room, the environments it claims, nor how many workers its owner runs weighs in; while the drawn owner has no
    /// room, the check waits for it (the manager's seed changes every so often, `checkSeed`, and with it the draw).
    /// Before, a check went to the least-loaded worker holding the job's environment, both claims: a second account's
    /// worker that claimed them (and kept itself free) checked every forged run of its partner's and agreed. Nil: no
    /// owner.
    public static func checkOwner(_ job: JobID, among owners: Set<UserID>, seed: UInt64) -> UserID? {
        var g = checkDraw(job, seed: seed)
        let base = g.next()
        func weight(_ owner: UserID) -> UInt64 {
            var h = SplitMix(seed: base ^ UInt64(bitPattern: owner))
            return h.next()
        }
        return owners.max { (weight($0), $0) < (weight($1), $1) }
    }

    /// The owners with a worker online that could ever run `job` (`couldRun`, room or not; not a worker it avoids, nor
    /// one that takes no new job for now, `draining`: a check drawn to an owner whose only such worker stops would wait
    /// for nothing).
    public static func checkOwners(_ job: Job, workers: [Worker]) -> Set<UserID> {
        Set(workers.lazy.filter { !$0.draining && $0.couldRun(job) && !job.avoid.contains($0.id) }.compactMap(\.owner))
    }

    /// `checkOwner` among `checkOwners`.
    public static func checkOwner(_ job: Job, workers: [Worker], seed: UInt64) -> UserID? {
        checkOwner(job.id, among: checkOwners(job, workers: workers), seed: seed)
    }

    /// One of `candidates` (workers of the drawn owner with room for the check now), by id, drawn by `seed` and the job:
    /// the same whatever order they come in. Returns the position in `candidates`; nil when there are none.
    public static func checkWorker(_ candidates: [Int], ids: (Int) -> WorkerID, job: JobID, seed: UInt64) -> Int? {
        guard !candidates.isEmpty else { return nil }
        var g = checkDraw(job, seed: seed)
        _ = g.next()  // the first draw chose the owner
        let byId = candidates.indices.sorted { ids(candidates[$0]) < ids(candidates[$1]) }
        return byId[Int(g.next() % UInt64(byId.count))]
    }

    /// The seed of every check draw at `now`, from the manager's own secret (drawn as it starts, never sent): the same
    /// for `every` seconds (at least one), then another, at moments the secret shifts (nobody outside knows when). The
    /// manager changes it every quarter of the check wait (6 hours by default): a check whose drawn owner stays full is
    /// drawn again then, and an owner that keeps room free wins a check only as often as it is drawn, not whenever the
    /// others are busy.
    public static func checkSeed(secret: UInt64, now: Double, every: Double) -> UInt64 {
        let period = every.isFinite ? min(max(every, 1), 1e9).rounded(.down) : 3_600
        let shifted = now + Double(secret % UInt64(period))
        let e = (shifted / period).rounded(.down)
        let epoch: Int64 = e.isFinite ? Int64(min(max(e, -1e15), 1e15)) : 0
        var g = SplitMix(seed: secret ^ UInt64(bitPattern: epoch))
        return g.next()
    }

    private static func checkDraw(_ job: JobID, seed: UInt64) -> SplitMix {
        var id = SplitMix(seed: UInt64(bitPattern: job))
        return SplitMix(seed: seed ^ id.next())
    }

    /// Jobs in scheduling order, read one at a time, of which the rest of the last one's group can be skipped.
    protocol Order {
        mutating func next() -> Job?
        /// The jobs alike the one last returned (same priority, owner and shape) that come after it: a pass skips them
        /// once it fits nowhere (capacity only shrinks within a pass).
        mutating func skipRestOfGroup()
    }

    /// Any sequence in order; it knows no groups and skips nothing.
    struct InOrder<Base: IteratorProtocol<Job>>: Order {
        var base: Base
        mutating func next() -> Job? { base.next() }
        func skipRestOfGroup() {}
    }

    /// The plan itself. With `skipGroups`, a job that fits nowhere (and avoids no worker or owner, which would only make
    /// it harder to place than the others of its group) ends its group's part in the pass: the group's other jobs are not
    /// walked and get no reason in the plan, as after a stop when full.
    static func plan(_ order: inout some Order, workers: [Worker], stopWhenFull: Bool, skipGroups: Bool, checkSeed: UInt64 = 0) -> Plan {
        var workers = workers
        func before(_ i: Int, _ j: Int) -> Bool {
            let (li, lj) = (workers[i].effectiveLoad, workers[j].effectiveLoad)
            if li != lj { return li < lj }
            if workers[i].tieBreak != workers[j].tieBreak { return workers[i].tieBreak < workers[j].tieBreak }
            return workers[i].id < workers[j].id
        }
        func hasRoom(_ i: Int) -> Bool { workers[i].freeSlots > 0 && workers[i].free.cpus > 0 }
        var assignments: [Assignment] = []
        var pending: [JobID: PendingReason] = [:]
        var noFit: Set<Shape> = []
        var checkOwnersByShape: [Shape: Set<UserID>] = [:]
        var reasons: [Shape: PendingReason] = [:]
        let ownerMatters = Placement.ownerMatters(workers)
        // The room for others' jobs: one per owner, shared by its workers (a worker with no owner has its own).
        var ownerRoom = Placement.ownerRooms(workers)
        func windowTakes(_ i: Int, _ job: Job) -> Bool {
            guard let owner = workers[i].owner else { return workers[i].othersRoom > 0 }
            return owner == job.owner || (ownerRoom[owner] ?? 0) > 0
        }
        // Workers with room, least-loaded first, in two kinds of list: `open`, those that may still take others' jobs,
        // and `ownOnly`, per owner, those that take only their owner's (restricted or quarantined ones, and every worker
        // of an owner whose window for others is spent). A job looks only at `open` and its own owner's list: on a
        // grid of many owners whose windows fill, the rest of the workers are never walked. (A worker that takes no
        // one, an ownerless one whose window is spent or a quarantined one without an owner, is in neither.)
        func takesOthers(_ i: Int) -> Bool {
            guard let owner = workers[i].owner else { return workers[i].othersRoom > 0 && !workers[i].quarantined }
            return workers[i].acceptsOthers && !workers[i].quarantined && (ownerRoom[owner] ?? 0) > 0
        }
        var open: [Int] = []
        var ownOnly: [UserID: [Int]] = [:]
        for i in workers.indices.filter(hasRoom).sorted(by: before) {
            if takesOthers(i) {
                open.append(i)
            } else if let owner = workers[i].owner {
                ownOnly[owner, default: []].append(i)
            }
        }
        var readyCount = open.count + ownOnly.values.reduce(0) { $0 + $1.count }
        /// Inserts `w` into `list` at its place by load (binary search).
        func insert(_ w: Int, into list: inout [Int]) {
            var lo = 0
            var hi = list.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if before(list[mid], w) { lo = mid + 1 } else { hi = mid }
            }
            list.insert(w, at: lo)
        }
        while let job = order.next() {
            if stopWhenFull && readyCount == 0 { break }
            let shape = Shape(job, ownerMatters: ownerMatters)
            // The chosen worker: which list (nil: `open`) and where in it.
            var chosen: (owner: UserID?, at: Int)?
            // A check run that found no room waits for its drawn owner, not for its shape: it leaves no mark for others.
            let isCheck = !job.avoidOwners.isEmpty
            if isCheck || !noFit.contains(shape) {
                let fits: (Int) -> Bool = {
                    Placement.hasRoom(tier: workers[$0].tier, free: workers[$0].free, freeSlots: workers[$0].freeSlots, for: job.minTier, job.request)
                        && !job.avoid.contains(workers[$0].id) && workers[$0].takes(job) && workers[$0].hasPython(for: job)
                        && workers[$0].hasDisk(for: job) && windowTakes($0, job)
                }
                let own = ownOnly[job.owner] ?? []
                // The least-loaded of `open` and the job's owner's own that `test` passes: both are in load order.
                func first(where test: (Int) -> Bool) -> (owner: UserID?, at: Int)? {
                    let a = open.firstIndex(where: test)
                    let b = own.firstIndex(where: test)
                    switch (a, b) {
                    case (nil, nil): return nil
                    case (let a?, nil): return (nil, a)
                    case (nil, let b?): return (job.owner, b)
                    case (let a?, let b?): return before(own[b], open[a]) ? (job.owner, b) : (nil, a)
                    }
                }
                if !job.avoidOwners.isEmpty {
                    // A check run: on a worker of the drawn owner (`checkOwner`) with room, in `open` or the job owner's
                    // own (a check avoids its submitter, so that list gives none but in a plan of other jobs).
                    // The owners that could run it, once per shape in a pass (the workers' totals do not change in one).
                    let owners = checkOwnersByShape[shape] ?? checkOwners(job, workers: workers)
                    checkOwnersByShape[shape] = owners
                    if let owner = checkOwner(job.id, among: owners, seed: checkSeed) {
                        let fitOpen = open.indices.filter { workers[open[$0]].owner == owner && fits(open[$0]) }
                        let fitOwn = own.indices.filter { workers[own[$0]].owner == owner && fits(own[$0]) }
                        let candidates = fitOpen.map { open[$0] } + fitOwn.map { own[$0] }
                        chosen = checkWorker(candidates, ids: { workers[$0].id }, job: job.id, seed: checkSeed).map { p in
                            p < fitOpen.count ? (nil, fitOpen[p]) : (job.owner, fitOwn[p - fitOpen.count])
                        }
                    }
                } else {
                    // Locality: the least-loaded worker that fits and already has the job's environment, else the
                    // least-loaded that fits.
                    if let env = job.env { chosen = first { workers[$0].envs.contains(env) && fits($0) } }
                    if chosen == nil { chosen = first(where: fits) }
                }
            }
            guard let (list, position) = chosen else {
                if !isCheck { noFit.insert(shape) }
                if reasons[shape] == nil { reasons[shape] = reason(for: job, workers: workers) }
                pending[job.id] = reasons[shape]
                if skipGroups && job.avoid.isEmpty && job.avoidOwners.isEmpty { order.skipRestOfGroup() }
                continue
            }
            let w = list.map { ownOnly[$0]!.remove(at: position) } ?? open.remove(at: position)
            readyCount -= 1
            workers[w].free = workers[w].free - job.request
            workers[w].freeSlots -= 1
            var spent: UserID?
            if let owner = workers[w].owner {
                if owner != job.owner {
                    ownerRoom[owner, default: 0] -= 1
                    if (ownerRoom[owner] ?? 0) <= 0 { spent = owner }
                }
            } else {
                workers[w].othersRoom -= 1
            }
            assignments.append(Assignment(job: job.id, worker: workers[w].id))
            if hasRoom(w) {
                if takesOthers(w) {
                    insert(w, into: &open)
                    readyCount += 1
                } else if let owner = workers[w].owner {
                    insert(w, into: &ownOnly[owner, default: []])
                    readyCount += 1
                }
            }
            // An owner whose window for others is now spent: its workers in `open` take only its jobs from here on.
            if let spent {
                let moving = open.filter { workers[$0].owner == spent }
                if !moving.isEmpty {
                    open.removeAll { workers[$0].owner == spent }
                    for m in moving { insert(m, into: &ownOnly[spent, default: []]) }
                }
            }
            // Capacity only shrinks within a pass, so shapes that did not fit still do not.
        }
        return Plan(assignments: assignments, pending: pending)
    }

    /// Why each of `jobs` cannot be placed on `workers` (as `plan` gives it), worked out once per request shape.
    public static func reasons(for jobs: some Sequence<Job>, workers: [Worker]) -> [JobID: PendingReason] {
        let ownerMatters = Placement.ownerMatters(workers)
        var byShape: [Shape: PendingReason] = [:]
        var out: [JobID: PendingReason] = [:]
        for job in jobs {
            let shape = Shape(job, ownerMatters: ownerMatters)
            if let known = byShape[shape] {
                out[job.id] = known
            } else {
                let reason = reason(for: job, workers: workers)
                byShape[shape] = reason
                out[job.id] = reason
            }
        }
        return out
    }

    /// What the workers are, as far as a pending reason depends on it: who they are, their totals, tiers, owners,
    /// whom they take, quarantine and Python (not their load or what they have free). Equal sets give equal values.
    public static func fingerprint(_ workers: [Worker]) -> Int {
        var sum = 0
        for w in workers {
            var h = Hasher()
            h.combine(w.id)
            h.combine(w.total)
            h.combine(w.tier)
            h.combine(w.owner)
            h.combine(w.acceptsOthers)
            h.combine(w.quarantined)
            h.combine(w.python)
            h.combine(w.maxJobDiskGb)
            h.combine(w.enforcesJobDisk)
            sum &+= h.finalize()
        }
        var h = Hasher()
        h.combine(workers.count)
        h.combine(sum)
        return h.finalize()
    }

    /// Whether a job's owner decides whether some worker takes it: a worker that takes only its owner's jobs, or an
    /// owner whose window for others' jobs is smaller than its workers' free slots (they may fill with others' jobs and
    /// still have room for the owner's). A window no smaller than the free slots stays so through a pass (each job given
    /// takes a slot, and at most one place in the window), so it never makes an owner matter.
    static func ownerMatters(_ workers: [Worker]) -> Bool {
        if workers.contains(where: { $0.owner != nil && (!$0.acceptsOthers || $0.quarantined) }) { return true }
        var slots: [UserID: Int] = [:]
        for w in workers { if let o = w.owner { slots[o, default: 0] += max(0, w.freeSlots) } }
        return ownerRooms(workers).contains { $0.value < (slots[$0.key] ?? 0) }
    }

    /// Each owner's room for others' jobs: the least its workers carry.
    static func ownerRooms(_ workers: [Worker]) -> [UserID: Int] {
        var room: [UserID: Int] = [:]
        for w in workers { if let o = w.owner { room[o] = min(room[o] ?? .max, w.othersRoom) } }
        return room
    }

    /// What makes two requests interchangeable for placement. The owner counts only while some worker takes only its
    /// owner's jobs (otherwise every owner is alike, and 100,000 jobs of many users still share a few shapes).
    private struct Shape: Hashable {
        var request: Resources
        var minTier: SandboxTier
        var avoid: Set<WorkerID>
        var avoidOwners: Set<UserID>
        var owner: UserID?
        var requiresPython: String?
        var diskGb: Int
        init(_ job: Job, ownerMatters: Bool) {
            requiresPython = job.requiresPython
            diskGb = job.diskGb
            request = job.request
            minTier = job.minTier
            avoid = job.avoid
            avoidOwners = job.avoidOwners
            owner = ownerMatters || !job.avoidOwners.isEmpty ? job.owner : nil
        }
    }

    /// A worker's disk limit in words: "2 GB", "0.5 GB".
    static func gigabytes(_ gb: Double) -> String {
        guard gb.isFinite else { return "any amount" }
        return gb == gb.rounded() && abs(gb) < 1e15 ? "\(Int64(gb)) GB" : "\(gb) GB"
    }

    /// Why `job` cannot be placed on any of `workers` now.
    public static func reason(for job: Job, workers: [Worker]) -> PendingReason {
        if workers.isEmpty { return .noWorkerOnline }
        if workers.contains(where: { $0.couldRun(job) && !job.avoid.contains($0.id) }) {
            return .waitingForCapacity
        }
        if workers.contains(where: { $0.couldRun(job) }) {
            return .noWorkerFits(unmet: ["a worker other than the ones that could not start it"])
        }
        // What the job's owner and the owners it avoids aside, a worker could run it: its tier, Python, disk, resources.
        let capable = { (w: Worker) in w.tier >= job.minTier && w.hasPython(for: job) && w.hasDisk(for: job) && w.total.covers(job.request) }
        if !job.avoidOwners.isEmpty, workers.contains(where: { capable($0) && $0.takes(job.owner) }) {
            return .waitingForAnotherOwner
        }
        let refusing = workers.filter { capable($0) && !$0.takes(job.owner) }
        if !refusing.isEmpty { return refusing.allSatisfy(\.quarantined) ? .onlyQuarantinedWorkers : .onlyUnsandboxedWorkers }
        // Report what the closest worker lacks: the one with the fewest unmet requirements.
        var best: [String]?
        for w in workers {
            var unmet = w.total.unmet(job.request)
            if w.tier < job.minTier { unmet.append("sandbox tier \(job.minTier.rawValue) or stronger") }
            if !w.hasPython(for: job) { unmet.append("Python \(job.requiresPython ?? "") (it has \(w.python ?? "?"))") }
            if !w.hasDisk(for: job) {
                unmet.append(
                    w.enforcesJobDisk
                        ? "\(job.diskGb) GB of scratch disk (it allows \(Self.gigabytes(w.maxJobDiskGb)))"
                        : "\(job.diskGb) GB of scratch disk (an older worker: it runs only jobs that ask for the default \(JobSpec.defaultDiskGb) GB)")
            }
            if best == nil || unmet.count < best!.count { best = unmet }
        }
        return .noWorkerFits(unmet: best ?? [])
    }
}
