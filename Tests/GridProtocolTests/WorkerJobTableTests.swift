import GridCore
import GridProtocol
import Testing

/// The worker's job table, event by event: the races a live worker meets (a cancel during a start, a second attempt
/// while the first starts, a reconnect while results are re-sent), with no process, clock or network.
@Suite struct WorkerJobTableTests {
    typealias Table = WorkerJobTable<String>
    let a = JobRef(jobId: 7, attempt: 1)

    @Test func aRunGoesFromPreparingToStartingToRunningToReportedToAcknowledged() {
        var t = Table()
        #expect(t.assign(a, admitted: true) == .take(replacing: []))
        #expect(t.phase(of: a) == .preparing && t.held == [a], "held (its lease renewed) while it prepares")
        #expect(t.beginStart(a) == .start)
        #expect(t.phase(of: a) == .starting && t.held == [a])
        #expect(t.started(a) == .run)
        #expect(t.phase(of: a) == .running && t.runningCount == 1)
        t.reported(a, "done a")
        #expect(t.held.isEmpty && t.finished == [a])
        t.acknowledged(a)
        #expect(t.finished.isEmpty && t.unacked.isEmpty)
    }

    /// `REGISTERED`'s log offsets come from the wire: a negative one indexed before the log's start and trapped.
    @Test func aLogResumesWithinWhatTheWorkerHoldsWhateverOffsetTheManagerClaims() {
        #expect(Table.resumeOffset(claimed: nil, held: 10) == 0)
        #expect(Table.resumeOffset(claimed: 4, held: 10) == 4)
        #expect(Table.resumeOffset(claimed: 10, held: 10) == 10)
        #expect(Table.resumeOffset(claimed: -5, held: 10) == 0)
        #expect(Table.resumeOffset(claimed: .min, held: 10) == 0)
        #expect(Table.resumeOffset(claimed: .max, held: 10) == 10)
        #expect(Table.resumeOffset(claimed: 3, held: 0) == 0)
    }

    @Test func theSameAssignmentTwiceIsTakenOnce() {
        var t = Table()
        #expect(t.assign(a, admitted: true) == .take(replacing: []))
        #expect(t.assign(a, admitted: true) == .duplicate)
        _ = t.beginStart(a)
        #expect(t.assign(a, admitted: true) == .duplicate, "nor while it starts")
        _ = t.started(a)
        #expect(t.assign(a, admitted: true) == .duplicate, "nor while it runs")
        t.reported(a, "r")
        #expect(t.assign(a, admitted: true) == .duplicate, "nor once reported: its report is re-sent, never the run")
    }

    @Test func aCancelDuringTheStartStopsItTheMomentItHasStarted() {
        var t = Table()
        _ = t.assign(a, admitted: true)
        #expect(t.beginStart(a) == .start)
        #expect(t.cancel(a) == .noted, "its execution does not exist yet")
        #expect(t.isCancelled(a))
        #expect(t.started(a) == .cancelAtOnce)
        #expect(t.phase(of: a) == .running, "it runs only to be stopped, and is reported like any cancelled run")
        #expect(t.cancel(a) == .cancelRun, "a second cancel cancels the execution itself")
    }

    @Test func aCancelBeforeTheStartMeansItNeverStarts() {
        var t = Table()
        _ = t.assign(a, admitted: true)
        #expect(t.cancel(a) == .noted)
        #expect(t.beginStart(a) == .reportCancelled)
        t.reported(a, "cancelled")
        #expect(t.held.isEmpty && t.finished == [a])
    }

    @Test func aCancelOfARunningJobCancelsItsExecution() {
        var t = Table()
        _ = t.assign(a, admitted: true)
        _ = t.beginStart(a)
        _ = t.started(a)
        #expect(t.cancel(a) == .cancelRun)
    }

    @Test func aCancelOfAnotherAttemptOrAnUnknownJobChangesNothing() {
        var t = Table()
        _ = t.assign(a, admitted: true)
        #expect(t.cancel(JobRef(jobId: 7, attempt: 2)) == .unknown, "a forged or stale attempt")
        #expect(t.cancel(JobRef(jobId: 8, attempt: 1)) == .unknown)
        #expect(t.cancel(JobRef(jobId: .max, attempt: .min)) == .unknown)
        #expect(!t.isCancelled(a))
        #expect(t.beginStart(a) == .start)
    }

    @Test func anotherAttemptWhileTheFirstStartsIsRefusedAndTheFirstIsStopped() {
        var t = Table()
        _ = t.assign(a, admitted: true)
        #expect(t.beginStart(a) == .start)
        let b = JobRef(jobId: 7, attempt: 2)
        #expect(t.assign(b, admitted: true) == .refuse("an earlier attempt of this job is still starting on this worker"))
        #expect(t.phase(of: b) == nil, "the second attempt goes to another worker")
        #expect(t.started(a) == .cancelAtOnce, "the first, given away, is stopped once started")
    }

