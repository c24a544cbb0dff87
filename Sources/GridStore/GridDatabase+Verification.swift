import Crypto
import Foundation
public import GridCore
public import GridScheduler

extension Verification.Policy {
    /// No spot checks, no probation, no fund share: only jobs whose submitter asked (`--verify`) are checked.
    public static let off = Verification.Policy(spotCheckRate: 0, fundSharePercent: 0, reputation: .init(probationResults: 0))
}

extension GridDatabase {
    /// What settling a run did besides storing it.
    public struct Finished: Sendable {
        /// The job row as it is now (the job, or a check run of it).
        public var job: JobRecord
        /// A check run queued by this settlement (for the job itself, or a third run after a disagreement).
        public var checkQueued: JobID?
        /// Workers this settlement quarantined, with the reason.
        public var quarantined: [WorkerID: String] = [:]
        /// The check outcomes this settlement recorded, a worker's run each (`worker_checks`), in run order, with the
        /// worker's owner.
        public var outcomes: [(worker: WorkerID, owner: UserID?, outcome: Reputation.Outcome)] = []
    }

    // MARK: - Reading

    /// A worker's reputation, rebuilt from its decided checks.
    public func reputation(of worker: WorkerID, rules: Reputation.Rules) async throws -> Reputation {
        try await read { db in try Self.reputation(db, worker, rules: rules) }
    }

    /// The latest `limit` check outcomes of the workers of `owner`, oldest first (what `OthersWindow(recent:)` starts
    /// an owner's window from after a restart).
    public func recentCheckOutcomes(ofOwner owner: UserID, limit: Int) async throws -> [Reputation.Outcome] {
        try await read { db in
            try StoreRow.fetchAll(
                db,
                sql: "SELECT c.outcome FROM worker_checks c JOIN workers w ON w.id = c.worker_id WHERE w.owner_id = ? ORDER BY c.id DESC LIMIT ?",
                arguments: [owner, max(0, limit)]
            ).compactMap { Reputation.Outcome(rawValue: $0["outcome"]) }.reversed()
        }
    }

    /// Quarantined workers and why.
    public func quarantinedWorkers() async throws -> [WorkerID: String] {
        try await read { db in
            var out: [WorkerID: String] = [:]
            for row in try StoreRow.fetchAll(db, sql: "SELECT id, quarantine_reason FROM workers WHERE quarantined = 1") {
                out[row["id"]] = row["quarantine_reason"] ?? "quarantined"
            }
            return out
        }
    }

    /// The check runs of a job, oldest first.
    public func checkRuns(of job: JobID) async throws -> [JobRecord] {
        try await read { db in try Self.checkRuns(db, job) }
    }

    /// An admin lifts a worker's quarantine: it takes other users' jobs again, with a fresh window of checks.
    /// Returns false when the worker is unknown or not quarantined.
    public func liftQuarantine(_ worker: WorkerID, now: Double) async throws -> Bool {
        try await write { db in
            try db.execute(
                sql: "UPDATE workers SET quarantined = 0, quarantine_reason = NULL, quarantine_lifted_at = ? WHERE id = ? AND quarantined = 1",
                arguments: [now, worker]) > 0
        }
    }

    /// Ends every check run that has waited in the queue for `waitSeconds` without a worker to run it
    /// (`Verification.waitedOut`): without a result, its hold back to its payer, and its job's verification
    /// inconclusive (the checked run's escrow released). Returns the checked jobs whose verification ended so.
    public func expireWaitingChecks(waitSeconds: Double, now: Double) async throws -> [JobID] {
        try await write { db in
            var ended: [JobID] = []
            // Since it last became pending: a check a worker ran for hours and lost waits anew, as it can be run. Only the
            // checks that waited out are read (one statement; it scanned every waiting check, a query each, holding the
            // writer); the pure rule decides each of them.
            let limit = Verification.checkWaitLimit(waitSeconds)
            let rows = try StoreRow.fetchAll(
                db,
                sql: """
                    SELECT * FROM (
                        SELECT j.*, COALESCE((SELECT MAX(e.at) FROM job_events e WHERE e.job_id = j.id AND e.state = 'pending'), j.submitted_at) AS waiting_since
                        FROM jobs j WHERE j.state = 'pending' AND j.check_of IS NOT NULL
                    ) w WHERE w.waiting_since <= ? ORDER BY w.id
                    """,
                arguments: [now - limit])
            for row in rows {
                let check = JobRecord(row: row)
                let since: Double = row["waiting_since"]
                guard let root = check.checkOf, Verification.waitedOut(queuedAt: since, now: now, limit: waitSeconds) else { continue }
                let hours = Verification.waitWords(waitSeconds)
                try Self.end(
                    db, check, .failed, reason: "no worker of another owner could run this check within \(hours)", refund: true, now: now,
                    checkWaitedOut: hours)
                if try Self.job(db, root)?.verification == .inconclusive { ended.append(root) }
            }
            return ended
        }
    }

