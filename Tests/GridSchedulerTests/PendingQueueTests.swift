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
        #expect(Array(q.ordered(usage: [:])).isEmpty)
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
        #expect(Array(q.ordered(usage: [:])).first?.avoid == ["w1"])
    }

    @Test func removeAllEmptiesTheQueue() {
        var q = PendingQueue()
        for id in 1...10 { q.upsert(job(JobID(id), owner: UserID(id % 3)), reason: nil) }
        q.removeAll()
        #expect(q.isEmpty)
        #expect(Array(q.ordered(usage: [:])).isEmpty)
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
                // Up to 5 CPUs on workers of 4: some shapes fit nowhere, so passes skip their groups.
                let j = job(
                    id, owner: UserID(rng.next() % 4), priority: Int(rng.next() % 3) - 1, cpus: 1 + Int(rng.next() % 5),
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
            let ordered = Array(q.ordered(usage: usage))
            #expect(ordered.map(\.id) == sorted(Array(model.values), usage: usage), "step \(step)")
            #expect(q.count == model.count)
            if step % 50 == 0 {
                #expect(
                    Placement.plan(ordered: ordered, workers: workers) == Placement.plan(jobs: Array(model.values), workers: workers, usage: usage))
            }
            // A pass that skips the groups that fit nowhere places exactly what a walk of the whole queue places, on
            // workers with little room left as well as on free ones.
            let partly = workers.map { w in
                var w = w
                w.free = Resources(cpus: Int(rng.next() % 5), ramGb: 8)
                w.freeSlots = Int(rng.next() % 3)
                return w
            }
            for ws in [workers, partly] {
                var pass = q
                #expect(
                    pass.plan(workers: ws, usage: usage, now: 0).assignments
                        == Placement.plan(jobs: Array(model.values), workers: ws, usage: usage).assignments, "step \(step)")
            }
        }
    }

    // MARK: One pass's plan from the queue

    private static func worker(_ id: WorkerID, cpus: Int = 2, slots: Int = 2) -> Placement.Worker {
        let total = Resources(cpus: cpus, ramGb: 8)
        return Placement.Worker(id: id, total: total, free: total, load: 0, tier: .bwrap, freeSlots: slots)
    }

    @Test func aPassStopsAtTheFirstJobAfterEveryWorkerIsFullAndReasonsOnlyWhatNeedsOne() {
        var q = PendingQueue()
        for id in 1...6 { q.upsert(job(JobID(id)), reason: nil) }
        q.upsert(job(7, cpus: 64), reason: nil)
        let workers = [Self.worker("a")]
        // First pass: every job needs a reason, whether the plan reached it or not.
        let first = q.plan(workers: workers, usage: [:], now: 0)
        #expect(first.assignments.map(\.job) == [1, 2])
        #expect(Set(first.pending.keys) == [3, 4, 5, 6, 7])
        #expect(first.pending[7] == .noWorkerFits(unmet: ["64 CPUs"]) || first.pending[7] != .waitingForCapacity)
        #expect(first.pending[3] == .waitingForCapacity)
        q.committed(first, started: [1, 2])
        for (id, r) in q.changedReasons(first.pending) { q.recorded(reason: r, for: id) }
        #expect(!q.contains(1) && !q.contains(2))
        // Same workers, freed: the plan stops once they are full again, and no reason is worked out anew.
        let second = q.plan(workers: workers, usage: [:], now: 1)
        #expect(second.assignments.map(\.job) == [3, 4])
        #expect(second.pending.isEmpty)
        // A new job gets its reason even though the plan never reached it.
        q.committed(second, started: [3, 4])
        q.upsert(job(8), reason: nil)
        let busy = [Placement.Worker(id: "a", total: Resources(cpus: 2, ramGb: 8), free: .zero, load: 0, tier: .bwrap, freeSlots: 0)]
        let third = q.plan(workers: busy, usage: [:], now: 2)
        #expect(third.assignments.isEmpty)
        #expect(third.pending == [8: .waitingForCapacity])
        #expect(q.changedReasons(third.pending) == [8: Placement.PendingReason.waitingForCapacity.description])
    }

    @Test func aJobPlannedAndNotStartedIsReconsidered() {
        var q = PendingQueue()
        q.upsert(job(1), reason: nil)
        let workers = [Self.worker("a", slots: 1)]
        let first = q.plan(workers: workers, usage: [:], now: 0)
        #expect(first.assignments.map(\.job) == [1])
        // The store refused it (the worker went offline meanwhile): it stays, and is planned again.
        q.committed(first, started: [])
        #expect(q.contains(1))
        let again = q.plan(workers: [], usage: [:], now: 1)
        #expect(again.pending == [1: .noWorkerOnline])
    }

    @Test func whenTheWorkersChangeEveryReasonIsWorkedOutAgainAtMostOncePerRefreshInterval() {
        // Busy workers: the plan reaches no job, so every reason comes from what the queue says needs one.
        func busy(_ id: WorkerID, cpus: Int) -> Placement.Worker {
            Placement.Worker(id: id, total: Resources(cpus: cpus, ramGb: 8), free: .zero, load: 0, tier: .bwrap, freeSlots: 0)
        }
        var q = PendingQueue()
        for id in 1...3 { q.upsert(job(JobID(id), cpus: 4), reason: nil) }
        let small = [busy("a", cpus: 2)]
        let first = q.plan(workers: small, usage: [:], now: 0)
        #expect(first.pending.count == 3)
        #expect(first.pending.values.allSatisfy { $0 != .waitingForCapacity })
        // Nothing changed: nothing to work out.
        #expect(q.plan(workers: small, usage: [:], now: 1).pending.isEmpty)
        // A big worker joined: within the interval only what changed is reasoned; after it, every job.
        let big = small + [busy("b", cpus: 8)]
        #expect(q.plan(workers: big, usage: [:], now: 2).pending.isEmpty)
        let later = q.plan(workers: big, usage: [:], now: PendingQueue.reasonRefreshSeconds + 1)
        #expect(later.pending == [1: .waitingForCapacity, 2: .waitingForCapacity, 3: .waitingForCapacity])
        #expect(q.plan(workers: big, usage: [:], now: 100).pending.isEmpty)
        // A changed avoid set, or a new job, is reasoned at once, whatever the interval.
        q.setAvoid(2, ["b"])
        q.upsert(job(4, cpus: 4), reason: nil)
        let changed = q.plan(workers: big, usage: [:], now: 101)
        #expect(Set(changed.pending.keys) == [2, 4])
        #expect(changed.pending[4] == .waitingForCapacity)
        #expect(changed.pending[2] != .waitingForCapacity)
    }

    @Test func workersThatChangeAndChangeBackWithinTheIntervalStillOweAWholeRefresh() {
        func busy(_ id: WorkerID, cpus: Int) -> Placement.Worker {
            Placement.Worker(id: id, total: Resources(cpus: cpus, ramGb: 8), free: .zero, load: 0, tier: .bwrap, freeSlots: 0)
        }
        var q = PendingQueue()
        q.upsert(job(1, cpus: 4), reason: nil)
        let small = [busy("a", cpus: 2)]
        let big = small + [busy("b", cpus: 8)]
        #expect(q.plan(workers: small, usage: [:], now: 0).pending[1] != .waitingForCapacity)
        // A big worker comes and goes within the interval; a job queued meanwhile is reasoned for the big one.
        q.upsert(job(2, cpus: 4), reason: nil)
        #expect(q.plan(workers: big, usage: [:], now: 1).pending == [2: .waitingForCapacity])
        #expect(q.plan(workers: small, usage: [:], now: 2).pending.isEmpty)
        // Back to the workers of the last refresh, but job 2's reason is of the others: every reason is worked out again.
        let refresh = q.plan(workers: small, usage: [:], now: PendingQueue.reasonRefreshSeconds + 1)
        #expect(Set(refresh.pending.keys) == [1, 2])
        #expect(refresh.pending[2] != .waitingForCapacity)
    }

    @Test func aFullyBookedPassPlansTheSameAsPlacementOverTheWholeQueue() {
        // What the plan places does not depend on stopping early: the same assignments as planning every job.
        var rng = SplitMix(seed: 9)
        var q = PendingQueue()
        var all: [Placement.Job] = []
        for id in 1...300 {
            let j = job(JobID(id), owner: UserID(rng.next() % 5), priority: Int(rng.next() % 3), cpus: 1 + Int(rng.next() % 4))
            q.upsert(j, reason: nil)
            all.append(j)
        }
        let workers = (0..<10).map { Self.worker("w\($0)", cpus: 4, slots: 3) }
        let usage: [UserID: Double] = [0: 5, 1: 1, 2: 3]
        let mine = q.plan(workers: workers, usage: usage, now: 0)
        let whole = Placement.plan(jobs: all, workers: workers, usage: usage)
        #expect(mine.assignments == whole.assignments)
        // First pass: every unplaced job has the reason the whole plan gives it.
        #expect(mine.pending == whole.pending)
    }


    // MARK: Groups of one shape (autoclusters)

    @Test func aGroupThatFitsNowhereIsSkippedWholeAndTheJobsBehindItAreStillPlanned() {
        var q = PendingQueue()
        // 10,000 older jobs that fit on no worker, of one owner and shape; then one small job of the same owner.
        for id in 1...10_000 { q.upsert(job(JobID(id), cpus: 256), reason: nil) }
        q.upsert(job(10_001), reason: nil)
        var order = q.ordered(usage: [:]).makeIterator()
        #expect(order.next()?.id == 1)
        order.skipRestOfGroup()
        #expect(order.next()?.id == 10_001)
        #expect(order.next() == nil)
        // A pass places the small job, and the first gives all 10,000 the reason a whole walk gives them.
        let workers = [Self.worker("a")]
        let first = q.plan(workers: workers, usage: [:], now: 0)
        #expect(first.assignments.map(\.job) == [10_001])
        #expect(first.pending.count == 10_000)
        #expect(first.pending == Placement.plan(jobs: (1...10_000).map { job(JobID($0), cpus: 256) }, workers: workers).pending)
        q.committed(first, started: [10_001])
        for (id, r) in q.changedReasons(first.pending) { q.recorded(reason: r, for: id) }
        // The next small job is placed past them as well: only the group's first job is looked at, and nothing is
        // written.
        q.upsert(job(10_002), reason: nil)
        let next = q.plan(workers: workers, usage: [:], now: 1)
        #expect(next.assignments.map(\.job) == [10_002])
        #expect(Set(next.pending.keys) == [1])
        #expect(q.changedReasons(next.pending).isEmpty)
    }

    @Test func skippingAGroupLeavesTheGroupsItIsMergedWithInOrder() {
        var q = PendingQueue()
        // Owner 1's small and big jobs interleave by age with owner 2's (no usage: one run of three groups).
        q.upsert(job(1, owner: 1, cpus: 8), reason: nil)
        q.upsert(job(2, owner: 2), reason: nil)
        q.upsert(job(3, owner: 1), reason: nil)
        q.upsert(job(4, owner: 1, cpus: 8), reason: nil)
        q.upsert(job(5, owner: 2), reason: nil)
        q.upsert(job(6, owner: 1), reason: nil)
        #expect(q.ordered(usage: [:]).map(\.id) == [1, 2, 3, 4, 5, 6])
        var order = q.ordered(usage: [:]).makeIterator()
        order.skipRestOfGroup()  // before the first job: nothing to skip
        #expect(order.next()?.id == 1)
        order.skipRestOfGroup()
        order.skipRestOfGroup()  // twice: still only job 1's group
        #expect([order.next(), order.next(), order.next(), order.next()].map { $0?.id } == [2, 3, 5, 6])
        order.skipRestOfGroup()  // job 6 was its group's last: nothing after it to skip
        #expect(order.next() == nil)
        order.skipRestOfGroup()
        #expect(order.next() == nil)
    }

    @Test func aJobThatAvoidsAWorkerDoesNotEndItsGroup() {
        var q = PendingQueue()
        q.upsert(job(1), reason: nil)
        q.upsert(job(2), reason: nil)
        q.setAvoid(1, ["a"])
        // Job 1 cannot go to the only worker; job 2, of the same shape, can.
        let plan = q.plan(workers: [Self.worker("a")], usage: [:], now: 0)
        #expect(plan.assignments.map(\.job) == [2])
        #expect(plan.pending[1] == .noWorkerFits(unmet: ["a worker other than the ones that could not start it"]))
    }

    @Test func aJobMovedToAnotherShapeLeavesItsOldGroup() {
        var q = PendingQueue()
        q.upsert(job(1, cpus: 64), reason: nil)
        q.upsert(job(2, cpus: 64), reason: nil)
        // Job 2 is resized to fit (a new shape): skipping job 1's group must not take it along.
        q.upsert(job(2), reason: nil)
        #expect(q.ordered(usage: [:]).map(\.id) == [1, 2])
        #expect(q.plan(workers: [Self.worker("a")], usage: [:], now: 0).assignments.map(\.job) == [2])
    }
}
