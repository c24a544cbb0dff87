public import GridCore

/// Adaptive replication (BOINC-style): which finished runs are checked by a second run on another owner's worker,
/// whether runs agree, what a set of runs decides, and how credits move meanwhile. Pure functions, no I/O, no clock.
public enum Verification {
    /// The manager's settings for verification (`manager --spot-check-rate`, `--probation-results`, `--fund-share`).
    public struct Policy: Hashable, Sendable {
        /// The share of a trusted worker's results that are checked, 0...1.
        public var spotCheckRate: Double
        /// Percent of every payment that goes to the verification fund.
        public var fundSharePercent: Int
        /// Probation and quarantine thresholds.
        public var reputation: Reputation.Rules
        /// Mixed into the spot-check draw, so a worker that knows a job's id cannot tell whether it will be checked. A
        /// manager picks one at random at start-up; tests pass their own to replay draws.
        public var seed: UInt64

        public init(
            spotCheckRate: Double = 0.05, fundSharePercent: Int = CreditRules.defaultFundSharePercent,
            reputation: Reputation.Rules = Reputation.Rules(), seed: UInt64 = 0
        ) {
            self.spotCheckRate = spotCheckRate.isFinite ? min(max(spotCheckRate, 0), 1) : 0
            self.fundSharePercent = min(max(fundSharePercent, 0), 100)
            self.reputation = reputation
            self.seed = seed
        }
    }

    /// Why a result is checked.
    public enum Reason: String, Hashable, Sendable, Codable {
        /// Its worker is on probation.
        case probation
        /// A random spot check of a trusted worker.
        case spotCheck = "spot-check"
        /// The submitter asked (`--verify`), and pays for the check run.
        case requested
    }

    // MARK: - Selection

    /// Whether the finished run of job `job` on a worker with `reputation` is checked, and why (nil: not checked).
    ///
    /// A `--nondeterministic` job is never checked; a `--verify` job always; a worker on probation always; any other
    /// run at `policy.spotCheckRate`, drawn from a hash of the job id and the policy's seed (the same job and seed
    /// always draw the same). Spot checks are made only while a worker that could run the check is online
    /// (`checkerOnline`: another owner's than the run's worker's and the submitter's, taking others' jobs, not
    /// quarantined): on a grid of one owner's workers they could never run, and a trusted worker's pay would wait in
    /// escrow for nothing. A probation run is checked while such a worker is known (`checkerKnown`: one has registered since
    /// the manager started, or within a week before it, `remembersChecker`), online or not, and the check waits for it: a new worker whose owner saw (on the
    /// workers page) that the others were offline forged other users' results unchecked, and was paid for them.
    ///
    /// A run that did not complete (`ended` failed or timed out) is drawn at `failedRunRate`, four times the spot-check
    /// rate: such a run is paid its base (and a timed-out one its whole time) for work a worker may never have done, and
    /// an honest failure's check costs little (it fails the same way).
    public static func select(
        job: JobID, spec: JobSpec, reputation: Reputation, policy: Policy, checkerOnline: Bool = true, checkerKnown: Bool = true,
        ended: JobState = .completed
    ) -> Reason? {
        if spec.isNondeterministic { return nil }
        if spec.wantsVerification { return .requested }
        if reputation.onProbation { return checkerOnline || checkerKnown ? .probation : nil }
        guard checkerOnline else { return nil }
        let rate = ended == .failed || ended == .timedOut ? failedRunRate(policy) : policy.spotCheckRate
        return spotDraw(job: job, seed: policy.seed) < rate ? .spotCheck : nil
    }

    /// The owners whose workers could run a check run: `online` now, `known`: registered since the manager
    /// started or remembered by the store (online or not).
    /// Only workers that take other users' jobs and are not quarantined count.
    public struct Checkers: Hashable, Sendable {
        public var online: Set<UserID>
        public var known: Set<UserID>
        public init(online: Set<UserID>, known: Set<UserID>) {
            self.online = online
            self.known = known.union(online)
        }

        /// Whether a worker of an owner other than `owners` (the run's worker's and the job's submitter's: a check
        /// never runs on theirs) is online, and whether one is known.
        public func besides(_ owners: Set<UserID>) -> (online: Bool, known: Bool) {
            (!online.subtracting(owners).isEmpty, !known.subtracting(owners).isEmpty)
        }
    }