    // MARK: - Inside transactions

    static func checkRuns(_ db: any StoreSession, _ job: JobID) throws -> [JobRecord] {
        try StoreRow.fetchAll(db, sql: "SELECT * FROM jobs WHERE check_of = ? ORDER BY id", arguments: [job]).map(JobRecord.init(row:))
    }

    static func reputation(_ db: any StoreSession, _ worker: WorkerID, rules: Reputation.Rules) throws -> Reputation {
        let row = try StoreRow.fetchOne(db, sql: "SELECT quarantined, quarantine_lifted_at FROM workers WHERE id = ?", arguments: [worker])
        let quarantined: Bool = row?["quarantined"] ?? false
        let lifted: Double? = row?["quarantine_lifted_at"]
        var history: [Reputation.Outcome] = []
        var window: [Reputation.Outcome] = []
        for r in try StoreRow.fetchAll(db, sql: "SELECT at, outcome FROM worker_checks WHERE worker_id = ? ORDER BY id", arguments: [worker]) {
            guard let outcome = Reputation.Outcome(rawValue: r["outcome"]) else { continue }
            history.append(outcome)
            if let lifted, (r["at"] as Double) > lifted { window.append(outcome) }
        }
        return Reputation(rules: rules, history: history, quarantined: quarantined, window: lifted == nil ? nil : window)
    }

    /// What a run produced, for comparison: its exit code, the SHA-256 of this attempt's log, each output's SHA-256.
    static func digest(_ db: any StoreSession, _ job: JobID, exitCode: Int32?, outputs: [StoredFile]) throws -> Verification.Digest {
        let base = try Int64.fetchOne(db, sql: "SELECT log_attempt_base FROM jobs WHERE id = ?", arguments: [job]) ?? 0
        var hash = SHA256()
        let rows = try StoreRow.fetchAll(db, sql: "SELECT data FROM job_logs WHERE job_id = ? AND pos >= ? ORDER BY pos", arguments: [job, base])
        for row in rows { hash.update(data: row["data"] as Data) }
        var files: [String: String] = [:]
        for f in outputs { files[f.name] = hex(SHA256.hash(data: f.data)) }
        return Verification.Digest(exitCode: exitCode, stdoutSHA256: hex(hash.finalize()), files: files)
    }

    private static func hex(_ digest: SHA256.Digest) -> String { Hex.string(digest) }

    /// Who a run's unspent hold goes back to: the submitter, or for a check run whoever pays for it
    /// (`Verification.checkPayer`: a check run whose copied spec says `verify` is the submitter's own second run, and the
    /// third run of a `--verify` job is theirs too; the fund pays for probation and spot checks).
    static func payer(_ db: any StoreSession, _ job: JobRecord) throws -> LedgerAccount {
        guard let root = job.checkOf, !job.spec.wantsVerification else { return .user(job.ownerId) }
        let raw = try String.fetchOne(db, sql: "SELECT verification_reason FROM jobs WHERE id = ?", arguments: [root])
        // A reason not recorded (a requested check's runs carry `verify`, above): the fund, as before.
        return Verification.checkPayer(raw.flatMap(Verification.Reason.init(rawValue:)) ?? .spotCheck, root: root, submitter: job.ownerId)
    }

