/// The bodies of the REST API under `/api/v1` (shared by the manager, which serves them, and the client).
/// JSON keys are snake_case on the wire.
public enum API {
    public struct Credentials: Hashable, Sendable, Codable {
        public var username: String
        public var password: String
        public init(username: String, password: String) {
            self.username = username
            self.password = password
        }
    }

    public struct TokenResponse: Hashable, Sendable, Codable {
        public var username: String
        public var token: String
        public var kind: String
        /// For a worker join token on a manager that speaks TLS: `TOKEN@sha256:<CA fingerprint>`, which a worker
        /// takes instead of the bare token and which pins the manager's certificate authority.
        public var join: String?
        public init(username: String, token: String, kind: String, join: String? = nil) {
            self.username = username
            self.token = token
            self.kind = kind
            self.join = join
        }
    }

    public struct Me: Hashable, Sendable, Codable {
        public var id: UserID
        public var username: String
        public var balance: Int
        public init(id: UserID, username: String, balance: Int) {
            self.id = id
            self.username = username
            self.balance = balance
        }
    }

    /// A ledger row from one user's side: positive amounts arrive, negative ones leave.
    public struct LedgerRow: Hashable, Sendable, Codable {
        public var id: Int64
        public var at: Double
        public var amount: Int
        public var reason: String
        public var jobId: JobID?
        public var counterparty: String
        public init(id: Int64, at: Double, amount: Int, reason: String, jobId: JobID?, counterparty: String) {
            self.id = id
            self.at = at
            self.amount = amount
            self.reason = reason
            self.jobId = jobId
            self.counterparty = counterparty
        }
    }

    public struct Credits: Hashable, Sendable, Codable {
        public var username: String
        public var balance: Int
        public var held: Int
        public var earned: Int
        public var ledger: [LedgerRow]
        public init(username: String, balance: Int, held: Int, earned: Int, ledger: [LedgerRow]) {
            self.username = username
            self.balance = balance
            self.held = held
            self.earned = earned
            self.ledger = ledger
        }
    }

    /// A file sent over HTTP (base64 is fine here; the grid protocol carries raw bytes).
    public struct FileUpload: Hashable, Sendable, Codable {
        public var name: String
        public var contentBase64: String
        public init(name: String, contentBase64: String) {
            self.name = name
            self.contentBase64 = contentBase64
        }
    }

    public struct SubmitRequest: Hashable, Sendable, Codable {
        public var spec: JobSpec
        public var script: FileUpload
        public var inputs: [FileUpload]
        public init(spec: JobSpec, script: FileUpload, inputs: [FileUpload]) {
            self.spec = spec
            self.script = script
            self.inputs = inputs
        }
    }

    public struct SubmitResponse: Hashable, Sendable, Codable {
        public var job: JobStatus
        public var hold: Int
        public var balance: Int
        /// true: an earlier attempt with the same `Idempotency-Key` made this job; nothing more was held.
        public var replayed: Bool?
        public init(job: JobStatus, hold: Int, balance: Int, replayed: Bool? = nil) {
            self.job = job
            self.hold = hold
            self.balance = balance
            self.replayed = replayed
        }
    }

    public struct Event: Hashable, Sendable, Codable {
        public var at: Double
        public var state: JobState
        public var detail: String?
        public init(at: Double, state: JobState, detail: String?) {
            self.at = at
            self.state = state
            self.detail = detail
        }
    }

    /// One interrupted run of a job: when, on which worker, why, and whether it pointed at the job itself.
    public struct Interruption: Hashable, Sendable, Codable {
        public var at: Double
        public var attempt: Int
        public var worker: String
        /// `worker_lost`, `rejected`, `incomplete_report`, `stopped_by_worker` or `environment_failed`.
        public var kind: String
        public var reason: String
        public var blamed: Bool
        public init(at: Double, attempt: Int, worker: String, kind: String, reason: String, blamed: Bool) {
            self.at = at
            self.attempt = attempt
            self.worker = worker
            self.kind = kind
            self.reason = reason
            self.blamed = blamed
        }
    }

    public struct OutputFile: Hashable, Sendable, Codable {
        public var name: String
        public var size: Int
        public init(name: String, size: Int) {
            self.name = name
            self.size = size
        }
    }

