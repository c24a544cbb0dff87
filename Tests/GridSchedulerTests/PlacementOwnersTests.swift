import GridCore
import Testing

@testable import GridScheduler

/// The planner keeps the workers that take only their owner's jobs (restricted, quarantined, or of an owner whose window
/// for others is spent) apart, so that a job walks only the open ones and its own owner's. That must change nothing:
/// every plan is the one the plain walk over all workers with room gives, written out again here, on random grids of
/// owners, windows, tiers, quarantine, environments and avoided workers and owners.
@Suite struct PlacementOwnersTests {
    /// The plain planner: every worker with room, least-loaded first, walked for every job.
    static func reference(_ order: [Placement.Job], workers: [Placement.Worker]) -> [Placement.Assignment] {
        var workers = workers
        var room = Placement.ownerRooms(workers)
        var out: [Placement.Assignment] = []
        for job in order {
            let ready = workers.indices.filter { workers[$0].freeSlots > 0 && workers[$0].free.cpus > 0 }.sorted { i, j in
                let (li, lj) = (workers[i].effectiveLoad, workers[j].effectiveLoad)
                if li != lj { return li < lj }
                if workers[i].tieBreak != workers[j].tieBreak { return workers[i].tieBreak < workers[j].tieBreak }
                return workers[i].id < workers[j].id
            }
            func fits(_ i: Int) -> Bool {
                let w = workers[i]
                let window = w.owner.map { $0 == job.owner || (room[$0] ?? 0) > 0 } ?? (w.othersRoom > 0)
                return Placement.hasRoom(tier: w.tier, free: w.free, freeSlots: w.freeSlots, for: job.minTier, job.request)
                    && !job.avoid.contains(w.id) && w.takes(job) && w.hasPython(for: job) && w.hasDisk(for: job) && window
            }
            var chosen: Int?
            if !job.avoidOwners.isEmpty {
                // A check run: drawn among all that fit (seed 0, as the plan below).
                let fitting = ready.filter(fits)
                chosen = Placement.checkChoice(fitting, owners: { workers[$0].owner }, ids: { workers[$0].id }, job: job.id, seed: 0).map { fitting[$0] }
            } else {
                if let env = job.env { chosen = ready.first { workers[$0].envs.contains(env) && fits($0) } }
                if chosen == nil { chosen = ready.first(where: fits) }
            }
            guard let w = chosen else { continue }
            workers[w].free = workers[w].free - job.request
            workers[w].freeSlots -= 1
            if let owner = workers[w].owner {
                if owner != job.owner { room[owner, default: 0] -= 1 }
            } else {
                workers[w].othersRoom -= 1
            }
            out.append(Placement.Assignment(job: job.id, worker: workers[w].id))
        }
        return out
    }

    @Test(arguments: Array(1...40) as [UInt64])
    func theSplitPlannerPlacesExactlyAsThePlainWalk(_ seed: UInt64) {
        var rng = SplitMix(seed: seed)
        func pick<T>(_ options: [T]) -> T { options[Int(rng.next() % UInt64(options.count))] }
        let owners: [UserID] = [1, 2, 3, 4, 5]
        let workerCount = 5 + Int(rng.next() % 40)
        let workers: [Placement.Worker] = (0..<workerCount).map { i in
            let cpus = pick([1, 2, 4, 8])
            var w = Placement.Worker(
                id: "w\(i)", total: Resources(cpus: cpus, ramGb: 8), free: Resources(cpus: pick([0, 1, cpus, cpus]), ramGb: 8),
                load: Double(rng.next() % 4) / 4, tier: pick([.restricted, .bwrap, .bwrap]), freeSlots: pick([0, 1, 2, 4]),
                tieBreak: rng.next() % 3, envs: pick([[], ["e1"], ["e2"]]))
            w.owner = pick([nil, 1, 2, 3, 3, 4])
            w.acceptsOthers = pick([true, true, true, false])
            w.quarantined = rng.next() % 10 == 0
            w.othersRoom = pick([0, 1, 2, 4, .max])
            return w
        }
        let jobs: [Placement.Job] = (0..<(20 + Int(rng.next() % 120))).map { i in
            var j = Placement.Job(
                id: JobID(i + 1), owner: pick(owners), priority: 0, request: Resources(cpus: pick([1, 1, 2, 4]), ramGb: 1),
                minTier: pick([.restricted, .restricted, .bwrap]), submitted: Double(i), env: pick([nil, nil, "e1", "e2"]))
            if rng.next() % 8 == 0 { j.avoid = ["w\(rng.next() % UInt64(workerCount))"] }
            if rng.next() % 10 == 0 { j.avoidOwners = [pick(owners)] }
            return j
        }
        let plan = Placement.plan(ordered: jobs, workers: workers)
        let expected = Self.reference(jobs, workers: workers)
        #expect(plan.assignments == expected, "seed \(seed)")
        // Every job is either placed or has a reason.
        #expect(Set(plan.assignments.map(\.job)).union(plan.pending.keys) == Set(jobs.map(\.id)))
    }

