import GridCore
import GridScheduler
import Testing

/// What the manager keeps of a worker's runs when it registers, event by event with the lease table and a manual
/// clock, including the race the actor used to lose: a lease expiring while the store was read.
@Suite struct RejoinTests {
    let a = JobRef(jobId: 1, attempt: 1)
    let b = JobRef(jobId: 2, attempt: 3)

    func running(_ ref: JobRef, cancel: Bool = false) -> Rejoin.StoredRun {
        Rejoin.StoredRun(state: .running, attempt: ref.attempt, cancelRequested: cancel)
    }

    @Test func aReconnectKeepsTheRunsItStillHoldsAndRenewsTheirLeases() {
        var leases = LeaseTable(ttl: 3)
        leases.grant(a, to: "w", now: 0)
        let d = Rejoin.decide(
            worker: "w", running: [a], finished: [], stored: [1: running(a)], settling: [:], heldBefore: Set(leases.jobs(of: "w")), leases: &leases, now: 2.5)
        #expect(d == Rejoin.Decision(keep: [a], cancel: [], forgotten: []))
        #expect(leases.holder(of: 1)?.expires == 5.5)
        #expect(leases.expire(now: 3.5).isEmpty, "renewed: the expiry that would have come at 3 does not")
    }

    @Test func aLeaseThatExpiredWhileTheStoreWasReadIsNotGrantedAgain() {
        // The actor read the store (the job still running there), suspended; meanwhile the expiry took the lease.
        var leases = LeaseTable(ttl: 3)
        leases.grant(a, to: "w", now: 0)
        let stored: [JobID: Rejoin.StoredRun] = [1: running(a)]
        let expired = leases.expire(now: 3.2)
        #expect(expired.map(\.job) == [a])
        let d = Rejoin.decide(worker: "w", running: [a], finished: [], stored: stored, settling: [:], heldBefore: Set(leases.jobs(of: "w")), leases: &leases, now: 3.3)
        #expect(d.cancel == [a], "the worker stops the run the queue has taken back")
        #expect(d.keep.isEmpty && d.forgotten.isEmpty)
        #expect(leases.holder(of: 1) == nil, "no lease for a job on its way back to the queue")
    }

    @Test func aFinishedRunWhoseLeaseExpiredMeanwhileIsNeitherKeptNorRegranted() {
        var leases = LeaseTable(ttl: 3)
        leases.grant(a, to: "w", now: 0)
        _ = leases.expire(now: 4)
        let d = Rejoin.decide(worker: "w", running: [], finished: [a], stored: [1: running(a)], settling: [:], heldBefore: Set(leases.jobs(of: "w")), leases: &leases, now: 4)
        #expect(d == Rejoin.Decision())
        #expect(leases.holder(of: 1) == nil)
    }

    @Test func aFinishedRunIsKeptWhileItsLeaseOrItsAwaitedReportLasts() {
        var leases = LeaseTable(ttl: 3)
        leases.grant(a, to: "w", now: 0)
        let settling: [JobID: Rejoin.Settling] = [2: Rejoin.Settling(ref: b, worker: "w")]
        let d = Rejoin.decide(
            worker: "w", running: [], finished: [a, b], stored: [1: running(a), 2: running(b)], settling: settling, heldBefore: Set(leases.jobs(of: "w")), leases: &leases, now: 1)
        #expect(d.keep == [a, b], "its log offsets are sent so the worker re-sends the rest before its report")
        #expect(leases.holder(of: 2) == nil, "an awaited report is not a lease")
    }

    @Test func anotherWorkersAwaitedReportOrLeaseIsNotThisOnes() {
        var leases = LeaseTable(ttl: 3)
        leases.grant(a, to: "other", now: 0)
        let settling: [JobID: Rejoin.Settling] = [2: Rejoin.Settling(ref: b, worker: "other")]
        let d = Rejoin.decide(
            worker: "w", running: [a], finished: [b], stored: [1: running(a), 2: running(b)], settling: settling, heldBefore: Set(leases.jobs(of: "w")), leases: &leases, now: 1)
        #expect(d.keep.isEmpty)
        #expect(d.cancel == [a], "a forged claim on another worker's run is told to stop")
        #expect(leases.holds(a, worker: "other"), "and the other worker keeps its lease")
    }