    /// A job as the API shows it: its `JobProgress` (whose fields it reads as its own and writes at the top level of its
    /// JSON) and what the API adds to it.
    @dynamicMemberLookup
    public struct JobStatus: Hashable, Sendable, Codable {
        public var id: JobID
        public var name: String
        public var owner: String
        public var spec: JobSpec
        public var script: String
        /// The name of the worker of the latest attempt.
        public var worker: String?
        public var progress: JobProgress
        public var events: [Event]?
        /// Interrupted runs, oldest first (with `events`).
        public var interruptions: [Interruption]?
        public var outputs: [OutputFile]?
        /// The label for people of `tier`.
        public var tierLabel: String?
        /// Nil for a job whose result was never checked.
        public var verification: Verification?
        /// For a running job whose Python environment is still being prepared (built or fetched from the worker's
        /// cache): `preparing environment (cached on 1 of 3 workers)`.
        public var preparing: String?

        public init(
            id: JobID, name: String, owner: String, spec: JobSpec, script: String, worker: String?, progress: JobProgress, events: [Event]?,
            outputs: [OutputFile]?
        ) {
            self.id = id
            self.name = name
            self.owner = owner
            self.spec = spec
            self.script = script
            self.worker = worker
            self.progress = progress
            self.events = events
            self.outputs = outputs
        }

        public subscript<T>(dynamicMember field: WritableKeyPath<JobProgress, T>) -> T {
            get { progress[keyPath: field] }
            set { progress[keyPath: field] = newValue }
        }

        enum CodingKeys: String, CodingKey {
            case id, name, owner, spec, script, worker, events, interruptions, outputs, tierLabel, verification, preparing
        }

        public init(from decoder: any Decoder) throws {
            progress = try JobProgress(from: decoder)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            id = try c.decode(JobID.self, forKey: .id)
            name = try c.decode(String.self, forKey: .name)
            owner = try c.decode(String.self, forKey: .owner)
            spec = try c.decode(JobSpec.self, forKey: .spec)
            script = try c.decode(String.self, forKey: .script)
            worker = try c.decodeIfPresent(String.self, forKey: .worker)
            events = try c.decodeIfPresent([Event].self, forKey: .events)
            interruptions = try c.decodeIfPresent([Interruption].self, forKey: .interruptions)
            outputs = try c.decodeIfPresent([OutputFile].self, forKey: .outputs)
            tierLabel = try c.decodeIfPresent(String.self, forKey: .tierLabel)
            verification = try c.decodeIfPresent(Verification.self, forKey: .verification)
            preparing = try c.decodeIfPresent(String.self, forKey: .preparing)
        }

        public func encode(to encoder: any Encoder) throws {
            try progress.encode(to: encoder)
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(id, forKey: .id)
            try c.encode(name, forKey: .name)
            try c.encode(owner, forKey: .owner)
            try c.encode(spec, forKey: .spec)
            try c.encode(script, forKey: .script)
            try c.encodeIfPresent(worker, forKey: .worker)
            try c.encodeIfPresent(events, forKey: .events)
            try c.encodeIfPresent(interruptions, forKey: .interruptions)
            try c.encodeIfPresent(outputs, forKey: .outputs)
            try c.encodeIfPresent(tierLabel, forKey: .tierLabel)
            try c.encodeIfPresent(verification, forKey: .verification)
            try c.encodeIfPresent(preparing, forKey: .preparing)
        }
    }

    public struct JobList: Hashable, Sendable, Codable {
        public var jobs: [JobStatus]
        public init(jobs: [JobStatus]) { self.jobs = jobs }
    }

    /// A piece of a job's log: bytes `offset..<next` as text; `done` once the job ended and all was sent.
    public struct LogChunk: Hashable, Sendable, Codable {
        public var offset: Int64
        public var next: Int64
        public var text: String
        public var state: JobState
        public var done: Bool
        public init(offset: Int64, next: Int64, text: String, state: JobState, done: Bool) {
            self.offset = offset
            self.next = next
            self.text = text
            self.state = state
            self.done = done
        }

        /// Whether this answers a read from `asked` and moves on: it starts there, its text is at least as long in UTF-8
        /// as the bytes it claims (a byte that is not UTF-8 is shown as U+FFFD, three bytes), and text moves `next` on.
        /// A manager that answered with text but never moved on would have `logs` print the same text for ever.
        public func follows(from asked: Int64) -> Bool {
            guard offset == asked, next >= offset else { return false }
            let (claimed, overflow) = next.subtractingReportingOverflow(offset)
            guard !overflow, claimed <= Int64(text.utf8.count) else { return false }
            return text.isEmpty || claimed > 0
        }
    }

