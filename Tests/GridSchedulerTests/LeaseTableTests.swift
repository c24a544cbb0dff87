import GridCore
import GridScheduler
import Testing

private let j1 = JobRef(jobId: 1, attempt: 1)
private let j2 = JobRef(jobId: 2, attempt: 1)
private let j3 = JobRef(jobId: 3, attempt: 2)

/// A lease's fields, comparable in tests (`LeaseTable.Lease` has no public initializer).
private struct Held: Equatable {
    var job: JobRef
    var worker: WorkerID
    var expires: Double
}

private func held(_ lease: LeaseTable.Lease?) -> Held? {
    lease.map { Held(job: $0.job, worker: $0.worker, expires: $0.expires) }
}

@Suite("LeaseTable")
struct LeaseTableTests {
    @Test func grantGivesTheJobToTheWorkerUntilNowPlusTtl() {
        var t = LeaseTable(ttl: 30)
        t.grant(j1, to: "a", now: 100)
        #expect(held(t.holder(of: 1)) == Held(job: j1, worker: "a", expires: 130))
        #expect(t.holds(j1, worker: "a"))
        #expect(!t.holds(j1, worker: "b"))
        #expect(!t.holds(JobRef(jobId: 1, attempt: 2), worker: "a"))
    }

    @Test func jobsByWorkerAgreesWithJobsOfEachWorker() {
        var t = LeaseTable(ttl: 30)
        t.grant(j3, to: "a", now: 0)
        t.grant(j1, to: "a", now: 0)
        t.grant(j2, to: "b", now: 0)
        let all = t.jobsByWorker()
        #expect(all == ["a": [j1, j3], "b": [j2]])
        for w in ["a", "b", "c"] { #expect((all[w] ?? []) == t.jobs(of: w)) }
        #expect(LeaseTable(ttl: 1).jobsByWorker().isEmpty)
    }

    /// A cancel can come between the store starting a job and the manager leasing it (the manager awaits the store):
    /// the revocation waits for the grant, and the lease it gives is never renewed.
    @Test func aRevocationBeforeTheGrantHoldsForTheLeaseGivenAfter() {
        var t = LeaseTable(ttl: 30)
        t.revoke(1, now: 0)
        #expect(t.isRevoked(1))
        #expect(t.holder(of: 1) == nil)
        t.grant(j1, to: "a", now: 10)
        #expect(t.holder(of: 1)?.expires == 40)
        #expect(t.renew(worker: "a", running: [j1], now: 35).isEmpty, "it holds the job")
        #expect(t.holder(of: 1)?.expires == 40, "but no heartbeat renews the lease")
        #expect(t.expire(now: 40).map(\.job) == [j1])
        #expect(!t.isRevoked(1), "forgotten with the lease")
    }

    @Test func grantWithAnExplicitTtlUsesIt() {
        var t = LeaseTable(ttl: 30)
        t.grant(j1, to: "a", now: 100, ttl: 5)
        #expect(t.holder(of: 1)?.expires == 105)
    }

    @Test func aNewGrantReplacesTheOldLeaseOnTheJob() {
        var t = LeaseTable(ttl: 30)
        t.grant(j1, to: "a", now: 0)
        t.grant(JobRef(jobId: 1, attempt: 2), to: "b", now: 10)
        #expect(held(t.holder(of: 1)) == Held(job: JobRef(jobId: 1, attempt: 2), worker: "b", expires: 40))
        #expect(t.leases.count == 1)
        #expect(t.jobs(of: "a").isEmpty)
    }

    @Test func renewExtendsTheLeasesTheWorkerHolds() {
        var t = LeaseTable(ttl: 30)
        t.grant(j1, to: "a", now: 0)
        t.grant(j2, to: "a", now: 0)
        #expect(t.renew(worker: "a", running: [j1, j2], now: 20).isEmpty)
        #expect(t.holder(of: 1)?.expires == 50)
        #expect(t.holder(of: 2)?.expires == 50)
    }

    @Test func renewOnlyExtendsTheReportedJobs() {
        var t = LeaseTable(ttl: 30)
        t.grant(j1, to: "a", now: 0)
        t.grant(j2, to: "a", now: 0)
        _ = t.renew(worker: "a", running: [j1], now: 20)
        #expect(t.holder(of: 1)?.expires == 50)
        #expect(t.holder(of: 2)?.expires == 30)
    }

    @Test func renewReturnsJobsHeldByAnotherWorkerAndLeavesTheirLease() {
        var t = LeaseTable(ttl: 30)
        t.grant(j1, to: "b", now: 0)
        #expect(t.renew(worker: "a", running: [j1], now: 20) == [j1])
        #expect(held(t.holder(of: 1)) == Held(job: j1, worker: "b", expires: 30))
    }

    @Test func renewReturnsAnOlderAttemptAsStale() {
        var t = LeaseTable(ttl: 30)
        t.grant(JobRef(jobId: 1, attempt: 2), to: "a", now: 0)
        #expect(t.renew(worker: "a", running: [j1], now: 20) == [j1])
        #expect(t.holder(of: 1)?.expires == 30)
    }

    @Test func renewReturnsUnknownJobsAsStale() {
        var t = LeaseTable(ttl: 30)
        t.grant(j1, to: "a", now: 0)
        #expect(t.renew(worker: "a", running: [j1, j2, j3], now: 5) == [j2, j3])
    }

    @Test func renewUsesTheTablesTtl() {
        var t = LeaseTable(ttl: 30)
        t.grant(j1, to: "a", now: 0, ttl: 5)
        _ = t.renew(worker: "a", running: [j1], now: 4)
        #expect(t.holder(of: 1)?.expires == 34)
    }

    @Test func nothingExpiresBeforeTheDeadline() {
        var t = LeaseTable(ttl: 30)
        t.grant(j1, to: "a", now: 0)
        #expect(t.expire(now: 29.999).isEmpty)
        #expect(t.holds(j1, worker: "a"))
    }

    @Test func aLeaseExpiresExactlyAtItsDeadline() {
        var t = LeaseTable(ttl: 30)
        t.grant(j1, to: "a", now: 0)
        #expect(t.expire(now: 30).map(held) == [Held(job: j1, worker: "a", expires: 30)])
        #expect(t.holder(of: 1) == nil)
    }

    @Test func expireReturnsExactlyTheExpiredLeasesOldestFirstAndKeepsTheRest() {
        var t = LeaseTable(ttl: 30)
        t.grant(j3, to: "b", now: 5)  // 35
        t.grant(j1, to: "a", now: 10)  // 40
        t.grant(j2, to: "a", now: 0)  // 30
        t.grant(JobRef(jobId: 4, attempt: 1), to: "c", now: 11)  // 41
        let gone = t.expire(now: 40)
        #expect(gone.map(\.job) == [j2, j3, j1])
        #expect(Array(t.leases.keys) == [4])
        #expect(t.expire(now: 40).isEmpty)
    }

    @Test func equalDeadlinesExpireInJobOrder() {
        var t = LeaseTable(ttl: 30)
        for id in [5, 2, 9, 1] as [JobID] { t.grant(JobRef(jobId: id, attempt: 1), to: "a", now: 0) }
        #expect(t.expire(now: 30).map(\.job.jobId) == [1, 2, 5, 9])
    }

    @Test func aRenewedLeaseDoesNotExpireAtItsOldDeadline() {
        var t = LeaseTable(ttl: 30)
        t.grant(j1, to: "a", now: 0)
        _ = t.renew(worker: "a", running: [j1], now: 25)
        #expect(t.expire(now: 30).isEmpty)
        #expect(t.expire(now: 55).map(\.job) == [j1])
    }

    @Test func releaseForgetsTheLeaseAndReturnsIt() {
        var t = LeaseTable(ttl: 30)
        t.grant(j1, to: "a", now: 0)
        #expect(held(t.release(1)) == Held(job: j1, worker: "a", expires: 30))
        #expect(t.holder(of: 1) == nil)
        #expect(t.release(1) == nil)
        #expect(t.expire(now: 1000).isEmpty)
    }

    @Test func aReleasedJobReportedAgainIsStale() {
        var t = LeaseTable(ttl: 30)
        t.grant(j1, to: "a", now: 0)
        t.release(1)
        #expect(t.renew(worker: "a", running: [j1], now: 5) == [j1])
    }

    @Test func jobsOfAWorkerAreItsLeasesInJobOrder() {
        var t = LeaseTable(ttl: 30)
        t.grant(j3, to: "a", now: 0)
        t.grant(j2, to: "b", now: 0)
        t.grant(j1, to: "a", now: 0)
        #expect(t.jobs(of: "a") == [j1, j3])
        #expect(t.jobs(of: "b") == [j2])
        #expect(t.jobs(of: "c").isEmpty)
    }
}

@Suite("LeaseTable: revoked leases")
struct LeaseRevokeTests {
    @Test func aRevokedLeaseIsNotRenewedByHeartbeatsAndExpiresWithinOnePeriod() {
        var t = LeaseTable(ttl: 2)
        let job = JobRef(jobId: 1, attempt: 1)
        t.grant(job, to: "w1", now: 0)
        t.revoke(1, now: 1)
        #expect(t.renew(worker: "w1", running: [job], now: 1.5) == [], "still the worker's job: not stale")
        #expect(t.renew(worker: "w1", running: [job], now: 2.5) == [])
        #expect(t.expire(now: 1.9).isEmpty)
        #expect(t.expire(now: 2).map(\.job) == [job], "expired when it would have without the heartbeats, within one lease period")
        #expect(t.revoked.isEmpty)
    }

