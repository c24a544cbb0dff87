import GridCore
import GridScheduler
import Testing

/// The manager's rules for `JOB_DONE`, event by event with a manual clock: settle when the whole log is there, hold and
/// wait for the rest, give up after the bound, drop stale reports, and never let one worker's stale report take away
/// the report the current run waits with.
@Suite struct RunReportsTests {
    typealias Reports = RunReports<String>
    let a1 = JobRef(jobId: 1, attempt: 1)
    let a2 = JobRef(jobId: 1, attempt: 2)

    func running(_ ref: JobRef, on worker: WorkerID) -> Reports.CurrentRun { .init(state: .running, attempt: ref.attempt, worker: worker) }

    @Test func aReportWithItsWholeLogStoredSettlesAtOnceAsOfWhenItCame() {
        var r = Reports(bound: 30, maxLogBytes: 1000)
        let d = r.reported("done", ref: a1, worker: "w", reportedLogBytes: 10, current: running(a1, on: "w"), storedLogBytes: 10, now: 5, wall: 1000)
        #expect(d == .settle(receivedAt: 1000))
        #expect(r.held.isEmpty)
    }

    @Test func aReportThatSaysNothingOfItsLogSettles() {
        var r = Reports(bound: 30, maxLogBytes: 1000)
        #expect(r.reported("done", ref: a1, worker: "w", reportedLogBytes: nil, current: running(a1, on: "w"), storedLogBytes: 0, now: 0, wall: 0) == .settle(receivedAt: 0))
    }

    @Test func aReportWaitsForTheRestOfItsLogThenSettlesAsOfWhenItFirstCame() {
        var r = Reports(bound: 30, maxLogBytes: 1000)
        #expect(r.reported("done", ref: a1, worker: "w", reportedLogBytes: 10, current: running(a1, on: "w"), storedLogBytes: 4, now: 5, wall: 1000) == .wait(missing: 6))
        #expect(r.awaitsLog(a1, from: "w"))
        #expect(!r.awaitsLog(a1, from: "other") && !r.awaitsLog(a2, from: "w"), "only the run's own worker and attempt")
        #expect(r.settling == [1: Rejoin.Settling(ref: a1, worker: "w")])
        // Some bytes: still waiting.
        #expect(r.recheck(1, current: running(a1, on: "w"), storedLogBytes: 8, now: 6)?.decision == .wait(missing: 2))
        // The rest: settled, paid up to when the report first came, not now.
        let last = r.recheck(1, current: running(a1, on: "w"), storedLogBytes: 10, now: 7)
        #expect(last?.decision == .settle(receivedAt: 1000))
        #expect(last?.held.report == "done" && last?.held.worker == "w")
        #expect(r.held.isEmpty && r.recheck(1, current: running(a1, on: "w"), storedLogBytes: 10, now: 8) == nil)
    }

    @Test func aHeldReportIsGivenUpOnceItsWaitRunsOut() {
        var r = Reports(bound: 30, maxLogBytes: 1000)
        _ = r.reported("done", ref: a1, worker: "w", reportedLogBytes: 10, current: running(a1, on: "w"), storedLogBytes: 0, now: 100, wall: 0)
        #expect(r.due(now: 129.9).isEmpty)
        #expect(r.due(now: 130) == [1])
        guard case .giveUp(let why)? = r.recheck(1, current: running(a1, on: "w"), storedLogBytes: 3, now: 130)?.decision else {
            Issue.record("not given up")
            return
        }
        #expect(why.contains("10") && why.contains("3"), "\(why)")
        #expect(r.held.isEmpty)
    }