    /// Whether a worker the store remembers is a known checker when a manager starts (`Checkers.known`): it took other
    /// users' jobs when it last registered (by its sandbox report; for a row kept before the report was, by its tier,
    /// as `Admission.acceptsOthers` without `--allow-unsandboxed`), and it was last seen within
    /// `rememberedCheckerSeconds` (an owner gone for longer would only make probation checks wait in vain). Quarantine
    /// is left to `checkers()`, which reads it live (a quarantine lifted since counts). Before, a manager started again
    /// knew no checker until another owner's worker registered, so a new worker's probation runs went unchecked and
    /// were paid at once: a stranger who joined just after a restart was paid for forged results.
    public static func remembersChecker(acceptsOthers: Bool?, tier: SandboxTier, lastSeen: Double, now: Double) -> Bool {
        guard lastSeen.isFinite, now.isFinite, now - lastSeen <= rememberedCheckerSeconds else { return false }
        return acceptsOthers ?? Admission.acceptsOthers(tier: tier, allowUnsandboxed: false)
    }

    /// How long after it was last seen a worker still counts as a known checker when a manager starts: a week.
    public static let rememberedCheckerSeconds: Double = 7 * 86_400

    /// The share of a trusted worker's failed or timed-out runs that are checked: four times the spot-check rate, at most all.
    public static func failedRunRate(_ policy: Policy) -> Double { min(1, policy.spotCheckRate * 4) }

    /// A number in [0, 1) fixed by the job id and the seed, evenly spread over job ids.
    public static func spotDraw(job: JobID, seed: UInt64) -> Double {
        var g = SplitMix(seed: seed ^ (UInt64(bitPattern: job) &* 0x9E37_79B9_7F4A_7C15))
        return Double(g.next() >> 11) / Double(UInt64(1) << 53)
    }

    // MARK: - Agreement

    /// What is compared of one run: exit code, a hash of its output stream, and each output file's SHA-256.
    public struct Digest: Hashable, Sendable, Codable {
        public var exitCode: Int32?
        public var stdoutSHA256: String
        /// File name → SHA-256 (hex).
        public var files: [String: String]
        public init(exitCode: Int32?, stdoutSHA256: String, files: [String: String]) {
            self.exitCode = exitCode
            self.stdoutSHA256 = stdoutSHA256
            self.files = files
        }
    }

    /// Two runs agree when their exit codes, output streams and output files (names and contents) all match.
    public static func agree(_ a: Digest, _ b: Digest) -> Bool { a == b }

    /// What a set of runs of one job decides.
    public enum Verdict: Hashable, Sendable {
        /// Not enough runs yet: run one more, on a worker of an owner none of the runs so far had.
        case runAnother
        /// Decided: the runs (by index) whose result stands, and those it contradicts.
        case decided(agreeing: [Int], contradicted: [Int])
        /// No result has a majority and no more runs will be made.
        case inconclusive
    }

    /// The verdict over `runs` (the first run first, then the checks in order), with at most `maxRuns` runs in all
    /// (default 3: a disagreement between two goes to a third, which decides by majority).
    public static func verdict(_ runs: [Digest], maxRuns: Int = 3) -> Verdict {
        guard runs.count >= 2 else { return .runAnother }
        // The largest group of agreeing runs (the earliest such group on a tie).
        var best: [Int] = []
        for i in runs.indices {
            let group = runs.indices.filter { agree(runs[$0], runs[i]) }
            if group.count > best.count { best = group }
        }
        if best.count * 2 > runs.count {
            return .decided(agreeing: best, contradicted: runs.indices.filter { !best.contains($0) })
        }
        return runs.count < maxRuns ? .runAnother : .inconclusive
    }

    /// The verdict over every run of a job, a run that ended without a result (given up, refunded) as nil.
    ///
    /// A check run that ended without a result decides nothing: another takes its place, up to `maxUnfinishedChecks`
    /// such runs (then the verdict is inconclusive). Before, one lost check run made the verdict inconclusive at once,
    /// and that released the checked run's escrow to its worker: a worker on probation whose checks were interrupted
    /// (on an old job, one interruption gives a run up) was paid with no check at all. Indices are into `results`; a
    /// run without a result is neither agreeing nor contradicted.
    ///
    /// `waitedOut`: the last check ended because no worker could run it within `checkWaitSeconds`. Another would wait
    /// the same way, so a verdict that needs another run is inconclusive at once.
    public static func verdict(results: [Digest?], maxRuns: Int = 3, maxUnfinishedChecks: Int = 2, waitedOut: Bool = false) -> Verdict {
        guard let first = results.first, first != nil else { return .inconclusive }
        let finished = results.indices.filter { results[$0] != nil }
        let unfinished = results.count - finished.count
        switch verdict(finished.compactMap { results[$0] }, maxRuns: maxRuns) {
        case .decided(let agreeing, let contradicted):
            return .decided(agreeing: agreeing.map { finished[$0] }, contradicted: contradicted.map { finished[$0] })
        case .runAnother:
            return unfinished <= maxUnfinishedChecks && !waitedOut ? .runAnother : .inconclusive
        case .inconclusive:
            return .inconclusive
        }
    }

