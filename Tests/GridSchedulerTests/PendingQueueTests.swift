import GridCore
import GridScheduler
import Testing

private func job(_ id: JobID, owner: UserID = 1, priority: Int = 0, cpus: Int = 1, submitted: Double? = nil) -> Placement.Job {
    Placement.Job(id: id, owner: owner, priority: priority, request: Resources(cpus: cpus, ramGb: 1), minTier: .restricted, submitted: submitted ?? Double(id))
}

/// The order `Placement.plan(jobs:workers:usage:)` sorts jobs in, written out again: what `PendingQueue` must match.
private func sorted(_ jobs: [Placement.Job], usage: [UserID: Double]) -> [JobID] {
    jobs.sorted { a, b in
        if a.priority != b.priority { return a.priority > b.priority }
        let ua = usage[a.owner, default: 0]
        let ub = usage[b.owner, default: 0]
        if ua != ub { return ua < ub }
        if a.submitted != b.submitted { return a.submitted < b.submitted }
        return a.id < b.id
    }.map(\.id)
}

@Suite("PendingQueue")
struct PendingQueueTests {
    @Test func jobsComeOutByPriorityThenFairShareThenAge() {
        var q = PendingQueue()
        q.upsert(job(1, owner: 1), reason: nil)
        q.upsert(job(2, owner: 2), reason: nil)
        q.upsert(job(3, owner: 1, priority: 5), reason: nil)
        q.upsert(job(4, owner: 2), reason: nil)
        q.upsert(job(5, owner: 3, priority: -1), reason: nil)
        // Owner 1 used more: owner 2's jobs go first among priority 0.
        #expect(q.ordered(usage: [1: 10, 2: 1]).map(\.id) == [3, 2, 4, 1, 5])
        // Equal usage: owners' jobs interleave by age.
        #expect(q.ordered(usage: [:]).map(\.id) == [3, 1, 2, 4, 5])
    }

    @Test func equalSubmissionTimesAreOrderedById() {
        var q = PendingQueue()
        for (id, owner) in [(9, 2), (3, 1), (7, 3), (5, 2)] as [(JobID, UserID)] { q.upsert(job(id, owner: owner, submitted: 100), reason: nil) }
        #expect(q.ordered(usage: [:]).map(\.id) == [3, 5, 7, 9])
    }

    @Test func aJobChangedInPlaceIsNotListedTwice() {
        var q = PendingQueue()
        q.upsert(job(1), reason: nil)
        q.upsert(job(1, cpus: 4), reason: "waiting")
        #expect(q.ordered(usage: [:]).map(\.id) == [1])
        #expect(q.job(1)?.request.cpus == 4)
        #expect(q.reason(of: 1) == "waiting")
    }

    @Test func aJobWhosePriorityChangedMovesToItsNewPlace() {
        var q = PendingQueue()
        q.upsert(job(1), reason: nil)
        q.upsert(job(2), reason: nil)
        q.upsert(job(2, priority: 3), reason: nil)
        #expect(q.ordered(usage: [:]).map(\.id) == [2, 1])
        q.upsert(job(2, priority: -3), reason: nil)
        #expect(q.ordered(usage: [:]).map(\.id) == [1, 2])
        #expect(q.count == 2)
    }

    @Test func aJobRemovedAndQueuedAgainComesOutOnce() {
        // A run lost puts its job back: pending → running → pending, same group, same age.
        var q = PendingQueue()
        q.upsert(job(1), reason: nil)
        q.upsert(job(2), reason: nil)
        q.remove(1)
        #expect(q.ordered(usage: [:]).map(\.id) == [2])
        q.upsert(job(1), reason: nil)
        #expect(q.ordered(usage: [:]).map(\.id) == [1, 2])
        q.remove(1)
        q.remove(1)
        q.remove(99)
        #expect(q.ordered(usage: [:]).map(\.id) == [2])
        q.remove(2)
        #expect(q.isEmpty)
        #expect(q.ordered(usage: [:]).isEmpty)
    }