    @Test func aReconnectCannotExtendARevokedLease() {
        var t = LeaseTable(ttl: 2)
        let job = JobRef(jobId: 1, attempt: 1)
        t.grant(job, to: "w1", now: 0, ttl: 30)
        t.revoke(1, now: 0)
        t.grant(job, to: "w1", now: 1.5)
        #expect(t.holder(of: 1)?.expires == 2)
    }

    @Test func releasingForgetsTheRevocation() {
        var t = LeaseTable(ttl: 2)
        t.grant(JobRef(jobId: 1, attempt: 1), to: "w1", now: 0)
        t.revoke(1, now: 0)
        t.release(1)
        #expect(t.revoked.isEmpty)
        t.grant(JobRef(jobId: 1, attempt: 2), to: "w2", now: 5)
        #expect(t.renew(worker: "w2", running: [JobRef(jobId: 1, attempt: 2)], now: 6) == [])
        #expect(t.holder(of: 1)?.expires == 8)
    }
}

/// A worker's frames go one after another on its connection: while one is on its way in (a run's outputs on a slow
/// link), its heartbeats wait behind it. Its leases are kept meanwhile (money review: a late `JOB_DONE` found its run
/// taken away, or a cancelled run refunded with its result in).
@Suite("LeaseTable while a worker's connection is busy")
struct LeaseTableBusyTests {
    @Test func aBusyWorkersLeasesAreKeptPastTheirEndAndLastALeasePeriodOnceItIsHeard() {
        var t = LeaseTable(ttl: 10)
        t.grant(j1, to: "a", now: 0)
        t.grant(j2, to: "b", now: 0)
        let gone = t.expire(now: 10, busy: ["a"])
        #expect(gone.map(\.job) == [j2], "b, silent and not busy, loses its run as before")
        #expect(t.holds(j1, worker: "a"))
        #expect(t.held == [1])
        #expect(t.expire(now: 500, busy: ["a"]).isEmpty, "kept as long as the frame is on its way (BusySpells bounds it)")
        t.heard(worker: "b", now: 500)
        #expect(t.held == [1], "another worker heard changes nothing of a's")
        t.heard(worker: "a", now: 500)
        #expect(t.held.isEmpty)
        #expect(held(t.holder(of: 1)) == Held(job: j1, worker: "a", expires: 510), "one lease period for the heartbeat behind the frame")
        #expect(t.expire(now: 509.9).isEmpty)
        #expect(t.expire(now: 510).map(\.job) == [j1], "not named by a heartbeat since: it runs out as any lease")
    }