    @Test func aReportSentAgainAfterAReconnectKeepsWhenItFirstCameAndHowLongItWaited() {
        var r = Reports(bound: 30, maxLogBytes: 1000)
        _ = r.reported("done", ref: a1, worker: "w", reportedLogBytes: 10, current: running(a1, on: "w"), storedLogBytes: 0, now: 100, wall: 5000)
        // The worker reconnects and sends it again, 20 s later: the wait goes on from 100, not from 120.
        #expect(r.reported("again", ref: a1, worker: "w", reportedLogBytes: 10, current: running(a1, on: "w"), storedLogBytes: 2, now: 120, wall: 5020) == .wait(missing: 8))
        #expect(r.due(now: 130) == [1], "the bound counts from the first report")
        #expect(r.recheck(1, current: running(a1, on: "w"), storedLogBytes: 10, now: 125)?.decision == .settle(receivedAt: 5000))
    }

    @Test func aStaleReportIsAcknowledgedAndStoresNothing() {
        var r = Reports(bound: 30, maxLogBytes: 1000)
        // Another attempt runs now; another worker holds it; the job ended; the job is unknown.
        for current in [running(a2, on: "w"), running(a1, on: "other"), Reports.CurrentRun(state: .completed, attempt: 1, worker: "w"), nil] {
            #expect(r.reported("old", ref: a1, worker: "w", reportedLogBytes: 10, current: current, storedLogBytes: 0, now: 0, wall: 0) == .stale)
        }
        #expect(r.held.isEmpty)
    }

    /// Found while making these rules pure: the actor dropped whatever report it held for a job whenever a stale one
    /// for that job came, so a late report from the worker that lost an earlier attempt took away the current run's
    /// report, whose lease was already released: the job stayed running with nobody holding it.
    @Test func aStaleReportOfAnotherAttemptDoesNotTakeAwayTheReportTheCurrentRunWaitsWith() {
        var r = Reports(bound: 30, maxLogBytes: 1000)
        #expect(r.reported("current", ref: a2, worker: "new", reportedLogBytes: 10, current: running(a2, on: "new"), storedLogBytes: 0, now: 0, wall: 0) == .wait(missing: 10))
        #expect(r.reported("late", ref: a1, worker: "old", reportedLogBytes: 5, current: running(a2, on: "new"), storedLogBytes: 0, now: 1, wall: 1) == .stale)
        #expect(r.awaitsLog(a2, from: "new"), "the current run's report is still held")
        #expect(r.recheck(1, current: running(a2, on: "new"), storedLogBytes: 10, now: 2)?.decision == .settle(receivedAt: 0))
    }

    @Test func aHeldReportWhoseRunWasTakenAwayMeanwhileIsDroppedAsStale() {
        var r = Reports(bound: 30, maxLogBytes: 1000)
        _ = r.reported("done", ref: a1, worker: "w", reportedLogBytes: 10, current: running(a1, on: "w"), storedLogBytes: 0, now: 0, wall: 0)
        // Its owner cancelled it meanwhile (the store says cancelled).
        #expect(r.recheck(1, current: .init(state: .cancelled, attempt: 1, worker: "w"), storedLogBytes: 10, now: 1)?.decision == .stale)
        #expect(r.held.isEmpty)
    }

    @Test(arguments: [Int64(-1), Int64.min, 1001, Int64.max])
    func anImpossibleLogLengthIsGivenUpAtOnceAndNeverWaitedFor(_ claimed: Int64) {
        var r = Reports(bound: 30, maxLogBytes: 1000)
        guard case .giveUp = r.reported("forged", ref: a1, worker: "w", reportedLogBytes: claimed, current: running(a1, on: "w"), storedLogBytes: 0, now: 0, wall: 0)
        else {
            Issue.record("a claim of \(claimed) bytes was believed")
            return
        }
        #expect(r.held.isEmpty)
    }

