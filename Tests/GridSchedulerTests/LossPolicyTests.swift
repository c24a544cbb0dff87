import GridCore
import GridScheduler
import Testing

private func lost(_ worker: WorkerID, at: Double = 10, blamed: Bool = false, kind: LossPolicy.Kind = .workerLost) -> LossPolicy.Loss {
    LossPolicy.Loss(worker: worker, at: at, kind: kind, blamed: blamed)
}

@Suite("LossPolicy")
struct LossPolicyTests {
    // MARK: Which losses point at the job

    @Test func aLoneLossOnAHealthyWorkerWithinTheJobsTimePointsAtTheJob() {
        #expect(LossPolicy.blames(.workerLost, .init(alone: true, hostFlaky: false, ranSeconds: 3, limitSeconds: 60)))
    }

    @Test func anOutageThatTookOtherJobsTooIsChurn() {
        #expect(!LossPolicy.blames(.workerLost, .init(alone: false, hostFlaky: false, ranSeconds: 3, limitSeconds: 60)))
    }

    @Test func aHostThatLosesOtherJobsByItselfIsNotTheJobsFault() {
        #expect(!LossPolicy.blames(.workerLost, .init(alone: true, hostFlaky: true, ranSeconds: 3, limitSeconds: 60)))
    }

    @Test func aLossPastTheJobsOwnTimeLimitDoesNotPointAtIt() {
        #expect(!LossPolicy.blames(.workerLost, .init(alone: true, hostFlaky: false, ranSeconds: 61, limitSeconds: 60)))
        #expect(!LossPolicy.blames(.workerLost, .init(alone: true, hostFlaky: false, ranSeconds: .nan, limitSeconds: 60)))
        #expect(!LossPolicy.blames(.workerLost, .init(alone: true, hostFlaky: false, ranSeconds: .infinity, limitSeconds: 60)))
    }

    @Test func rejectionsAndIncompleteReportsNeverPointAtTheJob() {
        let evidence = LossPolicy.Evidence(alone: true, hostFlaky: false, ranSeconds: 1, limitSeconds: 60)
        #expect(!LossPolicy.blames(.rejected, evidence))
        #expect(!LossPolicy.blames(.incompleteReport, evidence))
    }

    // MARK: Retry or give up

    @Test func fiveLossesOfChurnAreRetried() {
        let history = (0..<5).map { lost($0.isMultiple(of: 2) ? "w1" : "w2", at: Double($0)) }
        #expect(LossPolicy.decide(history: history, submittedAt: 0, now: 100) == .retry)
    }

    @Test func blameOnTwoWorkersOnlyIsRetriedEvenIfRepeated() {
        let history = (0..<6).map { lost($0.isMultiple(of: 2) ? "w1" : "w2", at: Double($0), blamed: true) }
        #expect(LossPolicy.decide(history: history, submittedAt: 0, now: 100) == .retry)
    }

    @Test func blameOnThreeDifferentWorkersGivesUpNamingThem() throws {
        let history = [lost("w1", blamed: true), lost("w1", blamed: false), lost("w2", blamed: true), lost("w3", blamed: true)]
        guard case .giveUp(let reason) = LossPolicy.decide(history: history, submittedAt: 0, now: 100) else {
            Issue.record("expected give up")
            return
        }
        #expect(reason.contains("3 different workers (w1, w2, w3)"))
        #expect(reason.contains("crash the machines"))
        #expect(reason.contains("refunded"))
    }

    @Test func theTenthInterruptionGivesUp() {
        let nine = (0..<9).map { lost("w\($0)", at: Double($0)) }
        #expect(LossPolicy.decide(history: nine, submittedAt: 0, now: 100) == .retry)
        let ten = nine + [lost("w9")]
        guard case .giveUp(let reason) = LossPolicy.decide(history: ten, submittedAt: 0, now: 100) else {
            Issue.record("expected give up")
            return
        }
        #expect(reason.contains("interrupted 10 times"))
    }

    @Test func aJobStillNotDoneADayAfterSubmissionIsGivenUp() {
        #expect(LossPolicy.decide(history: [lost("w1")], submittedAt: 0, now: 86_399) == .retry)
        guard case .giveUp(let reason) = LossPolicy.decide(history: [lost("w1")], submittedAt: 0, now: 86_400) else {
            Issue.record("expected give up")
            return
        }
        #expect(reason.contains("24 h"))
    }