    /// Queues a check run of `root`: a job row of its own with the same spec (and so the same seed), script and
    /// inputs, placed away from `avoidOwners` and from the submitter's own workers. Its hold is taken by the caller (the
    /// submitter's reserve for `--verify`, or their balance) or here from the fund (`fundPays`). To its worker it looks
    /// like any other job.
    ///
    /// Never on the submitter's workers: the submitter can read the result being checked (it is their job), so their
    /// worker could send it back unrun, agree, and be paid the check's hold from the fund.
    static func queueCheck(
        _ db: any StoreSession, root: JobRecord, avoidOwners: Set<UserID>, submitterPays: Bool, fundPays: Bool, now: Double
    ) throws -> JobID {
        var spec = root.spec
        spec.verify = submitterPays ? true : nil
        let specJSON = String(decoding: try JSONEncoder().encode(spec), as: UTF8.self)
        let avoid = String(decoding: try JSONEncoder().encode(avoidOwners.union([root.ownerId]).sorted()), as: UTF8.self)
        let id = try db.insert(
            sql: """
                INSERT INTO jobs (owner_id, spec, script_name, state, hold, submitted_at, check_of, avoid_owners, \(SchedulingColumns.names))
                VALUES (?, ?, ?, 'pending', 0, ?, ?, ?, \(SchedulingColumns.placeholders))
                """,
            // It takes its job's place in the queue (its submission time): a check unblocks escrow and reputation, and
            // would otherwise wait behind every job submitted since. Nothing the worker sees tells it apart.
            arguments: [root.ownerId, specJSON, root.scriptName, root.submittedAt, root.id, avoid] + SchedulingColumns.values(spec))
        try db.execute(
            sql: "INSERT INTO job_files (job_id, kind, name, data) SELECT ?, kind, name, data FROM job_files WHERE job_id = ? AND kind = 'input'",
            arguments: [id, root.id])
        try event(db, id, .submitted, "check run of job \(root.id)", now)
        try event(db, id, .pending, nil, now)
        if fundPays && !submitterPays {
            let cost = CreditRules.runCost(root.spec)
            try apply(db, Verification.fundCheckHold(check: id, cost: cost, fundBalance: try balance(db, .fund)), job: root.id, now: now)
        }
        return id
    }

    /// Tops the hold of check run `check` of `root` up to the run's cost from `payer`'s balance, as far as it goes.
    static func topUpCheckHold(_ db: any StoreSession, check: JobID, root: JobRecord, from payer: LedgerAccount, now: Double) throws {
        let missing = CreditRules.runCost(root.spec) - (try balance(db, .hold(check)))
        guard missing > 0 else { return }
        try apply(db, Verification.checkHold(check: check, cost: missing, from: payer, balance: try balance(db, payer)), job: root.id, now: now)
    }

    /// Sets a check run's `hold` column to what its hold account holds (after its hold was taken).
    static func recordHold(_ db: any StoreSession, _ job: JobID) throws {
        try db.execute(sql: "UPDATE jobs SET hold = ? WHERE id = ?", arguments: [try balance(db, .hold(job)), job])
    }