    @Test(arguments: [Double.nan, .infinity, -.infinity])
    func aClockThatIsNotFiniteNeverTrapsAndNeverWaitsForever(_ t: Double) {
        var r = Reports(bound: 30, maxLogBytes: 1000)
        // A wait that cannot be measured is over: the run is given up, not held for ever.
        let d = r.reported("done", ref: a1, worker: "w", reportedLogBytes: 10, current: running(a1, on: "w"), storedLogBytes: 0, now: t, wall: t)
        guard case .giveUp = d else {
            Issue.record("\(d)")
            return
        }
        #expect(r.held.isEmpty)
        // And a held report, checked at a clock that cannot be measured against, or at the end of time, is due.
        _ = r.reported("done", ref: a1, worker: "w", reportedLogBytes: 10, current: running(a1, on: "w"), storedLogBytes: 0, now: 0, wall: 0)
        #expect(r.due(now: .nan) == [1] && r.due(now: .infinity) == [1])
    }

    @Test func boundaryIdsAndAttemptsAreKeptApart() {
        var r = Reports(bound: 30, maxLogBytes: 1000)
        let top = JobRef(jobId: .max, attempt: .max), bottom = JobRef(jobId: .min, attempt: .min)
        #expect(r.reported("t", ref: top, worker: "w", reportedLogBytes: 1, current: running(top, on: "w"), storedLogBytes: 0, now: 0, wall: 0) == .wait(missing: 1))
        #expect(r.reported("b", ref: bottom, worker: "w", reportedLogBytes: 1, current: running(bottom, on: "w"), storedLogBytes: 0, now: 0, wall: 0) == .wait(missing: 1))
        #expect(r.due(now: 30) == [.min, .max])
    }

    /// A worker cannot end someone's job by reporting it cancelled: a worker that stops (SIGTERM) cancels its runs, and
    /// a hostile one may claim anything. Only the owner's request makes a cancelled report the job's end.
    @Test func aRunReportedCancelledThatNobodyCancelledIsInterruptedNotSettled() {
        var r = Reports(bound: 30, maxLogBytes: 1000)
        let d = r.reported("stopped", ref: a1, worker: "w", reportedLogBytes: 0, cancelled: true, current: running(a1, on: "w"), storedLogBytes: 0, now: 0, wall: 0)
        #expect(d == .notCancelled)
        #expect(r.held.isEmpty)
        // Not even after waiting for its log: a held report (the log still coming) is decided the same way.
        var held = Reports(bound: 30, maxLogBytes: 1000)
        #expect(held.reported("stopped", ref: a1, worker: "w", reportedLogBytes: 10, cancelled: true, current: running(a1, on: "w"), storedLogBytes: 0, now: 0, wall: 0) == .notCancelled)
        #expect(held.held.isEmpty, "nothing is held for a run that is not settled")
    }

    @Test func aRunReportedCancelledAfterItsOwnerAskedSettlesAsCancelled() {
        var r = Reports(bound: 30, maxLogBytes: 1000)
        let asked = Reports.CurrentRun(state: .running, attempt: 1, worker: "w", cancelRequested: true)
        #expect(r.reported("cancelled", ref: a1, worker: "w", reportedLogBytes: 4, cancelled: true, current: asked, storedLogBytes: 4, now: 0, wall: 7) == .settle(receivedAt: 7))
        // A report that is not "cancelled" settles whether or not a cancel was asked (the run ended first).
        #expect(r.reported("done", ref: a2, worker: "w", reportedLogBytes: 0, cancelled: false, current: .init(state: .running, attempt: 2, worker: "w", cancelRequested: true), storedLogBytes: 0, now: 0, wall: 8) == .settle(receivedAt: 8))
    }

    @Test func aStaleCancelledReportStaysStale() {
        var r = Reports(bound: 30, maxLogBytes: 1000)
        #expect(r.reported("stopped", ref: a1, worker: "w", reportedLogBytes: 0, cancelled: true, current: running(a2, on: "w"), storedLogBytes: 0, now: 0, wall: 0) == .stale)
        #expect(r.reported("stopped", ref: a1, worker: "w", reportedLogBytes: 0, cancelled: true, current: nil, storedLogBytes: 0, now: 0, wall: 0) == .stale)
    }
}