    // MARK: - Waiting

    /// How long a check run may wait in the queue, by default (`manager --check-wait-hours`): a day.
    public static let defaultCheckWaitSeconds: Double = 86_400

    /// The check wait `waitedOut` holds to: `limit`, or the default when it is not a positive finite number.
    public static func checkWaitLimit(_ limit: Double) -> Double {
        limit.isFinite && limit > 0 ? limit : defaultCheckWaitSeconds
    }

    /// Whether a check run queued at `queuedAt` has waited out `limit` seconds at `now` without being placed: it ends
    /// without a result, and the job's verification is inconclusive (`verdict(results:waitedOut:)`), which releases the
    /// checked run's escrow. Before, a check that no worker could ever run (the only other owner's workers gone for
    /// good) waited for ever, with the checked run's pay locked in escrow and the check's hold taken from its payer.
    /// A limit that is not a positive finite number is the default; a clock that reads NaN waits out nothing.
    public static func waitedOut(queuedAt: Double, now: Double, limit: Double) -> Bool {
        let limit = checkWaitLimit(limit)
        guard queuedAt.isFinite, now.isFinite else { return false }
        return now - queuedAt >= limit
    }

    /// A check wait of `seconds` (as `waitedOut` takes it) as a reader takes it, exactly: "24 h", "90 min" (1.5 h),
    /// "1000 s". Hours were truncated before: a wait of 1.5 h was said to be "1 h".
    public static func waitWords(_ seconds: Double) -> String {
        let limit = checkWaitLimit(seconds).rounded()
        let s = max(1, Int(min(limit, 1e15)))
        if s % 3600 == 0 { return "\(s / 3600) h" }
        if s % 60 == 0 { return "\(s / 60) min" }
        return "\(s) s"
    }

    // MARK: - Credits

    /// One ledger movement the store writes.
    public struct Movement: Hashable, Sendable {
        public var from: LedgerAccount
        public var to: LedgerAccount
        public var amount: Int
        public var reason: String
        public init(from: LedgerAccount, to: LedgerAccount, amount: Int, reason: String) {
            self.from = from
            self.to = to
            self.amount = amount
            self.reason = reason
        }
    }

    /// How the hold of a run that ended is split (`job` is the run's own job row: the job, or a check run of it).
    ///
    /// - `held`: what `hold:job` holds now; `paid`: what the run costs (`CreditRules.settle`); both clamped, so the
    ///   movements never take more than is held.
    /// - The fund takes its share of the payment; the rest goes to the worker's owner, or to `escrow:job` while the run
    ///   is under check.
    /// - `reserve` (a `--verify` job's second run) moves on to `reserveTo` (the check run's hold).
    /// - What is left goes back to `payer` (the submitter, or the fund for a check run it paid for), unless it is kept
    ///   (`keep`: a probation run's, until its verdict, `keepsHold`).
    public static func settleRun(
        job: JobID, held: Int, paid: Int, fundSharePercent: Int, workerOwner: UserID, escrowed: Bool, payer: LedgerAccount,
        reserve: Int = 0, reserveTo: LedgerAccount? = nil, keep: Bool = false
    ) -> [Movement] {
        let held = max(0, held)
        let paid = min(max(0, paid), held)
        let share = CreditRules.fundShare(of: paid, percent: fundSharePercent)
        let reserve = reserveTo == nil ? 0 : min(max(0, reserve), held - paid)
        let released = held - paid - reserve
        let earner: LedgerAccount = escrowed ? .escrow(job) : .user(workerOwner)
        var out: [Movement] = [
            Movement(from: .hold(job), to: .fund, amount: share, reason: "verification fund share"),
            Movement(from: .hold(job), to: earner, amount: paid - share, reason: escrowed ? "payment into escrow" : "payment"),
        ]
        if let reserveTo { out.append(Movement(from: .hold(job), to: reserveTo, amount: reserve, reason: "check run hold")) }
        if !keep { out.append(Movement(from: .hold(job), to: payer, amount: released, reason: "release")) }
        return out.filter { $0.amount > 0 }
    }