    /// Once every check run of `root` has ended: compares the runs and carries out the verdict (a third run, or
    /// escrow released or forfeited, reputations recorded, quarantines, the job's result replaced when it was
    /// contradicted). Returns the check queued, the workers quarantined and the outcomes recorded.
    ///
    /// `checkWaitedOut`: the last check ended because it waited this long (a reader's "24 h") with no worker to run it.
    static func decide(
        _ db: any StoreSession, root rootId: JobID, policy: Verification.Policy, now: Double, checkWaitedOut: String? = nil
    ) throws -> (JobID?, [WorkerID: String], [(worker: WorkerID, owner: UserID?, outcome: Reputation.Outcome)]) {
        guard let root = try job(db, rootId), root.verification == .unverified else { return (nil, [:], []) }
        var checks = try checkRuns(db, rootId)
        guard !checks.contains(where: { !$0.state.isFinal }) else { return (nil, [:], []) }
        var runs = [root] + checks
        let verdict = Verification.verdict(results: runs.map(\.digest), waitedOut: checkWaitedOut != nil)
        runs = try cutPays(db, runs, verdict: verdict, now: now)
        checks = Array(runs.dropFirst())
        switch verdict {
        case .runAnother:
            // Away from the owners whose runs gave a result (a run lost on a worker says nothing of its owner: avoiding
            // them too left a small grid's replacement check nowhere to run).
            var owners: Set<UserID> = []
            for r in runs where r.digest != nil { if let o = try workerOwner(db, r.workerId) { owners.insert(o) } }
            // A lost check the submitter paid for (`--verify`) gave them its hold back: they pay for the one that
            // replaces it (as far as their balance goes), not the fund.
            let lost = checks.last.flatMap { $0.digest == nil ? $0 : nil }
            let submitterPays = lost?.spec.wantsVerification == true
            // Whoever pays for the job's checks pays for this one: the submitter of a `--verify` job (the third run after
            // a disagreement too, which the fund paid before), the fund for a probation or spot check's.
            let payer: LedgerAccount =
                submitterPays
                ? .user(root.ownerId) : Verification.checkPayer(root.verificationReason ?? .spotCheck, root: root.id, submitter: root.ownerId)
            let id = try queueCheck(db, root: root, avoidOwners: owners, submitterPays: submitterPays, fundPays: payer == .fund, now: now)
            if payer != .fund { try topUpCheckHold(db, check: id, root: root, from: payer, now: now) }
            try recordHold(db, id)
            let why =
                checks.last?.digest == nil
                ? "verification: check run \(checks.last.map { "(job \($0.id)) " } ?? "")ended without a result; another (job \(id)) takes its place"
                : "verification: the runs disagree; a third run (job \(id)) decides"
            try event(db, root.id, root.state, why, now)
            return (id, [:], [])
        case .inconclusive:
            try releaseKeptHold(db, root, now: now)
            try repayChecks(db, root: root, checks: checks.filter { $0.digest != nil }, now: now)
            for r in runs { try resolve(db, r, agreed: true, now: now) }
            try db.execute(sql: "UPDATE jobs SET verification = 'inconclusive' WHERE id = ?", arguments: [root.id])
            let why =
                checkWaitedOut.map { "verification inconclusive: no worker of another owner could run its check within \($0)" }
                ?? "verification inconclusive: the runs could not be compared to a decision"
            try event(db, root.id, root.state, why, now)
            return (nil, [:], [])
        case .decided(let agreeing, let contradicted):
            // Before a contradicted run's submitter pays for the result they get, so that they can.
            try releaseKeptHold(db, root, now: now)
            var quarantined: [WorkerID: String] = [:]
            var outcomes: [(worker: WorkerID, owner: UserID?, outcome: Reputation.Outcome)] = []
            // A check run that ended without a result is neither (its hold went back to its payer).
            for i in runs.indices where agreeing.contains(i) || contradicted.contains(i) {
                let agreed = agreeing.contains(i)
                // Only the checks that agreed with it: a contradicted one's pay went to the fund already (the review:
                // counted too, it took an honest new worker's whole pay).
                if i == 0 && agreed { try repayChecks(db, root: root, checks: agreeing.filter { $0 > 0 }.map { runs[$0] }, now: now) }
                // The most any winning run was paid: a quick winner (a partner's, handed the result) must not set the price.
                if i == 0 && !agreed, !agreeing.isEmpty,
                    try settleForgedRun(db, root: root, resultPaid: agreeing.map { max(0, runs[$0].paid ?? 0) }.max() ?? 0, now: now)
                {
                    // Its escrow is settled: nothing left for `resolve`.
                } else {
                    try resolve(db, runs[i], agreed: agreed, now: now)
                }
                guard let worker = runs[i].workerId else { continue }
                // A worker earns no trust on its owner's own jobs: an owner's `--verify` jobs on their own worker,
                // run honestly, passed its probation for it, and it then forged other users' results unchecked.
                if agreed, try workerOwner(db, worker) == root.ownerId { continue }
                var reputation = try reputation(db, worker, rules: policy.reputation)
                let actions = reputation.record(agreed ? .agreed : .contradicted)
                try db.execute(
                    sql: "INSERT INTO worker_checks (worker_id, job_id, at, outcome) VALUES (?, ?, ?, ?)",
                    arguments: [worker, runs[i].id, now, agreed ? "agreed" : "contradicted"])
                outcomes.append((worker, try workerOwner(db, worker), agreed ? .agreed : .contradicted))
                for case .quarantine(let reason) in actions {
                    try db.execute(
                        sql: "UPDATE workers SET quarantined = 1, quarantine_reason = ? WHERE id = ?", arguments: [reason, worker])
                    quarantined[worker] = reason
                }
            }
            let names = try agreeing.filter { $0 != 0 }.map { try workerName(db, runs[$0].workerId) }
            if agreeing.contains(0) {
                let by = String(decoding: try JSONEncoder().encode(names), as: UTF8.self)
                try db.execute(sql: "UPDATE jobs SET verification = 'verified', verified_by = ? WHERE id = ?", arguments: [by, root.id])
                try event(db, root.id, root.state, "verified by worker \(names.joined(separator: ", "))", now)
            } else {
                let winner = runs[agreeing[0]]
                try replaceResult(db, root: root, with: winner, now: now)
                try db.execute(
                    sql: "UPDATE jobs SET verification = 'contradicted', rerun_on = ? WHERE id = ?", arguments: [names.first, root.id])
                let losers = try contradicted.map { try workerName(db, runs[$0].workerId) }
                // Only the job's own run saves its outputs in the grid (`JobSpec.forCheckRun`): when it says it saved
                // any, those are the replaced run's, and the user is told so.
                let savedAny =
                    try Int64.fetchOne(
                        db, sql: "SELECT COUNT(*) FROM job_events WHERE job_id = ? AND detail LIKE 'outputs saved in the grid as %'",
                        arguments: [root.id]) ?? 0 > 0
                let saved =
                    root.spec.saveOutputsAs.flatMap { prefix in
                        savedAny
                            ? "; the outputs saved in the grid as \(prefix)NAME are the replaced run's: take the job's outputs with `download \(root.id)`"
                            : nil
                    } ?? ""
                try event(
                    db, root.id, winner.state,
                    "contradicted → rerun on \(names.first ?? "another worker"); the result of worker \(losers.joined(separator: ", ")) was replaced"
                        + saved,
                    now)
            }
            return (nil, quarantined, outcomes)
        }
    }