    @Test func aLeaseNotYetRunOutIsNotTouchedByBusyOrHeard() {
        var t = LeaseTable(ttl: 10)
        t.grant(j1, to: "a", now: 0)
        #expect(t.expire(now: 5, busy: ["a"]).isEmpty)
        #expect(t.held.isEmpty)
        t.heard(worker: "a", now: 5)
        #expect(t.holder(of: 1)?.expires == 10, "heard renews only what was kept past its end")
    }

    @Test func aRevokedLeaseIsKeptOnlyUpToTheHoldPastItsEndAndNotRenewedWhenHeard() {
        var t = LeaseTable(ttl: 10)
        t.grant(j1, to: "a", now: 0)
        t.grant(j2, to: "a", now: 0)
        t.revoke(1, now: 2)
        #expect(t.expire(now: 10, busy: ["a"], revokedHold: 100).isEmpty, "the report may be the frame on its way")
        #expect(t.expire(now: 109.9, busy: ["a"], revokedHold: 100).isEmpty)
        #expect(t.expire(now: 110, busy: ["a"], revokedHold: 100).map(\.job) == [j1], "a connection busy for ever holds a cancel no longer")
        #expect(t.holds(j2, worker: "a"), "its other run, not revoked, is still kept")
        t.grant(j3, to: "a", now: 110)
        t.revoke(3, now: 110)
        #expect(t.expire(now: 120, busy: ["a"], revokedHold: 100).isEmpty)
        t.heard(worker: "a", now: 121)
        #expect(t.holder(of: 3)?.expires == 120, "a revoked lease keeps its end: heard, it runs out at once")
        #expect(t.holder(of: 2)?.expires == 131)
        #expect(t.expire(now: 121).map(\.job) == [j3])
    }