    @Test func anotherAttemptReplacesOnePreparingOrRunningHere() {
        var t = Table()
        _ = t.assign(a, admitted: true)
        let b = JobRef(jobId: 7, attempt: 2)
        #expect(t.assign(b, admitted: true) == .take(replacing: []), "the preparing one is not running: nothing to cancel")
        #expect(t.beginStart(a) == .reportCancelled, "the old attempt never starts")
        t.reported(a, "a cancelled")
        #expect(t.beginStart(b) == .start)
        #expect(t.started(b) == .run)
        let c = JobRef(jobId: 7, attempt: 3)
        #expect(t.assign(c, admitted: true) == .take(replacing: [b]), "a running older attempt is cancelled")
        #expect(Set(t.held) == [b, c], "both held until the old one ends")
    }

    @Test func aJobTheWorkerMayNotRunIsRefusedWithTheReason() {
        var t = Table()
        guard case .refuse(let reason) = t.assign(a, admitted: false) else {
            Issue.record("an unadmitted job was taken")
            return
        }
        #expect(reason.contains("runs only its owner's jobs"))
        #expect(t.held.isEmpty)
    }

    @Test func aReconnectDuringTheResendSendsEveryUnacknowledgedReportAgainInJobOrder() {
        var t = Table()
        let refs = [JobRef(jobId: 3, attempt: 1), JobRef(jobId: 1, attempt: 2), JobRef(jobId: 2, attempt: 1)]
        for r in refs {
            _ = t.assign(r, admitted: true)
            _ = t.beginStart(r)
            _ = t.started(r)
            t.reported(r, "report \(r.jobId)")
        }
        // First connection: all three re-sent; the link drops after the manager acknowledged only job 1.
        let first = t.registered(cancel: [])
        #expect(first.resend.map(\.ref.jobId) == [1, 2, 3])
        #expect(first.resend.map(\.report) == ["report 1", "report 2", "report 3"])
        t.acknowledged(JobRef(jobId: 1, attempt: 2))
        t.acknowledged(JobRef(jobId: 2, attempt: 9))  // another attempt's ack: not this report's
        // Second connection, mid re-send: the two still unacknowledged go again, nothing acknowledged does.
        let second = t.registered(cancel: [])
        #expect(second.resend.map(\.ref) == [JobRef(jobId: 2, attempt: 1), JobRef(jobId: 3, attempt: 1)])
        #expect(t.finished == [JobRef(jobId: 2, attempt: 1), JobRef(jobId: 3, attempt: 1)], "REGISTER lists them as finished")
        t.acknowledged(JobRef(jobId: 2, attempt: 1))
        t.acknowledged(JobRef(jobId: 3, attempt: 1))
        #expect(t.registered(cancel: []).resend.isEmpty)
    }

    @Test func aRegistrationThatGivesRunsAwayStopsThemInEveryPhase() {
        var t = Table()
        let preparing = JobRef(jobId: 1, attempt: 1)
        let starting = JobRef(jobId: 2, attempt: 1)
        let running = JobRef(jobId: 3, attempt: 1)
        let kept = JobRef(jobId: 4, attempt: 1)
        for r in [preparing, starting, running, kept] { _ = t.assign(r, admitted: true) }
        for r in [starting, running, kept] { _ = t.beginStart(r) }
        for r in [running, kept] { _ = t.started(r) }
        let decided = t.registered(cancel: [preparing, starting, running, JobRef(jobId: 9, attempt: 1)])
        #expect(decided.cancelRuns == [running], "only a running execution is cancelled now")
        #expect(t.beginStart(preparing) == .reportCancelled)
        #expect(t.started(starting) == .cancelAtOnce)
        #expect(!t.isCancelled(kept))
    }

    @Test func aStoppingWorkerCancelsItsRunsAndStartsNothing() {
        var t = Table()
        let preparing = JobRef(jobId: 1, attempt: 1)
        let starting = JobRef(jobId: 2, attempt: 1)
        let running = JobRef(jobId: 3, attempt: 1)
        for r in [preparing, starting, running] { _ = t.assign(r, admitted: true) }
        for r in [starting, running] { _ = t.beginStart(r) }
        _ = t.started(running)
        #expect(t.shutdown() == [running])
        #expect(t.beginStart(preparing) == .reportCancelled)
        #expect(t.started(starting) == .cancelAtOnce)
        #expect(t.assign(JobRef(jobId: 5, attempt: 1), admitted: true) == .refuse("the worker is stopping"))
    }

    @Test func eventsForRunsNotHeldAreHarmless() {
        var t = Table()
        #expect(t.beginStart(a) == .drop)
        t.acknowledged(a)
        #expect(t.registered(cancel: [a]).cancelRuns.isEmpty)
        #expect(t.held.isEmpty && t.finished.isEmpty)
    }
}