    /// Whether the unspent part of a run's hold stays held until its verdict: a probation run's does. When a probation
    /// run is contradicted, its submitter pays the fund for the run whose result they get (`forgedRunSettles`), from
    /// this hold first. Before, it went back at once, and a submitter who had put their balance into other jobs' holds
    /// by the verdict paid little or nothing for a result the fund had paid two runs for (a review: a 10-hour result
    /// for 9 credits).
    public static func keepsHold(_ reason: Reason?) -> Bool { reason == .probation }

    /// Who pays for a check run of `root` (its hold, and what the check does not spend goes back there): the submitter
    /// for a requested check (`--verify`), the third run after a disagreement too; the fund for a probation check and a
    /// spot check. A probation run pays the fund back (`repayChecks`, `forgedRunSettles`).
    public static func checkPayer(_ reason: Reason, root: JobID, submitter: UserID) -> LedgerAccount {
        switch reason {
        case .requested: .user(submitter)
        case .probation, .spotCheck: .fund
        }
    }

    /// A probation run whose result stands (or whose verification ended inconclusive, which pays it as agreed): its
    /// escrow first repays the fund what the check runs were paid (`checksPaid`), as far as it holds; the rest is the
    /// worker's (`resolveEscrow`). A new worker's first results pay for their own checks.
    ///
    /// Before, the fund paid probation checks for good, and three accounts of one person drained it: a job only their
    /// workers could run, a new worker that finished it, a partner's worker drawn to check it and paid from the fund for
    /// agreeing, round after round with new worker ids. (A first mend paid the check from the checked run's escrow
    /// alone: an honest check of a result forged at once was held a minute's pay. A second had the submitter hold it:
    /// a new user's balance went into holds for checks of other people's workers.)
    public static func repayChecks(run: JobID, escrowed: Int, checksPaid: Int) -> [Movement] {
        let amount = min(max(0, escrowed), max(0, checksPaid))
        return amount > 0 ? [Movement(from: .escrow(run), to: .fund, amount: amount, reason: "checks repaid by the checked run")] : []
    }

    /// A probation run contradicted by the majority: its escrow (the forged run's pay) goes back to the submitter, who
    /// pays the fund for the run whose result replaced it (`resultPaid`, as far as their balance and the refund go). The
    /// forger gets nothing, the submitter pays for the work that gave them their result (before, a forger that answered
    /// at once left the submitter a real result for a minute's price, at the fund's expense), and the fund, which held
    /// the check, is paid for it.
    public static func forgedRunSettles(run: JobID, escrowed: Int, submitter: UserID, resultPaid: Int, submitterBalance: Int) -> [Movement] {
        let refund = max(0, escrowed)
        let (available, overflow) = max(0, submitterBalance).addingReportingOverflow(refund)
        let charge = min(max(0, resultPaid), overflow ? Int.max : available)
        return [
            Movement(from: .escrow(run), to: .user(submitter), amount: refund, reason: "forged run refunded"),
            Movement(from: .user(submitter), to: .fund, amount: charge, reason: "the run that gave the result"),
        ].filter { $0.amount > 0 }
    }

