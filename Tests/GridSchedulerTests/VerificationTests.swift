import GridCore
import GridScheduler
import Testing

private func digest(_ exit: Int32? = 0, out: String = "aa", files: [String: String] = ["result.txt": "11"]) -> Verification.Digest {
    Verification.Digest(exitCode: exit, stdoutSHA256: out, files: files)
}

private func trusted(_ rules: Reputation.Rules = Reputation.Rules()) -> Reputation {
    var r = Reputation(rules: rules)
    for _ in 0..<rules.probationResults { _ = r.record(.agreed) }
    return r
}

@Suite("Verification")
struct VerificationTests {
    // MARK: Selection

    @Test func aWorkerOnProbationIsAlwaysChecked() {
        let policy = Verification.Policy(spotCheckRate: 0, seed: 1)
        for id in JobID(1)...50 {
            #expect(Verification.select(job: id, spec: JobSpec(name: "j"), reputation: Reputation(), policy: policy) == .probation)
        }
    }

    @Test func aSubmitterWhoAsksIsAlwaysCheckedEvenOnATrustedWorker() {
        let policy = Verification.Policy(spotCheckRate: 0, seed: 1)
        let spec = JobSpec(name: "j", verify: true)
        for id in JobID(1)...50 { #expect(Verification.select(job: id, spec: spec, reputation: trusted(), policy: policy) == .requested) }
    }

    @Test func spotChecksWaitForAWorkerOfAnotherOwnerButProbationAndARequestedCheckDoNot() {
        let policy = Verification.Policy(spotCheckRate: 1, seed: 1)
        // A worker on probation is checked while another owner's worker is known, online or not (the check waits): its
        // owner could see that the others were offline, and forge results unchecked meanwhile. With none known (a
        // grid of one contributor) nothing could ever check it.
        #expect(Verification.select(job: 1, spec: JobSpec(name: "j"), reputation: Reputation(), policy: policy, checkerOnline: false) == .probation)
        #expect(
            Verification.select(job: 1, spec: JobSpec(name: "j"), reputation: Reputation(), policy: policy, checkerOnline: false, checkerKnown: false)
                == nil)
        #expect(Verification.select(job: 1, spec: JobSpec(name: "j"), reputation: trusted(), policy: policy, checkerOnline: false) == nil)
        #expect(
            Verification.select(job: 1, spec: JobSpec(name: "j", verify: true), reputation: trusted(), policy: policy, checkerOnline: false)
                == .requested)
    }

    /// A check never runs on the run's worker's owner's workers nor the submitter's: neither counts as a checker.
    @Test func checkersAreOwnersBesidesTheWorkersAndTheSubmitters() {
        let c = Verification.Checkers(online: [1, 2], known: [3])
        #expect(c.besides([1, 2]) == (online: false, known: true))
        #expect(c.besides([1]) == (online: true, known: true))
        #expect(Verification.Checkers(online: [1], known: []).besides([1, 2]) == (online: false, known: false))
        #expect(Verification.Checkers(online: [], known: [1, 2]).known == [1, 2])
    }

    /// Which stored workers a manager that starts again counts as known checkers: those that took others' jobs by
    /// their last report, or by their tier for a row kept before the report was, seen within a week.
    @Test func aRestartedManagerRemembersTheWorkersThatTookOthersJobs() {
        let now = 1_800_000_000.0
        let week = Verification.rememberedCheckerSeconds
        #expect(Verification.remembersChecker(acceptsOthers: true, tier: .bwrap, lastSeen: now, now: now))
        #expect(Verification.remembersChecker(acceptsOthers: true, tier: .restricted, lastSeen: now, now: now), "--allow-unsandboxed")
        #expect(!Verification.remembersChecker(acceptsOthers: false, tier: .bwrap, lastSeen: now, now: now), "its report wins over its tier")
        // A row from before the report was kept: its tier, as a worker without --allow-unsandboxed.
        #expect(Verification.remembersChecker(acceptsOthers: nil, tier: .bwrap, lastSeen: now, now: now))
        #expect(Verification.remembersChecker(acceptsOthers: nil, tier: .oci, lastSeen: now, now: now))
        #expect(!Verification.remembersChecker(acceptsOthers: nil, tier: .restricted, lastSeen: now, now: now))
        // Seen within the week, or not: an owner long gone would make every probation check wait in vain.
        #expect(Verification.remembersChecker(acceptsOthers: true, tier: .bwrap, lastSeen: now - week, now: now))
        #expect(!Verification.remembersChecker(acceptsOthers: true, tier: .bwrap, lastSeen: now - week - 1, now: now))
        for odd in [Double.nan, .infinity, -.infinity] {
            #expect(!Verification.remembersChecker(acceptsOthers: true, tier: .bwrap, lastSeen: odd, now: now))
            #expect(!Verification.remembersChecker(acceptsOthers: true, tier: .bwrap, lastSeen: now, now: odd))
        }
    }

    @Test func aNondeterministicJobIsNeverCheckedNotEvenOnProbation() {
        let policy = Verification.Policy(spotCheckRate: 1, seed: 1)
        let spec = JobSpec(name: "j", nondeterministic: true)
        for id in JobID(1)...50 {
            #expect(Verification.select(job: id, spec: spec, reputation: Reputation(), policy: policy) == nil)
            #expect(Verification.select(job: id, spec: spec, reputation: trusted(), policy: policy) == nil)
        }
    }

    @Test func aTrustedWorkerIsSpotCheckedAtAboutTheRateOver200Jobs() {
        // 200 jobs at 5%: 10 expected, with a binomial standard deviation of about 3.1; the tolerance is 4 of them
        // (10 ± 12), and the draw is fixed per seed, so this never flakes.
        for seed in UInt64(0)..<20 {
            let policy = Verification.Policy(spotCheckRate: 0.05, seed: seed)
            let checked = (JobID(1)...200).filter {
                Verification.select(job: $0, spec: JobSpec(name: "j"), reputation: trusted(), policy: policy) == .spotCheck
            }.count
            #expect(abs(checked - 10) <= 12, "seed \(seed): \(checked) of 200 checked")
        }
        // Over many jobs the rate is close.
        let policy = Verification.Policy(spotCheckRate: 0.05, seed: 42)
        let checked = (JobID(1)...100_000).filter { Verification.spotDraw(job: $0, seed: policy.seed) < 0.05 }.count
        #expect((4_700...5_300).contains(checked))
    }

    /// A run that failed or timed out is paid its base (a timed-out one its whole time) for work the worker may never
    /// have done: a trusted worker's such runs are checked four times as often as its completed ones (a job drawn for a
    /// completed run is drawn for a failed one too), and at most all.
    @Test func failedAndTimedOutRunsAreCheckedFourTimesAsOften() {
        let policy = Verification.Policy(spotCheckRate: 0.05, seed: 42)
        #expect(Verification.failedRunRate(policy) == 0.2)
        func checked(_ ended: JobState) -> Set<JobID> {
            Set((JobID(1)...20_000).filter {
                Verification.select(job: $0, spec: JobSpec(name: "j"), reputation: trusted(), policy: policy, ended: ended) == .spotCheck
            })
        }
        let completed = checked(.completed)
        let failed = checked(.failed)
        #expect(completed.isSubset(of: failed))
        #expect((3_700...4_300).contains(failed.count), "\(failed.count)")
        #expect(checked(.timedOut) == failed)
        #expect(Verification.failedRunRate(Verification.Policy(spotCheckRate: 0.5)) == 1)
        #expect(Verification.failedRunRate(Verification.Policy(spotCheckRate: 0)) == 0)
        // --nondeterministic jobs are never checked, failed or not.
        var spec = JobSpec(name: "j")
        spec.nondeterministic = true
        #expect(Verification.select(job: 1, spec: spec, reputation: trusted(), policy: Verification.Policy(spotCheckRate: 1), ended: .failed) == nil)
    }

    @Test func theSpotCheckDrawIsFixedByJobAndSeedAndChangesWithTheSeed() {
        #expect(Verification.spotDraw(job: 7, seed: 3) == Verification.spotDraw(job: 7, seed: 3))
        let a = (JobID(1)...64).map { Verification.spotDraw(job: $0, seed: 1) < 0.5 }
        let b = (JobID(1)...64).map { Verification.spotDraw(job: $0, seed: 2) < 0.5 }
        #expect(a != b)
        for id in JobID(-5)...5 { #expect((0..<1).contains(Verification.spotDraw(job: id, seed: .max))) }
    }

    @Test func ratesOutsideZeroToOneAreClamped() {
        #expect(Verification.Policy(spotCheckRate: 7).spotCheckRate == 1)
        #expect(Verification.Policy(spotCheckRate: -1).spotCheckRate == 0)
        #expect(Verification.Policy(spotCheckRate: .nan).spotCheckRate == 0)
        #expect(Verification.Policy(fundSharePercent: 500).fundSharePercent == 100)
        let never = Verification.Policy(spotCheckRate: 0, seed: 9)
        #expect((JobID(1)...500).allSatisfy { Verification.select(job: $0, spec: JobSpec(name: "j"), reputation: trusted(), policy: never) == nil })
        let always = Verification.Policy(spotCheckRate: 1, seed: 9)
        #expect((JobID(1)...500).allSatisfy { Verification.select(job: $0, spec: JobSpec(name: "j"), reputation: trusted(), policy: always) == .spotCheck })
    }

    // MARK: Agreement

    @Test func runsAgreeOnlyWhenExitCodeStdoutAndEveryFileMatch() {
        #expect(Verification.agree(digest(), digest()))
        #expect(!Verification.agree(digest(0), digest(1)))
        #expect(!Verification.agree(digest(0), digest(nil)))
        #expect(!Verification.agree(digest(out: "aa"), digest(out: "bb")))
        #expect(!Verification.agree(digest(files: ["result.txt": "11"]), digest(files: ["result.txt": "22"])))
        #expect(!Verification.agree(digest(files: ["result.txt": "11"]), digest(files: ["result.txt": "11", "extra": "00"])))
        #expect(!Verification.agree(digest(files: ["a": "11"]), digest(files: ["b": "11"])))
    }

    @Test func twoAgreeingRunsDecideForBoth() {
        #expect(Verification.verdict([digest(), digest()]) == .decided(agreeing: [0, 1], contradicted: []))
    }

    @Test func oneRunDecidesNothing() {
        #expect(Verification.verdict([digest()]) == .runAnother)
        #expect(Verification.verdict([]) == .runAnother)
    }

    @Test func aDisagreementGoesToAThirdRun() {
        #expect(Verification.verdict([digest(out: "forged"), digest()]) == .runAnother)
    }

    @Test func theThirdRunDecidesByMajority() {
        #expect(Verification.verdict([digest(out: "forged"), digest(), digest()]) == .decided(agreeing: [1, 2], contradicted: [0]))
        #expect(Verification.verdict([digest(), digest(out: "forged"), digest()]) == .decided(agreeing: [0, 2], contradicted: [1]))
    }

    @Test func threeDifferentResultsAreInconclusive() {
        #expect(Verification.verdict([digest(out: "a"), digest(out: "b"), digest(out: "c")]) == .inconclusive)
    }

    /// A check run that ended without a result (given up, refunded) decides nothing: another takes its place, a bounded
    /// number of times. It used to make the verdict inconclusive at once, which paid the checked worker its escrow.
    @Test func aCheckRunWithoutAResultIsReplacedNotTakenForAVerdict() {
        let forged = digest(out: "forged")
        #expect(Verification.verdict(results: [forged, nil]) == .runAnother)
        #expect(Verification.verdict(results: [forged, nil, nil]) == .runAnother)
        #expect(Verification.verdict(results: [forged, nil, nil, nil]) == .inconclusive, "bounded")
        #expect(Verification.verdict(results: [forged, nil, digest()]) == .runAnother, "one real check disagrees: a third decides")
        #expect(Verification.verdict(results: [forged, nil, digest(), digest()]) == .decided(agreeing: [2, 3], contradicted: [0]))
        #expect(Verification.verdict(results: [digest(), nil, digest()]) == .decided(agreeing: [0, 2], contradicted: []), "the lost run is neither")
        #expect(Verification.verdict(results: [nil, digest()]) == .inconclusive, "a first run without a result was never checked")
        #expect(Verification.verdict(results: []) == .inconclusive)
    }

    /// The wait as a job's history says it, exactly (hours were truncated: 1.5 h was "1 h"), whatever the number.
    @Test func theWaitIsSaidExactly() {
        #expect(Verification.waitWords(86_400) == "24 h")
        #expect(Verification.waitWords(5_400) == "90 min", "1.5 h")
        #expect(Verification.waitWords(3_600) == "1 h")
        #expect(Verification.waitWords(5_401) == "5401 s")
        #expect(Verification.waitWords(1_000) == "1000 s")
        #expect(Verification.waitWords(0.2) == "1 s")
        for odd in [0, -1, Double.nan, -Double.infinity] { #expect(Verification.waitWords(odd) == "24 h", "\(odd): the default") }
        #expect(!Verification.waitWords(.infinity).isEmpty)
        #expect(!Verification.waitWords(Double.greatestFiniteMagnitude).isEmpty, "no trap")
    }

    /// A check that no worker could run within the wait ends the verification: another would wait the same way. A
    /// verdict the results already reach stands.
    @Test func aCheckThatWaitedOutEndsTheVerificationInconclusive() {
        let forged = digest(out: "forged")
        #expect(Verification.verdict(results: [forged, nil], waitedOut: true) == .inconclusive)
        #expect(Verification.verdict(results: [forged, digest(), nil], waitedOut: true) == .inconclusive, "no third run waits again")
        #expect(Verification.verdict(results: [forged, nil, digest(), digest()], waitedOut: true) == .decided(agreeing: [2, 3], contradicted: [0]))
        #expect(Verification.verdict(results: [digest(), digest()], waitedOut: true) == .decided(agreeing: [0, 1], contradicted: []))
    }

    @Test func aCheckWaitsOutItsLimitAndNoLessWhateverTheClockSays() {
        let day = Verification.defaultCheckWaitSeconds
        #expect(day == 86_400)
        #expect(!Verification.waitedOut(queuedAt: 1_000, now: 1_000 + day - 1, limit: day))
        #expect(Verification.waitedOut(queuedAt: 1_000, now: 1_000 + day, limit: day))
        #expect(Verification.waitedOut(queuedAt: 1_000, now: 1_002, limit: 2))
        #expect(!Verification.waitedOut(queuedAt: 1_000, now: 999, limit: 2), "a clock that went back waits on")
        // A limit that is not a positive finite number is the default, never "at once".
        for limit in [0, -1, .nan, .infinity, -.infinity] as [Double] {
            #expect(!Verification.waitedOut(queuedAt: 0, now: day - 1, limit: limit), "\(limit)")
            #expect(Verification.waitedOut(queuedAt: 0, now: day, limit: limit), "\(limit)")
        }
        // A clock or a stored time that is not finite waits out nothing; huge ones do not trap.
        for (queued, now) in [(Double.nan, 5), (0, .nan), (-.infinity, 5), (0, .infinity), (-.greatestFiniteMagnitude, .greatestFiniteMagnitude)] as [(Double, Double)] {
            #expect(Verification.waitedOut(queuedAt: queued, now: now, limit: 2) == (queued.isFinite && now.isFinite), "\(queued) \(now)")
        }
    }

    @Test func withEveryResultTheVerdictIsAsBefore() {
        let sets: [[Verification.Digest]] = [
            [digest(), digest()], [digest()], [digest(out: "forged"), digest()], [digest(out: "forged"), digest(), digest()],
            [digest(out: "a"), digest(out: "b"), digest(out: "c")],
        ]
        for runs in sets { #expect(Verification.verdict(results: runs) == Verification.verdict(runs)) }
    }

    // MARK: Credits

    private func net(_ moves: [Verification.Movement], _ account: LedgerAccount) -> Int {
        moves.reduce(0) { $0 + ($1.to == account ? $1.amount : 0) - ($1.from == account ? $1.amount : 0) }
    }

    @Test func aRunUnderCheckIsPaidIntoEscrowLessTheFundsShare() {
        let moves = Verification.settleRun(job: 4, held: 20, paid: 13, fundSharePercent: 5, workerOwner: 2, escrowed: true, payer: .user(1))
        #expect(net(moves, .fund) == 1)  // 5% of 13, rounded up
        #expect(net(moves, .escrow(4)) == 12)
        #expect(net(moves, .user(2)) == 0)
        #expect(net(moves, .user(1)) == 7)
        #expect(net(moves, .hold(4)) == -20)
    }

    @Test func aRunNotUnderCheckPaysTheOwnerLessTheFundsShare() {
        let moves = Verification.settleRun(job: 4, held: 20, paid: 13, fundSharePercent: 5, workerOwner: 2, escrowed: false, payer: .user(1))
        #expect(net(moves, .user(2)) == 12)
        #expect(net(moves, .fund) == 1)
        #expect(net(moves, .escrow(4)) == 0)
    }

    @Test func aVerifiedJobsReserveMovesToTheCheckRunsHold() {
        let moves = Verification.settleRun(
            job: 4, held: 40, paid: 13, fundSharePercent: 5, workerOwner: 2, escrowed: true, payer: .user(1), reserve: 20, reserveTo: .hold(9))
        #expect(net(moves, .hold(9)) == 20)
        #expect(net(moves, .user(1)) == 7)
        #expect(net(moves, .hold(4)) == -40)
    }

    @Test func settlingNeverMovesMoreThanIsHeldWhateverTheInputs() {
        for (held, paid, reserve) in [(0, 13, 5), (5, 13, 20), (20, -3, 0), (20, .max, .max), (.max, .max, .max), (-4, 2, 2)] {
            let moves = Verification.settleRun(
                job: 1, held: held, paid: paid, fundSharePercent: 5, workerOwner: 2, escrowed: true, payer: .user(1), reserve: reserve,
                reserveTo: .hold(2))
            #expect(moves.allSatisfy { $0.amount > 0 && $0.from == .hold(1) })
            #expect(moves.reduce(0) { $0 + $1.amount } == max(0, held))
        }
    }

    @Test func aFundPaidCheckHoldsNoMoreThanTheFundHas() {
        #expect(Verification.fundCheckHold(check: 3, cost: 20, fundBalance: 50) == [.init(from: .fund, to: .hold(3), amount: 20, reason: "check run hold")])
        #expect(Verification.fundCheckHold(check: 3, cost: 20, fundBalance: 6).first?.amount == 6)
        #expect(Verification.fundCheckHold(check: 3, cost: 20, fundBalance: 0).isEmpty)
        #expect(Verification.fundCheckHold(check: 3, cost: 20, fundBalance: -8).isEmpty)
        // A --verify submitter pays for the check that replaces a lost one, as far as their balance goes.
        #expect(Verification.checkHold(check: 4, cost: 20, from: .user(7), balance: 12) == [.init(from: .user(7), to: .hold(4), amount: 12, reason: "check run hold")])
        #expect(Verification.checkHold(check: 4, cost: Int.max, from: .user(7), balance: Int.min).isEmpty)
    }

    /// Who pays a check: the submitter who asked; the fund for probation and spot checks, a probation run repaying it
    /// when its result stands (three accounts of one person drained the fund with probation checks its partner's
    /// worker ran), and its submitter paying it for the result when the run was a forgery.
    @Test func aProbationRunRepaysTheFundForItsChecksOrItsSubmitterPaysForTheResult() {
        #expect(Verification.checkPayer(.requested, root: 9, submitter: 3) == .user(3))
        #expect(Verification.checkPayer(.probation, root: 9, submitter: 3) == .fund)
        #expect(Verification.checkPayer(.spotCheck, root: 9, submitter: 3) == .fund)
        #expect(Verification.repayChecks(run: 9, escrowed: 13, checksPaid: 14) == [
            .init(from: .escrow(9), to: .fund, amount: 13, reason: "checks repaid by the checked run")
        ])
        #expect(Verification.repayChecks(run: 9, escrowed: 13, checksPaid: 5).first?.amount == 5)
        for (escrowed, paid) in [(0, 5), (13, 0), (-1, 5), (13, -7), (Int.min, Int.max), (Int.max, Int.min)] {
            let moves = Verification.repayChecks(run: 9, escrowed: escrowed, checksPaid: paid)
            #expect(moves.allSatisfy { $0.amount > 0 && $0.amount <= max(0, escrowed) }, "\(escrowed), \(paid)")
        }
        #expect(Verification.forgedRunSettles(run: 9, escrowed: 14, submitter: 3, resultPaid: 58, submitterBalance: 100) == [
            .init(from: .escrow(9), to: .user(3), amount: 14, reason: "forged run refunded"),
            .init(from: .user(3), to: .fund, amount: 58, reason: "the run that gave the result"),
        ])
        #expect(Verification.forgedRunSettles(run: 9, escrowed: 14, submitter: 3, resultPaid: 58, submitterBalance: 10).last?.amount == 24,
            "no more than the submitter has, the refund included")
        for (escrowed, paid, balance) in [(0, 0, 0), (-5, 10, 3), (Int.max, Int.max, Int.max), (Int.min, Int.min, Int.min), (3, Int.max, Int.max)] {
            let moves = Verification.forgedRunSettles(run: 9, escrowed: escrowed, submitter: 3, resultPaid: paid, submitterBalance: balance)
            #expect(moves.allSatisfy { $0.amount > 0 }, "\(escrowed), \(paid), \(balance)")
        }
    }

    /// A fund-held check that agrees is paid no more than the run it checks; the fund's checks of an inconclusive
    /// verdict share one run's cost; the checked run, a check that beat it, and a check a user paid for are never cut.
    /// (Before, a check was paid whatever time its worker claimed: a partner's checker that sat on its check to the
    /// job's limit took the difference from the fund.)
    @Test func checksAreCutToWhatTheirVerdictGrants() {
        let fund = [false, true, true, true]
        func granted(_ verdict: Verification.Verdict, _ paid: [Int?], fundPaid: [Bool] = fund, cost: Int = 613) -> [Int: Int] {
            Verification.grantedPays(verdict, paid: paid, fundPaid: fundPaid, cost: cost)
        }
        // A new worker's instant answer (9) and a checker that sat on it for the job's limit (608) agree: the check is 9.
        #expect(granted(.decided(agreeing: [0, 1], contradicted: []), [9, 608]) == [1: 9])
        // A check a `--verify` submitter paid for is not cut: the fund is not exposed.
        #expect(granted(.decided(agreeing: [0, 1], contradicted: []), [9, 608], fundPaid: [false, false]).isEmpty)
        // The other way round, the checked run keeps its pay: a quick check's claim never cuts it.
        #expect(granted(.decided(agreeing: [0, 1], contradicted: []), [608, 9]).isEmpty)
        #expect(granted(.decided(agreeing: [0, 1], contradicted: []), [50, 50]).isEmpty)
        // A forgery answered at once (9) beaten by two honest runs (53, 58): each keeps its own pay.
        #expect(granted(.decided(agreeing: [1, 2], contradicted: [0]), [9, 53, 58]).isEmpty)
        // A third run that agrees with the checked run is cut to it; the contradicted check is left (it is forfeited).
        #expect(granted(.decided(agreeing: [0, 2], contradicted: [1]), [53, 900, 58]) == [2: 53])
        // Inconclusive: the fund's checks that were paid share one run's cost; a single one is paid its run.
        #expect(granted(.inconclusive, [9, 613, 613]) == [1: 306, 2: 306])
        #expect(granted(.inconclusive, [9, 613, nil]).isEmpty, "an honest check of a forgery, no tie-break: paid its run")
        #expect(granted(.inconclusive, [9, 613, 613], fundPaid: [false, false, false]).isEmpty)
        #expect(granted(.inconclusive, [608, 300, 400]) == [2: 306])
        #expect(granted(.runAnother, [9, 608]).isEmpty)
        // A checked run paid nothing: nothing is paid more than nothing.
        #expect(granted(.decided(agreeing: [0, 1], contradicted: []), [nil, 14]) == [1: 0])
        // Hostile values never trap, never grant a negative pay, never raise one, never cut the checked run, and name
        // only runs that exist.
        let hostile: [[Int?]] = [[], [Int.min, Int.max], [Int.max, Int.max, Int.min], [-1, 0, nil], [nil], [0, Int.max, Int.max]]
        for paid in hostile {
            for verdict in [Verification.Verdict.inconclusive, .runAnother, .decided(agreeing: [0, 1, 7], contradicted: [2]), .decided(agreeing: [], contradicted: [])] {
                for cost in [0, -1, 613, Int.max, Int.min] {
                    for fundPaid in [fund, [], [true], [true, true, true, true, true, true, true, true]] {
                        for (i, g) in granted(verdict, paid, fundPaid: fundPaid, cost: cost) {
                            #expect(paid.indices.contains(i) && i > 0, "\(verdict) \(paid)")
                            #expect(g >= 0 && g < max(0, paid[i] ?? 0), "\(verdict) \(paid)")
                        }
                    }
                }
            }
        }
    }

    @Test func aCutChecksPayGoesBackToWhoeverHeldIt() {
        // Paid 613 (31 to the fund, 582 into escrow), cut to 14: the escrow keeps 13 (582 × 14 / 613), 569 go back.
        #expect(Verification.cutEscrow(run: 4, escrowed: 582, paid: 613, granted: 14, payer: .fund, fundBalance: 1_000, why: "w") == [
            .init(from: .escrow(4), to: .fund, amount: 569, reason: "w")
        ])
        // A submitter who held it (`--verify`) gets the fund's share of the difference back too: 599 in all.
        #expect(Verification.cutEscrow(run: 4, escrowed: 582, paid: 613, granted: 14, payer: .user(3), fundBalance: 1_000, why: "w") == [
            .init(from: .escrow(4), to: .user(3), amount: 569, reason: "w"),
            .init(from: .fund, to: .user(3), amount: 30, reason: "the fund's share of a cut pay"),
        ])
        #expect(Verification.cutEscrow(run: 4, escrowed: 582, paid: 613, granted: 14, payer: .user(3), fundBalance: 7, why: "w").last?.amount == 7,
            "no more than the fund has")
        #expect(Verification.cutEscrow(run: 4, escrowed: 13, paid: 14, granted: 14, payer: .fund, fundBalance: 0, why: "w").isEmpty)
        let values = [0, 1, -1, 14, 613, Int.max, Int.min]
        for escrowed in values {
            for paid in values {
                for granted in values {
                    let moves = Verification.cutEscrow(run: 4, escrowed: escrowed, paid: paid, granted: granted, payer: .user(3), fundBalance: 50, why: "w")
                    #expect(moves.allSatisfy { $0.amount > 0 }, "\(escrowed), \(paid), \(granted)")
                    #expect(moves.filter { $0.from == .escrow(4) }.allSatisfy { $0.amount <= max(0, escrowed) }, "\(escrowed), \(paid), \(granted)")
                    #expect(moves.filter { $0.from == .fund }.allSatisfy { $0.amount <= 50 }, "\(escrowed), \(paid), \(granted)")
                }
            }
        }
    }

    @Test func escrowIsReleasedOnAgreementAndForfeitedOnContradiction() {
        #expect(Verification.resolveEscrow(run: 5, escrowed: 12, workerOwner: 2, agreed: true) == [
            .init(from: .escrow(5), to: .user(2), amount: 12, reason: "escrow released")
        ])
        #expect(Verification.resolveEscrow(run: 5, escrowed: 12, workerOwner: 2, agreed: false) == [
            .init(from: .escrow(5), to: .fund, amount: 12, reason: "escrow forfeited")
        ])
        #expect(Verification.resolveEscrow(run: 5, escrowed: 0, workerOwner: 2, agreed: false).isEmpty)
    }
}