    @Test func anOlderJobArrivingLateIsSortedIntoPlace() {
        var q = PendingQueue()
        q.upsert(job(5), reason: nil)
        q.upsert(job(6), reason: nil)
        q.upsert(job(2), reason: nil)
        #expect(q.ordered(usage: [:]).map(\.id) == [2, 5, 6])
    }

    @Test func boundaryPrioritiesAndUsageDoNotTrap() {
        var q = PendingQueue()
        q.upsert(job(1, owner: 1, priority: Int.min), reason: nil)
        q.upsert(job(2, owner: 2, priority: Int.max), reason: nil)
        q.upsert(job(3, owner: Int64.min, priority: 0, submitted: -.infinity), reason: nil)
        q.upsert(job(4, owner: Int64.max, priority: 0, submitted: .greatestFiniteMagnitude), reason: nil)
        let usage: [UserID: Double] = [Int64.min: .greatestFiniteMagnitude, Int64.max: 0]
        #expect(q.ordered(usage: usage).map(\.id) == [2, 4, 3, 1])
    }

    @Test func avoidSetsAndRecordedReasonsStayWithTheJob() {
        var q = PendingQueue()
        q.upsert(job(1), reason: "old")
        q.setAvoid(1, ["w1"])
        q.setAvoid(2, ["w1"])
        q.recorded(reason: "new", for: 1)
        q.recorded(reason: "never", for: 2)
        #expect(q.job(1)?.avoid == ["w1"])
        #expect(q.reason(of: 1) == "new")
        #expect(!q.contains(2))
        #expect(q.ordered(usage: [:]).first?.avoid == ["w1"])
    }

    @Test func removeAllEmptiesTheQueue() {
        var q = PendingQueue()
        for id in 1...10 { q.upsert(job(JobID(id), owner: UserID(id % 3)), reason: nil) }
        q.removeAll()
        #expect(q.isEmpty)
        #expect(q.ordered(usage: [:]).isEmpty)
    }

    /// Random histories of adds, changes and removals (seeded, replayable): after each step the queue's order is the
    /// order Placement sorts the same jobs in, and planning from it gives the same plan.
    @Test(arguments: [1, 2, 3, 4, 5] as [UInt64]) func randomHistoriesKeepPlacementsOrder(_ seed: UInt64) {
        var rng = SplitMix(seed: seed)
        var q = PendingQueue()
        var model: [JobID: Placement.Job] = [:]
        let workers = (0..<4).map { i in
            Placement.Worker(id: "w\(i)", total: Resources(cpus: 4, ramGb: 8), free: Resources(cpus: 4, ramGb: 8), load: 0, tier: .bwrap, freeSlots: 4)
        }
        for step in 0..<400 {
            let id = JobID(rng.next() % 60)
            switch rng.next() % 4 {
            case 0, 1:
                let j = job(
                    id, owner: UserID(rng.next() % 4), priority: Int(rng.next() % 3) - 1, cpus: 1 + Int(rng.next() % 3),
                    submitted: Double(rng.next() % 50))
                q.upsert(j, reason: nil)
                model[id] = j
            case 2:
                q.remove(id)
                model[id] = nil
            default:
                if model[id] != nil {
                    q.setAvoid(id, ["w\(rng.next() % 4)"])
                    model[id]?.avoid = q.job(id)!.avoid
                }
            }
            let usage: [UserID: Double] = [0: Double(rng.next() % 3), 1: Double(rng.next() % 3), 2: 1, 3: 0]
            let ordered = q.ordered(usage: usage)
            #expect(ordered.map(\.id) == sorted(Array(model.values), usage: usage), "step \(step)")
            #expect(q.count == model.count)
            if step % 50 == 0 {
                #expect(
                    Placement.plan(ordered: ordered, workers: workers) == Placement.plan(jobs: Array(model.values), workers: workers, usage: usage))
            }
        }
    }
}