    @Test func aStaleOrForgedAttemptIsCancelled() {
        var leases = LeaseTable(ttl: 3)
        leases.grant(JobRef(jobId: 1, attempt: 2), to: "w", now: 0)
        let d = Rejoin.decide(
            worker: "w", running: [a, JobRef(jobId: .max, attempt: .min)], finished: [], stored: [1: Rejoin.StoredRun(state: .running, attempt: 2, cancelRequested: false)],
            settling: [:], heldBefore: Set(leases.jobs(of: "w")), leases: &leases, now: 1)
        #expect(d.cancel == [a, JobRef(jobId: .max, attempt: .min)])
        #expect(d.keep.isEmpty)
        #expect(d.forgotten == [JobRef(jobId: 1, attempt: 2)], "the attempt leased to it, which it does not know, is lost now")
    }

    @Test func aRunCancelledByItsOwnerIsKeptOnlyToBeStoppedAndItsLeaseNoLongerRenews() {
        var leases = LeaseTable(ttl: 3)
        leases.grant(a, to: "w", now: 0)
        let d = Rejoin.decide(
            worker: "w", running: [a], finished: [], stored: [1: running(a, cancel: true)], settling: [:], heldBefore: Set(leases.jobs(of: "w")), leases: &leases, now: 1)
        #expect(d.keep == [a] && d.cancel == [a])
        #expect(leases.revoked.contains(1))
        #expect(leases.renew(worker: "w", running: [a], now: 3.9).isEmpty)
        #expect(leases.expire(now: 4.1).map(\.job) == [a], "it runs out a lease period after the cancel, whatever the worker says")
    }

    @Test func aRunTheStoreEndedIsCancelled() {
        var leases = LeaseTable(ttl: 3)
        leases.grant(a, to: "w", now: 0)
        let d = Rejoin.decide(
            worker: "w", running: [a], finished: [], stored: [1: Rejoin.StoredRun(state: .completed, attempt: 1, cancelRequested: false)],
            settling: [:], heldBefore: Set(leases.jobs(of: "w")), leases: &leases, now: 1)
        #expect(d.cancel == [a] && d.keep.isEmpty)
    }

    @Test func aWorkerThatRestartedWithoutItsRunsLosesThemNow() {
        var leases = LeaseTable(ttl: 30)
        leases.grant(a, to: "w", now: 0)
        leases.grant(b, to: "w", now: 0)
        let settling: [JobID: Rejoin.Settling] = [2: Rejoin.Settling(ref: b, worker: "w")]
        let d = Rejoin.decide(worker: "w", running: [], finished: [], stored: [:], settling: settling, heldBefore: Set(leases.jobs(of: "w")), leases: &leases, now: 1)
        #expect(d.forgotten == [a], "lost at once, not a lease period later")
        #expect(leases.holder(of: 1) == nil)
        #expect(leases.holds(b, worker: "w"), "a run whose report is awaited is not forgotten")
    }

    @Test func aRunPlacedOnTheWorkerWhileItsRegistrationWasReadIsNewNotForgotten() {
        var leases = LeaseTable(ttl: 3)
        leases.grant(a, to: "w", now: 0)
        let heldBefore = Set(leases.jobs(of: "w"))
        // The scheduler counted the worker online and placed job 2 on it before its registration was decided.
        leases.grant(b, to: "w", now: 0.5)
        let d = Rejoin.decide(
            worker: "w", running: [], finished: [], stored: [:], settling: [:], heldBefore: heldBefore, leases: &leases, now: 1)
        #expect(d.forgotten == [a], "the run it held before and does not claim is lost")
        #expect(leases.holds(b, worker: "w"), "the run just given to it is kept: its JOB_ASSIGN is on the way")
    }

    @Test func aClaimRepeatedOrListedBothAsRunningAndFinishedCountsOnce() {
        var leases = LeaseTable(ttl: 3)
        leases.grant(a, to: "w", now: 0)
        let d = Rejoin.decide(
            worker: "w", running: [a, a, a], finished: [a, a], stored: [1: running(a)], settling: [:], heldBefore: Set(leases.jobs(of: "w")), leases: &leases, now: 1)
        #expect(d == Rejoin.Decision(keep: [a], cancel: [], forgotten: []))
    }

    @Test func aFirstRegistrationWithNothingHeldDecidesNothing() {
        var leases = LeaseTable(ttl: 3)
        let d = Rejoin.decide(worker: "w", running: [], finished: [], stored: [:], settling: [:], heldBefore: Set(leases.jobs(of: "w")), leases: &leases, now: 0)
        #expect(d == Rejoin.Decision())
    }
}
