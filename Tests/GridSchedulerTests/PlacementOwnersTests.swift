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
                // A check run: a worker with room of the drawn owner (seed 0, as the plan below).
                if let owner = Placement.checkOwner(job, workers: workers, seed: 0) {
                    let fitting = ready.filter { workers[$0].owner == owner && fits($0) }
                    chosen = Placement.checkWorker(fitting, ids: { workers[$0].id }, job: job.id, seed: 0).map { fitting[$0] }
                }
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

/// Where a check run goes: nothing a worker says of itself steers it (hostile reviews of the money paths).
@Suite struct CheckPlacementTests {
    static func worker(_ id: String, owner: UserID, load: Double, envs: Set<String> = [], freeSlots: Int = 2) -> Placement.Worker {
        var w = Placement.Worker(
            id: id, total: Resources(cpus: 4, ramGb: 8), free: Resources(cpus: 4, ramGb: 8), load: load, tier: .bwrap, freeSlots: freeSlots,
            envs: envs)
        w.owner = owner
        return w
    }

    static let (ada, mallory, bob, carol, dave): (UserID, UserID, UserID, UserID, UserID) = (1, 2, 3, 4, 5)
    static let check = Placement.Job(
        id: 7, owner: ada, priority: 0, request: Resources(cpus: 1, ramGb: 1), minTier: .restricted, submitted: 0, avoidOwners: [ada, mallory],
        env: "e1")

    /// Where the check of run 7 goes over 300 seeds: each worker's owner, or nil while it waits.
    static func draws(_ workers: [Placement.Worker]) -> [UserID?: Int] {
        var out: [UserID?: Int] = [:]
        for seed in 0..<300 as Range<UInt64> {
            let placed = Placement.plan(jobs: [check], workers: workers, checkSeed: seed &* 0x2545_F491_4F6C_DD1D).assignments.first
            out[placed.flatMap { p in workers.first { $0.id == p.worker }?.owner }, default: 0] += 1
        }
        return out
    }

    /// Mallory's worker forged Ada's result; Bob is Mallory's second account. Bob's 20 workers claim no load and the
    /// job's environment, Carol's and Dave's are busier and lack it. The check is drawn by owner: Bob's about a third
    /// of the time, Carol's and Dave's each as often, however many workers Bob runs and whatever they claim. Before,
    /// the least-loaded worker holding the environment took it every time: Bob's, which agreed with the forgery.
    @Test func aCheckRunIsDrawnByOwnerWhateverTheWorkersClaim() {
        let workers =
            [Self.worker("carol-pc", owner: Self.carol, load: 0.9), Self.worker("dave-pc", owner: Self.dave, load: 0.9)]
            + (0..<20).map { Self.worker("bob-\($0)", owner: Self.bob, load: 0, envs: ["e1"]) }
        let owners = Self.draws(workers)
        for owner in [Self.bob, Self.carol, Self.dave] {
            #expect((60...140).contains(owners[owner] ?? 0), "owner \(owner): \(owners)")
        }
        #expect(owners[Self.ada] == nil && owners[Self.mallory] == nil && owners[nil] == nil, "\(owners)")
        // An ordinary job still goes by locality and load: to one of Bob's, the least loaded with its environment.
        var plain = Self.check
        plain.id = 8
        plain.avoidOwners = []
        let placed = Placement.plan(jobs: [plain], workers: workers).assignments.first?.worker
        #expect(placed?.hasPrefix("bob-") == true, "\(String(describing: placed))")
    }

    /// Carol's and Dave's workers are full; Bob's keep room (its worker claims a high load, so that ordinary jobs pass it
    /// by). A check drawn for Carol or Dave waits for their room rather than going to whoever is free: Bob gets it only
    /// when drawn, about a third of the time. (First mend's review: drawing among the workers with room only left it to
    /// whoever kept room free.)
    @Test func aCheckDrawnForABusyOwnerWaitsForItsRoom() {
        let workers = [
            Self.worker("carol-pc", owner: Self.carol, load: 0.2, freeSlots: 0), Self.worker("dave-pc", owner: Self.dave, load: 0.2, freeSlots: 0),
            Self.worker("bob-pc", owner: Self.bob, load: 1),
        ]
        let owners = Self.draws(workers)
        #expect((60...140).contains(owners[Self.bob] ?? 0), "\(owners)")
        #expect((160...240).contains(owners[nil] ?? 0), "the rest wait: \(owners)")
        // The one that waits says so.
        var waited = 0
        for seed in 0..<20 as Range<UInt64> {
            let plan = Placement.plan(jobs: [Self.check], workers: workers, checkSeed: seed)
            if plan.assignments.isEmpty {
                waited += 1
                #expect(plan.pending[Self.check.id] == .waitingForCapacity, "\(plan.pending)")
            }
        }
        #expect(waited > 0)
    }