    /// The unspent part of a probation run's hold, kept until its verdict (`Verification.keepsHold`), back to its
    /// submitter: before a contradicted run's submitter pays for the result they get, so they can.
    private static func releaseKeptHold(_ db: any StoreSession, _ root: JobRecord, now: Double) throws {
        let kept = try balance(db, .hold(root.id))
        guard kept > 0 else { return }
        try move(db, kept, from: .hold(root.id), to: try payer(db, root), reason: "release after the check", job: root.id, now: now)
    }

    /// Cuts the pay of check runs paid more than their verdict grants (`Verification.grantedPays`): the difference back
    /// to whoever held it (`Verification.cutEscrow`), the run's `paid` set to it, and a line in its history. Returns the
    /// runs as they are now.
    private static func cutPays(_ db: any StoreSession, _ runs: [JobRecord], verdict: Verification.Verdict, now: Double) throws -> [JobRecord] {
        // No verdict yet, nothing to cut: no payer is read for it.
        guard verdict != .runAnother else { return runs }
        var runs = runs
        let why =
            verdict == .inconclusive
            ? "the checks of an inconclusive verdict share one run's cost"
            : "a check that agrees is paid no more than the run it checks"
        let fundPaid = try runs.map { try $0.checkOf != nil && payer(db, $0) == .fund }
        let cost = runs.first.map { CreditRules.runCost($0.spec) } ?? 0
        for (i, granted) in Verification.grantedPays(verdict, paid: runs.map(\.paid), fundPaid: fundPaid, cost: cost).sorted(by: { $0.key < $1.key }) {
            let run = runs[i]
            let paid = run.paid ?? 0
            try apply(
                db,
                Verification.cutEscrow(
                    run: run.id, escrowed: try balance(db, .escrow(run.id)), paid: paid, granted: granted, payer: try payer(db, run),
                    fundBalance: try balance(db, .fund), why: "pay cut: " + why),
                job: run.checkOf ?? run.id, now: now)
            try db.execute(sql: "UPDATE jobs SET paid = ? WHERE id = ?", arguments: [granted, run.id])
            try event(db, run.id, run.state, "paid \(granted) credits, not \(paid): \(why)", now)
            runs[i].paid = granted
        }
        return runs
    }