    public struct WorkerInfo: Hashable, Sendable, Codable {
        public var id: WorkerID
        public var name: String
        public var owner: String
        public var online: Bool
        public var resources: Resources
        public var free: Resources
        public var gpuNames: [String]
        public var tier: SandboxTier
        public var tierLabel: String
        public var slots: Int
        public var running: Int
        public var load: Double
        public var host: String?
        public var port: Int?
        public var webPort: Int?
        public var onlineSince: Double?
        public var lastSeen: Double
        public var cpuHoursGiven: Double
        public var jobsDone: Int
        /// What an online worker said about its sandbox: the label, why stronger tiers were skipped, whose jobs it
        /// takes (nil for offline workers and older ones).
        public var sandbox: SandboxReport?
        /// No real sandbox: a job there can read its owner's files and reach the network.
        public var unsandboxed: Bool
        /// Verified and contradicted results, probation and quarantine.
        public var reputation: Reputation?
        public init(
            id: WorkerID, name: String, owner: String, online: Bool, resources: Resources, free: Resources, gpuNames: [String],
            tier: SandboxTier, slots: Int, running: Int, load: Double, host: String?, port: Int?, webPort: Int?, onlineSince: Double?,
            lastSeen: Double, cpuHoursGiven: Double, jobsDone: Int
        ) {
            self.id = id
            self.name = name
            self.owner = owner
            self.online = online
            self.resources = resources
            self.free = free
            self.gpuNames = gpuNames
            self.tier = tier
            self.tierLabel = tier.label
            self.unsandboxed = tier == .restricted
            self.slots = slots
            self.running = running
            self.load = load
            self.host = host
            self.port = port
            self.webPort = webPort
            self.onlineSince = onlineSince
            self.lastSeen = lastSeen
            self.cpuHoursGiven = cpuHoursGiven
            self.jobsDone = jobsDone
        }
    }

    public struct WorkerList: Hashable, Sendable, Codable {
        public var workers: [WorkerInfo]
        public init(workers: [WorkerInfo]) { self.workers = workers }
    }

    public struct LeaderboardRow: Hashable, Sendable, Codable {
        public var rank: Int
        public var username: String
        public var creditsEarned: Int
        public var cpuHours: Double
        public var jobsRun: Int
        /// Results of the contributor's workers that verification checked: agreed, and contradicted.
        public var verified: Int?
        public var contradicted: Int?
        public init(rank: Int, username: String, creditsEarned: Int, cpuHours: Double, jobsRun: Int) {
            self.rank = rank
            self.username = username
            self.creditsEarned = creditsEarned
            self.cpuHours = cpuHours
            self.jobsRun = jobsRun
        }
    }

    public struct Leaderboard: Hashable, Sendable, Codable {
        public var contributors: [LeaderboardRow]
        public init(contributors: [LeaderboardRow]) { self.contributors = contributors }
    }

    /// `GET /api/v1/peer-ca`: the CA that issues the peer ports' certificates on a TLS grid (PEM). Asked of a manager
    /// the client already trusts, so the answer is as good as that trust.
    public struct PeerAuthority: Hashable, Sendable, Codable {
        public var peerCa: String
        public init(peerCa: String) { self.peerCa = peerCa }
    }

    /// `POST /api/v1/peer-tickets`: a person asks the manager to certify `key` (an Ed25519 public key the client made,
    /// raw, base64) and, when `worker` names an online peer, for a ticket that lets that peer forward the person's
    /// tasks (answered with `PeerTrust.Grant`). The client proves itself to peers with that key, in place of its API
    /// token, which never goes to a peer.
    public struct PeerTicketRequest: Hashable, Sendable, Codable {
        public var key: String
        public var worker: String?
        public init(key: String, worker: String? = nil) {
            self.key = key
            self.worker = worker
        }
    }

    public struct ErrorBody: Hashable, Sendable, Codable {
        public struct Detail: Hashable, Sendable, Codable {
            public var code: String
            public var message: String
            public init(code: String, message: String) {
                self.code = code
                self.message = message
            }
        }
        public var error: Detail
        public init(error: Detail) { self.error = error }
    }
}