    /// A worker that takes no new job for now (stopping, its disk nearly full) is not drawn for checks: Carol's only
    /// worker drains, so every check goes to Dave's (before, a third of them waited on Carol's for hours).
    @Test func aDrainingWorkersOwnerIsNotDrawn() {
        var carols = Self.worker("carol-pc", owner: Self.carol, load: 0, freeSlots: 0)
        carols.draining = true
        let owners = Self.draws([carols, Self.worker("dave-pc", owner: Self.dave, load: 0.5)])
        #expect(owners == [Self.dave: 300], "\(owners)")
    }

    /// The draw is the manager's seed's and the job's: the same seed and job place the same way whatever order the
    /// workers come in; the seed holds for its period, then changes (at a moment the secret shifts); no number traps it.
    @Test func theDrawDependsOnTheSeedAndTheWorkersOnly() {
        let workers = (0..<6).map { Self.worker("w\($0)", owner: UserID(10 + $0 % 3), load: Double($0) / 10) }
        let check = Placement.Job(
            id: 9, owner: 1, priority: 0, request: Resources(cpus: 1, ramGb: 1), minTier: .restricted, submitted: 0, avoidOwners: [1])
        for seed in [0, 1, 42, .max] as [UInt64] {
            let a = Placement.plan(jobs: [check], workers: workers, checkSeed: seed).assignments
            let b = Placement.plan(jobs: [check], workers: workers.reversed(), checkSeed: seed).assignments
            #expect(a == b && a.count == 1, "seed \(seed)")
        }
        #expect(Placement.checkWorker([], ids: { "w\($0)" }, job: 1, seed: 0) == nil)
        #expect(Placement.checkOwner(check, workers: [], seed: 0) == nil)
        let t = 1_800_000_000.0
        for secret in [5, 6, 599, .max] as [UInt64] {
            // Within any 600 s it changes once at most, and 600 s on it is another.
            let seen = Set(stride(from: t, to: t + 600, by: 10).map { Placement.checkSeed(secret: secret, now: $0, every: 600) })
            #expect((1...2).contains(seen.count), "secret \(secret)")
            #expect(Placement.checkSeed(secret: secret, now: t, every: 600) != Placement.checkSeed(secret: secret, now: t + 600, every: 600))
        }
        #expect(Placement.checkSeed(secret: 5, now: t, every: 600) != Placement.checkSeed(secret: 6, now: t, every: 600))
        for odd in [Double.nan, .infinity, -.infinity, 1e300, -1e300, 0, -1] {
            _ = Placement.checkSeed(secret: .max, now: odd, every: 600)
            _ = Placement.checkSeed(secret: .max, now: t, every: odd)
        }
    }

    /// Owners joining or leaving move only their share of the checks: drawn by rendezvous, a check keeps its owner
    /// unless the owner that joins outdraws it, or its own owner leaves. (Second review: drawn by position in the list,
    /// an owner's coming and going drew nearly every waiting check again, and a colluder could churn workers until a
    /// check landed on whoever had room.)
    @Test func ownersComingAndGoingMoveOnlyTheirShareOfTheChecks() {
        let before: Set<UserID> = [3, 4, 5]
        var moved = (joined: 0, left: 0)
        for job in 1...600 as ClosedRange<JobID> {
            let was = Placement.checkOwner(job, among: before, seed: 77)
            let afterJoin = Placement.checkOwner(job, among: before.union([6]), seed: 77)
            #expect(afterJoin == was || afterJoin == 6, "job \(job)")
            if afterJoin != was { moved.joined += 1 }
            let afterLeave = Placement.checkOwner(job, among: [3, 4], seed: 77)
            #expect(was == 5 || afterLeave == was, "job \(job)")
            if afterLeave != was { moved.left += 1 }
        }
        // About a quarter go to the owner that joined, about a third leave with the one that left.
        #expect((100...200).contains(moved.joined), "\(moved)")
        #expect((140...260).contains(moved.left), "\(moved)")
        #expect(Placement.checkOwner(1, among: [], seed: 0) == nil)
    }
}