    /// Once every owner's window for others is spent, each owner's jobs still go to its own workers, least-loaded first.
    @Test func spentWindowsLeaveEachOwnerItsOwnWorkers() {
        let workers = (0..<6).map { i in
            var w = Placement.Worker(
                id: "w\(i)", total: Resources(cpus: 4, ramGb: 8), free: Resources(cpus: 4, ramGb: 8), load: Double(i) / 10, tier: .bwrap, freeSlots: 4)
            w.owner = UserID(1 + i % 2)
            w.othersRoom = 1
            return w
        }
        let jobs = (0..<8).map { i in
            Placement.Job(id: JobID(i + 1), owner: i < 5 ? 1 : 2, priority: 0, request: Resources(cpus: 1, ramGb: 1), minTier: .restricted, submitted: Double(i))
        }
        let plan = Placement.plan(ordered: jobs, workers: workers)
        #expect(plan.assignments == Self.reference(jobs, workers: workers))
        #expect(plan.assignments.count == 8)
        // Each owner's workers took at most one job of the other owner (their window), the rest of their own owner.
        let ownerOf = Dictionary(uniqueKeysWithValues: workers.map { ($0.id, $0.owner!) })
        let jobOwner = Dictionary(uniqueKeysWithValues: jobs.map { ($0.id, $0.owner) })
        for owner: UserID in [1, 2] {
            let others = plan.assignments.filter { ownerOf[$0.worker] == owner && jobOwner[$0.job] != owner }
            #expect(others.count <= 1, "\(plan.assignments)")
        }
    }
}

/// Where a check run goes: nothing a worker says of itself steers it (hostile review of the money paths).
@Suite struct CheckPlacementTests {
    static func worker(_ id: String, owner: UserID, load: Double, envs: Set<String> = []) -> Placement.Worker {
        var w = Placement.Worker(
            id: id, total: Resources(cpus: 4, ramGb: 8), free: Resources(cpus: 4, ramGb: 8), load: load, tier: .bwrap, freeSlots: 2,
            envs: envs)
        w.owner = owner
        return w
    }

    /// Mallory's worker forged Ada's result; Bob is Mallory's second account. Bob's 20 workers claim no load and the
    /// job's environment, Carol's and Dave's are busy and lack it. The check is drawn by owner: Bob's about a third of
    /// the time, Carol's and Dave's each as often, however many workers Bob runs and whatever they claim. Before, the
    /// least-loaded worker holding the environment took it every time: Bob's, which agreed with the forgery.
    @Test func aCheckRunIsDrawnByOwnerWhateverTheWorkersClaim() {
        let (ada, mallory, bob, carol, dave): (UserID, UserID, UserID, UserID, UserID) = (1, 2, 3, 4, 5)
        let workers =
            [Self.worker("carol-pc", owner: carol, load: 0.9), Self.worker("dave-pc", owner: dave, load: 0.9)]
            + (0..<20).map { Self.worker("bob-\($0)", owner: bob, load: 0, envs: ["e1"]) }
        let check = Placement.Job(
            id: 7, owner: ada, priority: 0, request: Resources(cpus: 1, ramGb: 1), minTier: .restricted, submitted: 0,
            avoidOwners: [ada, mallory], env: "e1")
        var owners: [UserID: Int] = [:]
        for seed in 0..<300 as Range<UInt64> {
            let plan = Placement.plan(jobs: [check], workers: workers, checkSeed: seed &* 0x2545_F491_4F6C_DD1D)
            let placed = try? #require(plan.assignments.first)
            guard let placed, let w = workers.first(where: { $0.id == placed.worker }) else { continue }
            owners[w.owner!, default: 0] += 1
        }
        #expect(owners.values.reduce(0, +) == 300)
        for owner in [bob, carol, dave] {
            #expect((60...140).contains(owners[owner] ?? 0), "owner \(owner): \(owners)")
        }
        #expect(owners[ada] == nil && owners[mallory] == nil)
        // An ordinary job still goes by locality and load: to one of Bob's, the least loaded with its environment.
        var plain = check
        plain.id = 8
        plain.avoidOwners = []
        let placed = Placement.plan(jobs: [plain], workers: workers).assignments.first?.worker
        #expect(placed?.hasPrefix("bob-") == true, "\(String(describing: placed))")
    }

    /// The draw is the manager's (a seed drawn each pass) and the job's: the same seed and job place the same way, and
    /// it depends on which workers fit, not on the order they are given in.
    @Test func theDrawDependsOnTheSeedAndTheWorkersThatFitOnly() {
        let workers = (0..<6).map { Self.worker("w\($0)", owner: UserID(10 + $0 % 3), load: Double($0) / 10) }
        let check = Placement.Job(
            id: 9, owner: 1, priority: 0, request: Resources(cpus: 1, ramGb: 1), minTier: .restricted, submitted: 0, avoidOwners: [1])
        for seed in [0, 1, 42, .max] as [UInt64] {
            let a = Placement.plan(jobs: [check], workers: workers, checkSeed: seed).assignments
            let b = Placement.plan(jobs: [check], workers: workers.reversed(), checkSeed: seed).assignments
            #expect(a == b && a.count == 1, "seed \(seed)")
        }
        #expect(Placement.checkChoice([], owners: { _ in nil }, ids: { "w\($0)" }, job: 1, seed: 0) == nil)
    }
}