    /// A probation run paid as agreed: its escrow repays the fund what its checks were paid first
    /// (`Verification.repayChecks`). A run checked for another reason repays nothing.
    private static func repayChecks(_ db: any StoreSession, root: JobRecord, checks: [JobRecord], now: Double) throws {
        guard root.verificationReason == .probation else { return }
        let paid = checks.reduce(0) { $0 + max(0, $1.paid ?? 0) }
        try apply(db, Verification.repayChecks(run: root.id, escrowed: try balance(db, .escrow(root.id)), checksPaid: paid), job: root.id, now: now)
    }

    /// A probation run contradicted: its pay back to the submitter, who pays the fund for the run whose result they now
    /// have, at the most any winning run was paid (`Verification.forgedRunSettles`; a review: at the first winner's, a
    /// partner's quick run handed the result set the price, and the fund paid the honest 600 minutes). Returns false
    /// for a run checked for another reason (its escrow goes to the fund, as `resolve` does).
    private static func settleForgedRun(_ db: any StoreSession, root: JobRecord, resultPaid: Int, now: Double) throws -> Bool {
        guard root.verificationReason == .probation else { return false }
        let submitter = LedgerAccount.user(root.ownerId)
        try apply(
            db,
            Verification.forgedRunSettles(
                run: root.id, escrowed: try balance(db, .escrow(root.id)), submitter: root.ownerId, resultPaid: resultPaid,
                submitterBalance: try balance(db, submitter)),
            job: root.id, now: now)
        return true
    }

    /// A decided run's escrow: to its worker's owner when its result stands, else to the fund.
    private static func resolve(_ db: any StoreSession, _ run: JobRecord, agreed: Bool, now: Double) throws {
        let held = try balance(db, .escrow(run.id))
        guard held > 0 else { return }
        guard let owner = try workerOwner(db, run.workerId) else {
            try apply(db, Verification.resolveEscrow(run: run.id, escrowed: held, workerOwner: 0, agreed: false), job: run.checkOf ?? run.id, now: now)
            return
        }
        try apply(db, Verification.resolveEscrow(run: run.id, escrowed: held, workerOwner: owner, agreed: agreed), job: run.checkOf ?? run.id, now: now)
    }

    /// A contradicted job takes the result of the run that won: its outputs, exit code and state; its log gets the
    /// winner's log after a note.
    private static func replaceResult(_ db: any StoreSession, root: JobRecord, with winner: JobRecord, now: Double) throws {
        try db.execute(sql: "DELETE FROM job_files WHERE job_id = ? AND kind = 'output'", arguments: [root.id])
        try db.execute(
            sql: "INSERT INTO job_files (job_id, kind, name, data) SELECT ?, kind, name, data FROM job_files WHERE job_id = ? AND kind = 'output'",
            arguments: [root.id, winner.id])
        try db.execute(
            sql: "UPDATE jobs SET state = ?, exit_code = ? WHERE id = ?",
            arguments: [winner.state.rawValue, winner.exitCode.map { Int64($0) }, root.id])
        let base = try Int64.fetchOne(db, sql: "SELECT log_attempt_base FROM jobs WHERE id = ?", arguments: [winner.id]) ?? 0
        var log = Data("\n--- verification: this result was contradicted; the output of the agreeing run on worker \(try workerName(db, winner.workerId)) follows ---\n".utf8)
        for row in try StoreRow.fetchAll(db, sql: "SELECT data FROM job_logs WHERE job_id = ? AND pos >= ? ORDER BY pos", arguments: [winner.id, base]) {
            log.append(row["data"] as Data)
        }
        let total = try Int64.fetchOne(db, sql: "SELECT log_total FROM jobs WHERE id = ?", arguments: [root.id]) ?? 0
        try appendLog(db, root.id, log, total: total)
    }

    static func workerOwner(_ db: any StoreSession, _ worker: WorkerID?) throws -> UserID? {
        guard let worker else { return nil }
        return try Int64.fetchOne(db, sql: "SELECT owner_id FROM workers WHERE id = ?", arguments: [worker])
    }

    static func workerName(_ db: any StoreSession, _ worker: WorkerID?) throws -> String {
        guard let worker else { return "?" }
        return try String.fetchOne(db, sql: "SELECT name FROM workers WHERE id = ?", arguments: [worker]) ?? worker
    }
}