    @Test func aHoldThatIsNotAFinitePositiveNumberKeepsNoRevokedLease() {
        for hold in [0, -1, .nan, .infinity, -.infinity] as [Double] {
            var t = LeaseTable(ttl: 10)
            t.grant(j1, to: "a", now: 0)
            t.revoke(1, now: 0)
            #expect(t.expire(now: 10, busy: ["a"], revokedHold: hold).map(\.job) == [j1], "hold \(hold)")
        }
    }

    @Test func aReleasedGrantedOrRenewedLeaseIsNoLongerHeld() {
        var t = LeaseTable(ttl: 10)
        t.grant(j1, to: "a", now: 0)
        t.grant(j2, to: "a", now: 0)
        t.grant(j3, to: "a", now: 0)
        _ = t.expire(now: 10, busy: ["a"])
        #expect(t.held == [1, 2, 3])
        t.release(1)
        t.grant(JobRef(jobId: 2, attempt: 2), to: "b", now: 11)
        _ = t.renew(worker: "a", running: [j3], now: 11)
        #expect(t.held.isEmpty)
        t.heard(worker: "a", now: 12)
        #expect(t.holder(of: 2)?.expires == 21 && t.holder(of: 3)?.expires == 21)
    }
}

@Suite("BusySpells")
struct BusySpellsTests {
    @Test func aSpellWithoutProgressCountsUpToItsMostAndEndsWhenTheConnectionIsQuiet() {
        var s = BusySpells(most: 100)
        var look = s.look(busyNow: ["a": 0, "b": 0], now: 0)
        #expect(look.busy == ["a", "b"] && look.ended.isEmpty)
        look = s.look(busyNow: ["a": 0], now: 50)
        #expect(look.busy == ["a"] && look.ended == ["b"], "b's frame is in: heard now")
        look = s.look(busyNow: ["a": 0], now: 100)
        #expect(look.busy == ["a"], "at its most still")
        look = s.look(busyNow: ["a": 0], now: 100.5)
        #expect(look.busy.isEmpty && look.ended.isEmpty, "past it with nothing handled, a is silent unless its heartbeats say otherwise")
        look = s.look(busyNow: [:], now: 101)
        #expect(look.ended == ["a"])
        look = s.look(busyNow: ["a": 0], now: 200)
        #expect(look.busy == ["a"], "a new spell counts afresh")
    }

    /// Two 40 MiB reports back to back at 64 KiB/s take longer together than one frame's deadline: the spell starts
    /// again when the first is handled (the review: the worker was dropped half way through the second).
    @Test func aSpellThatHandlesFramesStartsAgainAtEach() {
        var s = BusySpells(most: 100)
        _ = s.look(busyNow: ["a": 7], now: 0)
        #expect(s.look(busyNow: ["a": 7], now: 90).busy == ["a"])
        #expect(s.look(busyNow: ["a": 8], now: 150).busy == ["a"], "one frame handled: a new spell from here")
        #expect(s.look(busyNow: ["a": 8], now: 250).busy == ["a"])
        #expect(s.look(busyNow: ["a": 8], now: 250.5).busy.isEmpty)
    }

    @Test func numbersThatAreNotFiniteCountNoSpell() {
        for most in [-1, .nan, .infinity, -.infinity] as [Double] {
            var s = BusySpells(most: most)
            #expect(s.most == 0)
            #expect(s.look(busyNow: ["a": 0], now: 0).busy == ["a"], "a spell of no length yet")
            #expect(s.look(busyNow: ["a": 0], now: 0.1).busy.isEmpty)
        }
        var s = BusySpells(most: 100)
        for now in [Double.nan, .infinity, -.infinity] {
            let look = s.look(busyNow: ["a": 0], now: now)
            #expect(look.busy.isEmpty && look.ended.isEmpty)
        }
        #expect(s.look(busyNow: ["a": .max], now: 1e300).busy == ["a"])
        #expect(s.look(busyNow: ["a": .max], now: -1e300).busy == ["a"], "a clock that went back does not trap")
    }
}
