public import Foundation
public import GridCore
public import GridScheduler

/// A user account.
public struct UserRecord: Hashable, Sendable, Codable {
    public var id: UserID
    public var username: String
    public var passwordHash: String
    public var createdAt: Double

    init(row: StoreRow) {
        id = row["id"]
        username = row["username"]
        passwordHash = row["password_hash"]
        createdAt = row["created_at"]
    }
}

/// A kind of API token.
public enum TokenKind: String, Sendable, Codable {
    /// A user's login token for the CLI and API.
    case api
    /// A join token that a worker presents in `HELLO`; the worker earns for the token's owner.
    case worker
    /// A dashboard login's session (a cookie, `cgs_…`): acts as its person, as an API token does, for a week. A kind
    /// of its own so that a person's sessions are capped apart from their CLI's tokens (evicting the oldest of both
    /// took the CLI's first). Sessions made before it are `api` rows.
    case session
}

/// A stored token as a lookup finds it: whose it is, its kind, when it was issued.
public struct TokenRecord: Hashable, Sendable {
    public var user: UserRecord
    public var kind: TokenKind
    /// Wall-clock seconds since 1970.
    public var createdAt: Double
}

/// One movement of credits: `amount` leaves `debit` and arrives at `credit`.
public struct LedgerEntry: Hashable, Sendable, Codable {
    public var id: Int64
    public var at: Double
    public var debit: String
    public var credit: String
    public var amount: Int
    public var reason: String
    public var jobId: JobID?

    init(row: StoreRow) {
        id = row["id"]
        at = row["at"]
        debit = row["debit"]
        credit = row["credit"]
        amount = row["amount"]
        reason = row["reason"]
        jobId = row["job_id"]
    }
}

/// A job as stored.
@dynamicMemberLookup
public struct JobRecord: Hashable, Sendable, Codable {
    public var id: JobID
    public var ownerId: UserID
    public var spec: JobSpec
    public var scriptName: String
    /// Its state, attempt, money and measurements, as the API shows them too; read as the record's own fields.
    public var progress: JobProgress
    /// For a check run: the job whose result it checks (check runs are not listed among their owner's jobs).
    public var checkOf: JobID?
    /// For a check run: owners whose workers must not run it (the owners of the job's earlier runs).
    public var avoidOwners: [UserID]
    /// Where the job's result stands with verification (nil: never checked).
    public var verification: VerificationState?
    public var verificationReason: Verification.Reason?
    /// Names of the workers whose runs agreed with the result.
    public var verifiedBy: [String]
    /// The worker whose run replaced a contradicted result.
    public var rerunOn: String?
    /// What a run under check produced, for the comparison.
    public var digest: Verification.Digest?
    /// When its submitter first asked to cancel it while it ran (wall clock; nil: never, or a row from before
    /// migration v12): a manager started again bills its run no later than a lease period after (`CreditRules.billedUntil`).
    public var cancelRequestedAt: Double?

    public var ref: JobRef { JobRef(jobId: id, attempt: progress.attempt) }

    /// Whether `user` may read this job (its status, log, outputs, events): its submitter may, unless it is a check run.
    /// A check run is the work of another owner's worker on a result its submitter can already read; read by id (the
    /// job's history names it), it gave the submitter the checker's result whatever the verdict, and with a forged
    /// first run and no majority, a real result for the forger's price (a review).
    public func readable(by user: UserID) -> Bool { ownerId == user && checkOf == nil }

    public subscript<T>(dynamicMember field: WritableKeyPath<JobProgress, T>) -> T {
        get { progress[keyPath: field] }
        set { progress[keyPath: field] = newValue }
    }

    /// The verification as the API shows it.
    public var verificationStatus: API.Verification? {
        verification.map {
            API.Verification(
                state: $0, reason: verificationReason?.rawValue, verifiedBy: verifiedBy.isEmpty ? nil : verifiedBy, rerunOn: rerunOn)
        }
    }

    init(row: StoreRow) {
        id = row["id"]
        ownerId = row["owner_id"]
        spec = (try? JSONDecoder().decode(JobSpec.self, from: Data((row["spec"] as String).utf8))) ?? JobSpec(name: "?")
        scriptName = row["script_name"]
        progress = JobProgress(
            state: JobState(rawValue: row["state"]) ?? .failed, attempt: row["attempt"], workerId: row["worker_id"], hold: row["hold"],
            paid: row["paid"], exitCode: (row["exit_code"] as Int64?).map { Int32(truncatingIfNeeded: $0) }, runtimeMs: row["runtime_ms"],
            peakMemoryKb: row["peak_memory_kb"], cpuSeconds: row["cpu_seconds"], reason: row["reason"], pendingReason: row["pending_reason"],
            cancelRequested: row["cancel_requested"], logBytes: row["log_total"], submittedAt: row["submitted_at"], startedAt: row["started_at"],
            finishedAt: row["finished_at"], tier: (row["tier"] as String?).flatMap(SandboxTier.init(rawValue:)))
        checkOf = row["check_of"]
        avoidOwners = (row["avoid_owners"] as String?).flatMap { try? JSONDecoder().decode([UserID].self, from: Data($0.utf8)) } ?? []
        verification = (row["verification"] as String?).flatMap(VerificationState.init(rawValue:))
        verificationReason = (row["verification_reason"] as String?).flatMap(Verification.Reason.init(rawValue:))
        verifiedBy = (row["verified_by"] as String?).flatMap { try? JSONDecoder().decode([String].self, from: Data($0.utf8)) } ?? []
        rerunOn = row["rerun_on"]
        digest = (row["digest"] as String?).flatMap { try? JSONDecoder().decode(Verification.Digest.self, from: Data($0.utf8)) }
        cancelRequestedAt = row["cancel_requested_at"]
    }
}