    @Test func boundaryClocksAndLimitsDoNotTrap() {
        #expect(LossPolicy.decide(history: [lost("w1")], submittedAt: .nan, now: 1) != .retry)
        #expect(LossPolicy.decide(history: [lost("w1")], submittedAt: -.infinity, now: .infinity) != .retry)
        let limits = LossPolicy.Limits(maxLosses: 0, maxAgeSeconds: 10, blamedWorkers: 0)
        #expect(LossPolicy.decide(history: [], submittedAt: 0, now: 1, limits: limits) == .retry)
        #expect(LossPolicy.decide(history: [lost("w1", blamed: true)], submittedAt: 0, now: 1, limits: limits) != .retry)
    }
}

@Suite("SettleRule")
struct SettleRuleTests {
    private func decide(stored: Int64, reported: Int64?, since: Double? = nil, now: Double = 100) -> SettleRule.Decision {
        SettleRule.decide(stored: stored, reported: reported, waitingSince: since, now: now, bound: 30, maxLogBytes: 1 << 20)
    }

    @Test func aReportWhoseWholeLogIsStoredSettles() {
        #expect(decide(stored: 120, reported: 120) == .settle)
        #expect(decide(stored: 0, reported: 0) == .settle)
    }

    @Test func aReportThatSaysNothingOfItsLogSettlesAsBefore() {
        #expect(decide(stored: 0, reported: nil) == .settle)
    }

    @Test func aReportAheadOfTheStoredLogWaitsForTheRest() {
        #expect(decide(stored: 100, reported: 130) == .wait(missing: 30))
        #expect(decide(stored: 100, reported: 130, since: 80, now: 109.9) == .wait(missing: 30))
    }

    @Test func theRestThatNeverComesGivesTheReportUpWithTheCounts() {
        guard case .giveUp(let reason) = decide(stored: 100, reported: 130, since: 70, now: 100) else {
            Issue.record("expected give up")
            return
        }
        #expect(reason.contains("130") && reason.contains("100") && reason.contains("30 s"))
    }

    @Test func impossibleLengthsAreNotBelieved() {
        for claim: Int64 in [-1, Int64.min, (1 << 20) + 1, Int64.max] {
            guard case .giveUp = decide(stored: 0, reported: claim) else {
                Issue.record("claim \(claim) was believed")
                continue
            }
        }
    }

    @Test func moreStoredThanReportedSettles() {
        #expect(decide(stored: 200, reported: 100) == .settle)
    }

    @Test func aClockThatIsNotANumberDoesNotWaitForever() {
        guard case .giveUp = decide(stored: 0, reported: 10, since: .nan, now: 100) else {
            Issue.record("a NaN clock must not wait forever")
            return
        }
    }
}

/// Whether a worker's word that a job's environment could not be built ends the job (money review: any stranger's
/// worker ended every packaged job it was given).
@Suite("EnvironmentFailure")
struct EnvironmentFailureTests {
    @Test func oneStrangersWordSendsTheJobToAnotherOwnerWhileOneCouldRunIt() {
        #expect(!EnvironmentFailure.endsJob(reporter: 7, submitter: 1, earlier: [], couldRun: [7, 8]))
        #expect(!EnvironmentFailure.endsJob(reporter: 7, submitter: 1, earlier: [7], couldRun: [7, 8]), "the same owner twice is one word")
        #expect(!EnvironmentFailure.endsJob(reporter: 7, submitter: 1, earlier: [], couldRun: [7, 1]), "the submitter's own worker may try")
    }

    @Test func twoOwnersTheSubmittersOwnWorkerOrNobodyElseToAskEndsIt() {
        #expect(EnvironmentFailure.endsJob(reporter: 8, submitter: 1, earlier: [7], couldRun: [7, 8, 9]), "two owners' word")
        #expect(EnvironmentFailure.endsJob(reporter: 1, submitter: 1, earlier: [], couldRun: [1, 7, 8]), "the submitter's own worker")
        #expect(EnvironmentFailure.endsJob(reporter: 7, submitter: 1, earlier: [], couldRun: [7]), "a grid of one contributor")
        #expect(EnvironmentFailure.endsJob(reporter: 7, submitter: 1, earlier: [], couldRun: []))
        #expect(EnvironmentFailure.endsJob(reporter: 7, submitter: 1, earlier: [7], couldRun: [7]))
    }
}