@Suite("Reputation")
struct ReputationTests {
    @Test func aNewWorkerIsOnProbationUntilFiveAgreeingResults() {
        var r = Reputation()
        for _ in 0..<4 {
            #expect(r.onProbation)
            #expect(r.record(.agreed) == [])
        }
        #expect(r.onProbation)
        #expect(r.record(.agreed) == [.leftProbation])
        #expect(!r.onProbation)
        #expect(r.verified == 5)
    }

    @Test func aContradictionDoesNotCountTowardsProbation() {
        var r = Reputation()
        for _ in 0..<4 { _ = r.record(.agreed) }
        _ = r.record(.contradicted)
        #expect(r.onProbation)
        #expect(r.contradicted == 1)
    }

    @Test func twoContradictionsInTheLastTwentyChecksQuarantine() {
        var r = Reputation()
        #expect(r.record(.contradicted) == [])
        #expect(!r.quarantined)
        let actions = r.record(.contradicted)
        #expect(r.quarantined)
        guard case .quarantine(let reason)? = actions.first else {
            Issue.record("expected a quarantine, got \(actions)")
            return
        }
        #expect(reason.contains("contradicted 2 times"))
        // Already quarantined: no second action.
        #expect(r.record(.contradicted) == [])
    }

    @Test func contradictionsTwentyChecksApartDoNotQuarantine() {
        var r = Reputation()
        _ = r.record(.contradicted)
        for _ in 0..<19 { _ = r.record(.agreed) }
        #expect(r.recent.count == 20)
        #expect(r.record(.contradicted) == [])  // the first one left the window
        #expect(!r.quarantined)
        #expect(r.recentContradictions == 1)
    }

    @Test func liftingClearsTheWindowButKeepsTheTotals() {
        var r = Reputation()
        _ = r.record(.contradicted)
        _ = r.record(.contradicted)
        r.lift()
        #expect(!r.quarantined)
        #expect(r.contradicted == 2)
        #expect(r.record(.contradicted) == [])
        #expect(!r.quarantined)
    }

    @Test func aRecordRebuiltFromItsHistoryMatchesOneBuiltEventByEvent() {
        let history: [Reputation.Outcome] = [.agreed, .agreed, .contradicted, .agreed, .agreed, .agreed, .agreed]
        var live = Reputation()
        for o in history { _ = live.record(o) }
        let rebuilt = Reputation(history: history, quarantined: false)
        #expect(rebuilt == live)
        #expect(!rebuilt.onProbation)
    }

    @Test func countsSaturateInsteadOfTrapping() {
        var r = Reputation(rules: .init(probationResults: -3, window: 0, quarantineAfter: 0))
        #expect(!r.onProbation)
        #expect(r.record(.agreed) == [])
        #expect(r.recent.count == 1)
    }
}