/// A state transition of a job, with its time.
public struct JobEvent: Hashable, Sendable, Codable {
    public var at: Double
    public var state: JobState
    public var detail: String?
}

/// A stored file of a job (an input, the script, or an output).
public struct StoredFile: Hashable, Sendable {
    public var name: String
    public var data: Data
    public init(name: String, data: Data) {
        self.name = name
        self.data = data
    }
}

/// A worker as registered.
public struct WorkerRecord: Hashable, Sendable, Codable {
    public var id: WorkerID
    public var name: String
    public var ownerId: UserID
    public var ownerName: String
    public var resources: Resources
    public var gpuNames: [String]
    public var tier: SandboxTier
    public var slots: Int
    public var host: String?
    public var port: Int?
    public var webPort: Int?
    public var online: Bool
    public var load: Double
    public var firstSeen: Double
    public var lastSeen: Double
    public var onlineSince: Double?
    public var cpuSecondsGiven: Double
    public var jobsDone: Int
    /// Verification standing: results verified and contradicted, quarantine (probation follows from `verified`).
    public var verified: Int
    public var contradicted: Int
    public var quarantined: Bool
    public var quarantineReason: String?
    /// Whether it took other users' jobs when it last registered; nil for a row stored before this was kept.
    public var acceptsOthers: Bool?

    init(row: StoreRow) {
        id = row["id"]
        name = row["name"]
        ownerId = row["owner_id"]
        ownerName = row["owner_name"] ?? ""
        resources = (try? JSONDecoder().decode(Resources.self, from: Data((row["resources"] as String).utf8))) ?? .zero
        gpuNames = (try? JSONDecoder().decode([String].self, from: Data((row["gpu_names"] as String).utf8))) ?? []
        tier = SandboxTier(rawValue: row["tier"]) ?? .restricted
        slots = row["slots"]
        host = row["host"]
        port = row["port"]
        webPort = row["web_port"]
        online = row["online"]
        load = row["load"]
        firstSeen = row["first_seen"]
        lastSeen = row["last_seen"]
        onlineSince = row["online_since"]
        cpuSecondsGiven = row["cpu_seconds_given"]
        jobsDone = row["jobs_done"]
        verified = (row["verified"] as Int?) ?? 0
        contradicted = (row["contradicted"] as Int?) ?? 0
        quarantined = (row["quarantined"] as Bool?) ?? false
        quarantineReason = row["quarantine_reason"]
        acceptsOthers = row["accepts_others"]
    }
}

/// A contributor's standing on the leaderboard.
public struct LeaderboardEntry: Hashable, Sendable, Codable {
    public var username: String
    public var creditsEarned: Int
    public var cpuHours: Double
    public var jobsRun: Int
    /// Results of the contributor's workers that verification checked: agreed, and contradicted.
    public var verified: Int = 0
    public var contradicted: Int = 0
}

/// The result of the ledger invariant check.
public struct LedgerCheck: Hashable, Sendable, Codable {
    /// Credits minted by sign-ups.
    public var minted: Int
    /// The sum of every account's balance but the mint's (users' balances + holds + escrow + the fund).
    public var held: Int
    /// Of `held`: what holds of jobs keep, what escrow accounts keep, and what the verification fund has.
    public var holds: Int = 0
    public var escrow: Int = 0
    public var fund: Int = 0
    /// Accounts whose balance is negative (must be none).
    public var negativeAccounts: [String]
    /// Holds of jobs that already ended but still carry credits (must be none).
    public var stuckHolds: [String]
    public var ok: Bool { minted == held && negativeAccounts.isEmpty && stuckHolds.isEmpty }
}

/// One interrupted run of a job (see `LossPolicy`).
public struct InterruptionRecord: Hashable, Sendable, Codable {
    public var attempt: Int
    public var workerId: WorkerID
    public var at: Double
    public var kind: LossPolicy.Kind
    /// Whether the loss pointed at the job itself.
    public var blamed: Bool
    public var reason: String
}

/// What the leader's copy of the pending queue needs to catch up with the store (`GridDatabase.queueSync`).
public struct QueueSync: Sendable {
    /// A pending job and the pending reason the store holds for it.
    public struct Queued: Sendable {
        public var job: Placement.Job
        public var reason: String?
    }

    /// The change log's position this read saw: the next sync starts after it.
    public var upTo: Int64
    /// Whether `pending` is the whole queue (the copy is to be replaced), not only what changed.
    public var full: Bool
    /// Pending jobs: all of them (`full`), or those that changed.
    public var pending: [Queued]
    /// Jobs that changed and are no longer pending (started, cancelled, finished, deleted).
    public var gone: [JobID]
}

extension PendingQueue {
    /// Brings the queue up to date with what the store said: replaced by a whole read, else changed job by job.
    public mutating func catchUp(with sync: QueueSync) {
        if sync.full { removeAll() }
        for id in sync.gone { remove(id) }
        for q in sync.pending { upsert(q.job, reason: q.reason) }
    }
}
