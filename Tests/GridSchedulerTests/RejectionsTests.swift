import GridCore
import GridScheduler
import Testing

@Suite("Rejections")
struct RejectionsTests {
    let forget = Rejections.forgetAfterSeconds

    @Test func aRefusalKeepsTheJobAwayOnlyUntilItIsForgotten() {
        var r = Rejections()
        r.rejected(1, by: "w1", now: 100)
        #expect(r.avoidSets(now: 100) == [1: ["w1"]])
        #expect(r.avoidSets(now: 100 + forget / 2) == [1: ["w1"]], "every pass gets the set again")
        // Forgotten: the job is told once that it may go anywhere, then nothing is kept.
        #expect(r.avoidSets(now: 100 + forget) == [1: []])
        #expect(r.avoidSets(now: 100 + forget + 1).isEmpty)
        #expect(r.isEmpty)
        #expect(r.avoid(1, now: 100 + forget + 1).isEmpty)
    }

    @Test func eachWorkersRefusalIsForgottenOnItsOwn() {
        var r = Rejections()
        r.rejected(1, by: "w1", now: 0)
        r.rejected(1, by: "w2", now: 300)
        r.rejected(2, by: "w1", now: 300)
        #expect(r.avoidSets(now: 301) == [1: ["w1", "w2"], 2: ["w1"]])
        #expect(r.avoidSets(now: forget + 1) == [1: ["w2"], 2: ["w1"]])
        // A new refusal by the same worker starts its time again.
        r.rejected(1, by: "w2", now: forget + 100)
        #expect(r.avoidSets(now: 300 + forget + 1) == [1: ["w2"], 2: []])
        #expect(r.avoid(1, now: 300 + forget + 1) == ["w2"])
    }

    @Test func aJobThatEndsIsForgottenAtOnce() {
        var r = Rejections()
        r.rejected(1, by: "w1", now: 0)
        r.rejected(2, by: "w1", now: 0)
        r.forget(1)
        r.forget(99)  // unknown: nothing happens
        #expect(r.avoidSets(now: 1) == [2: ["w1"]])
    }

    @Test func noClaimOfTimeKeepsAJobAwayForEver() {
        var r = Rejections()
        for (k, at) in [Double.nan, .infinity, -.infinity, .greatestFiniteMagnitude, -.greatestFiniteMagnitude].enumerated() {
            r.rejected(JobID(k), by: "w1", now: at)
        }
        // Refusals at times that are not finite, or far from now either way, are not remembered; none traps.
        let sets = r.avoidSets(now: 0)
        #expect(sets.count == 5 && sets.values.allSatisfy(\.isEmpty), "\(sets)")
        #expect(r.isEmpty)
        // A clock that went back by more than the interval forgets too; a small step back does not.
        r.rejected(10, by: "w1", now: 1000)
        #expect(r.avoid(10, now: 999) == ["w1"])
        #expect(r.avoid(10, now: 1000 - forget).isEmpty)
        for now in [Double.nan, .infinity, -.infinity] { #expect(r.avoid(10, now: now).isEmpty) }
    }

    @Test func aJobOnlyTheRefusingWorkerFitsIsPlacedThereOnceTheRefusalIsForgotten() {
        let total = Resources(cpus: 2, ramGb: 4)
        let workers = [Placement.Worker(id: "w1", total: total, free: total, load: 0, tier: .bwrap, freeSlots: 1)]
        let job = Placement.Job(id: 1, owner: 1, priority: 0, request: Resources(cpus: 1, ramGb: 1), minTier: .restricted, submitted: 0)
        var q = PendingQueue()
        var r = Rejections()
        q.upsert(job, reason: nil)
        r.rejected(1, by: "w1", now: 0)
        func pass(at now: Double) -> Placement.Plan {
            for (id, avoid) in r.avoidSets(now: now) { q.setAvoid(id, avoid) }
            return q.plan(workers: workers, usage: [:], now: now)
        }
        #expect(pass(at: 1).assignments.isEmpty)
        // The store's copy of the job is read again (it has no avoid set): the next pass keeps it away still.
        q.upsert(job, reason: nil)
        let again = pass(at: 2)
        #expect(again.assignments.isEmpty)
        #expect(again.pending[1] == .noWorkerFits(unmet: ["a worker other than the ones that could not start it"]))
        // Forgotten: it goes to w1 again.
        #expect(pass(at: forget + 1).assignments.map(\.worker) == ["w1"])
    }
}