    /// What the check runs of one job that the fund paid for are paid once their verdict is in, where that is less
    /// than each was paid at its end (run index → pay; `paid` in run order, the checked run first, nil for a run paid
    /// nothing; `fundPaid[i]`: the fund held run `i`; `cost`: one run's cost, `CreditRules.runCost`). The checked run is
    /// never cut (it is paid what its own worker's run was worth, whatever another run claims), nor a check a user paid
    /// for (a `--verify` submitter asked for it, and the fund is not exposed).
    ///
    /// - A check that agrees with the checked run is paid no more than the checked run was: the same result is the
    ///   same work (BOINC grants a quorum its lowest claim; here only the fund's check is held to it).
    /// - An inconclusive verdict proves no run right: the fund's checks that were paid share one run's cost (a single
    ///   check is paid its run). A probation run repays the fund from its escrow (`repayChecks`); its submitter is not
    ///   charged for them (a third review: charged from the hold they kept, an honest submitter whose job a forger took
    ///   paid two of the forger's partners for results that differed on purpose).
    /// - A check that beat the checked run (it was contradicted), and one contradicted by the majority (its pay is
    ///   forfeited to the fund anyway), is not cut: an honest check of a forgery answered at once is paid its run.
    ///
    /// Before, a check was paid whatever time its worker claimed, up to the job's limit. One person's accounts (a job
    /// only their workers fit, a new worker that answered it at once, a partner's worker drawn to check it that sat on
    /// it to the limit and agreed) took about the difference from the fund, 568 credits a 600-minute result, because a
    /// probation run repays its checks only from its own small pay; three differing results (an inconclusive verdict)
    /// about twice that, round after round (an inconclusive verdict leaves the new worker on probation). (A first
    /// version cut the checked run to a quicker agreeing check: a submitter, who can read the result at once, had a
    /// partner drawn as checker send it back claiming a second, and took the honest worker's pay back. A second cut the
    /// checks of an inconclusive verdict to the checked run's pay: an honest check of a forgery answered at once, with
    /// no third owner to break the tie, was paid the forger's minute.)
    public static func grantedPays(_ verdict: Verdict, paid: [Int?], fundPaid: [Bool], cost: Int) -> [Int: Int] {
        func pay(_ i: Int) -> Int { paid.indices.contains(i) ? max(0, paid[i] ?? 0) : 0 }
        func cuttable(_ i: Int) -> Bool { i > 0 && paid.indices.contains(i) && fundPaid.indices.contains(i) && fundPaid[i] }
        var out: [Int: Int] = [:]
        switch verdict {
        case .runAnother:
            break
        case .decided(let agreeing, _):
            guard agreeing.contains(0) else { break }
            for i in agreeing where cuttable(i) && pay(i) > pay(0) { out[i] = pay(0) }
        case .inconclusive:
            let checks = paid.indices.filter { cuttable($0) && pay($0) > 0 }
            guard !checks.isEmpty else { break }
            let each = max(0, cost) / checks.count
            for i in checks where pay(i) > each { out[i] = each }
        }
        return out
    }

    /// A check run whose pay is cut from `paid` to `granted` after its verdict (`grantedPays`): the difference goes back
    /// to `payer`, who held it (the fund, or the submitter of a `--verify` job). The run's escrow keeps its part in
    /// proportion (the fund took its share of `paid` at the run's end, whatever share it then took); the rest of the
    /// difference, the fund's share of it, comes back from the fund to a payer that is not the fund, as far as the
    /// fund has (`fundBalance`). `why`: the ledger's reason.
    public static func cutEscrow(
        run: JobID, escrowed: Int, paid: Int, granted: Int, payer: LedgerAccount, fundBalance: Int, why: String
    ) -> [Movement] {
        let paid = max(0, paid)
        let granted = min(max(0, granted), paid)
        let escrowed = min(max(0, escrowed), paid)
        guard paid > 0, granted < paid else { return [] }
        // escrowed × granted / paid, exactly, without overflow: the quotient is at most `escrowed`.
        let product = escrowed.multipliedFullWidth(by: granted)
        let kept = paid.dividingFullWidth(product).quotient
        let fromEscrow = escrowed - kept
        let fromFund = payer == .fund ? 0 : min(max(0, fundBalance), (paid - granted) - fromEscrow, paid - escrowed)
        return [
            Movement(from: .escrow(run), to: payer, amount: fromEscrow, reason: why),
            Movement(from: .fund, to: payer, amount: max(0, fromFund), reason: "the fund's share of a cut pay"),
        ].filter { $0.amount > 0 }
    }

    /// The hold of a check run the fund pays for: the run's full cost, or what the fund has when it has less.
    public static func fundCheckHold(check: JobID, cost: Int, fundBalance: Int) -> [Movement] {
        checkHold(check: check, cost: cost, from: .fund, balance: fundBalance)
    }

    /// The hold of a check run `payer` pays for (the fund, or a `--verify` submitter for the check that replaces a lost
    /// one): the run's full cost, or what the payer has when it has less.
    public static func checkHold(check: JobID, cost: Int, from payer: LedgerAccount, balance: Int) -> [Movement] {
        let amount = min(max(0, cost), max(0, balance))
        return amount > 0 ? [Movement(from: payer, to: .hold(check), amount: amount, reason: "check run hold")] : []
    }

    /// A decided run's escrow: released to the worker's owner when its result stands, forfeited to the fund when it
    /// was contradicted.
    public static func resolveEscrow(run: JobID, escrowed: Int, workerOwner: UserID, agreed: Bool) -> [Movement] {
        guard escrowed > 0 else { return [] }
        return [
            agreed
                ? Movement(from: .escrow(run), to: .user(workerOwner), amount: escrowed, reason: "escrow released")
                : Movement(from: .escrow(run), to: .fund, amount: escrowed, reason: "escrow forfeited")
        ]
    }
}
