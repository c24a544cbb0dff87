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
            if let env = job.env { chosen = ready.first { workers[$0].envs.contains(env) && fits($0) } }
            if chosen == nil { chosen = ready.first(where: fits) }
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
