/// Where one job stands: its state, its attempt and worker, its money and what its last run measured. The store keeps
/// it (`JobRecord`) and the API shows it (`API.JobStatus`) as this one type, so the two cannot drift apart; both read
/// its fields as their own (`job.state`), and the API's JSON has them at the top level, as before.
public struct JobProgress: Hashable, Sendable, Codable {
    public var state: JobState
    public var attempt: Int
    public var workerId: WorkerID?
    public var hold: Int
    public var paid: Int?
    public var exitCode: Int32?
    public var runtimeMs: Int64?
    public var peakMemoryKb: Int64?
    public var cpuSeconds: Double?
    public var reason: String?
    /// For a pending job: which requirement no online worker meets, or that it waits for room.
    public var pendingReason: String?
    public var cancelRequested: Bool
    public var logBytes: Int64
    public var submittedAt: Double
    public var startedAt: Double?
    public var finishedAt: Double?
    /// The sandbox tier of the worker the latest attempt was placed on (nil before it was placed).
    public var tier: SandboxTier?

    public init(
        state: JobState, attempt: Int, workerId: WorkerID? = nil, hold: Int, paid: Int? = nil, exitCode: Int32? = nil, runtimeMs: Int64? = nil,
        peakMemoryKb: Int64? = nil, cpuSeconds: Double? = nil, reason: String? = nil, pendingReason: String? = nil, cancelRequested: Bool = false,
        logBytes: Int64 = 0, submittedAt: Double, startedAt: Double? = nil, finishedAt: Double? = nil, tier: SandboxTier? = nil
    ) {
        self.state = state
        self.attempt = attempt
        self.workerId = workerId
        self.hold = hold
        self.paid = paid
        self.exitCode = exitCode
        self.runtimeMs = runtimeMs
        self.peakMemoryKb = peakMemoryKb
        self.cpuSeconds = cpuSeconds
        self.reason = reason
        self.pendingReason = pendingReason
        self.cancelRequested = cancelRequested
        self.logBytes = logBytes
        self.submittedAt = submittedAt
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.tier = tier
    }
}
