/// How much work each figure does. `full` is what the issue specifies; `quick` fits in 5 minutes on a 2-core machine;
/// `tiny` only checks that every part of the bench works (tests and CI), and its numbers mean nothing.
public struct BenchSizes: Sendable, Codable, Hashable {
    public var mode: String
    public var latencyJobs: Int
    public var throughputJobs: Int
    public var throughputRepeats: Int
    public var schedulerWorkers: Int
    public var schedulerJobs: Int
    public var schedulerRepeats: Int
    public var sandboxLaunches: Int
    public var tasks: Int
    public var roundTrips: Int
    public var taskRepeats: Int
    public var kvClients: Int
    public var kvOpsPerClient: Int
    public var kvRepeats: Int
    public var fileBytes: Int
    public var fileRepeats: Int
    /// Jobs the verification figure runs through a fresh grid (its cost is reported per 100 jobs).
    public var verificationJobs = 100
    /// The scaling curves' sizes: simulated workers × queued jobs for placements, peers for memory, file sizes for
    /// file get, jobs already queued for submit → start (with `curveLatencyJobs` measured at each).
    public var curveWorkers = [1_000, 10_000, 100_000]
    public var curveJobs = [10_000, 100_000, 1_000_000]
    public var curvePeers = [2, 4, 8]
    public var curveFileBytes = [1 << 20, 64 << 20, 1 << 30]
    public var curveQueued = [0, 1_000, 10_000]
    public var curveLatencyJobs = 20
    /// PostgreSQL against SQLite (issue 16): the scheduler pass's workers × jobs and runs; failovers measured.
    public var haWorkers = 2_000
    public var haJobs = 20_000
    public var haRepeats = 3
    public var failoverRuns = 5

    public static let full = BenchSizes(
        mode: "full", latencyJobs: 50, throughputJobs: 1000, throughputRepeats: 2, schedulerWorkers: 10_000, schedulerJobs: 100_000,
        schedulerRepeats: 3, sandboxLaunches: 30, tasks: 10_000, roundTrips: 200, taskRepeats: 3, kvClients: 50, kvOpsPerClient: 2_000,
        kvRepeats: 3, fileBytes: 1 << 30, fileRepeats: 3)

    public static let quick = BenchSizes(
        mode: "quick", latencyJobs: 20, throughputJobs: 200, throughputRepeats: 2, schedulerWorkers: 10_000, schedulerJobs: 100_000,
        schedulerRepeats: 1, sandboxLaunches: 15, tasks: 2_000, roundTrips: 100, taskRepeats: 2, kvClients: 50, kvOpsPerClient: 400,
        kvRepeats: 2, fileBytes: 256 << 20, fileRepeats: 2, curveWorkers: [1_000, 10_000], curveJobs: [10_000, 100_000],
        curvePeers: [2, 4], curveFileBytes: [1 << 20, 64 << 20], curveQueued: [0, 1_000], curveLatencyJobs: 10,
        haWorkers: 1_000, haJobs: 10_000, haRepeats: 2, failoverRuns: 3)

    public static let tiny = BenchSizes(
        mode: "tiny", latencyJobs: 3, throughputJobs: 6, throughputRepeats: 1, schedulerWorkers: 50, schedulerJobs: 500, schedulerRepeats: 1,
        sandboxLaunches: 3, tasks: 100, roundTrips: 10, taskRepeats: 1, kvClients: 5, kvOpsPerClient: 20, kvRepeats: 1, fileBytes: 4 << 20,
        fileRepeats: 1, verificationJobs: 10, curveWorkers: [10, 50], curveJobs: [100, 500], curvePeers: [2, 3],
        curveFileBytes: [1 << 20, 2 << 20], curveQueued: [0, 20], curveLatencyJobs: 3,
        haWorkers: 20, haJobs: 100, haRepeats: 1, failoverRuns: 1)
}
