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

    public static let full = BenchSizes(
        mode: "full", latencyJobs: 50, throughputJobs: 1000, throughputRepeats: 2, schedulerWorkers: 10_000, schedulerJobs: 100_000,
        schedulerRepeats: 3, sandboxLaunches: 30, tasks: 10_000, roundTrips: 200, taskRepeats: 3, kvClients: 50, kvOpsPerClient: 2_000,
        kvRepeats: 3, fileBytes: 1 << 30, fileRepeats: 3)

    public static let quick = BenchSizes(
        mode: "quick", latencyJobs: 20, throughputJobs: 200, throughputRepeats: 2, schedulerWorkers: 10_000, schedulerJobs: 100_000,
        schedulerRepeats: 1, sandboxLaunches: 15, tasks: 2_000, roundTrips: 100, taskRepeats: 2, kvClients: 50, kvOpsPerClient: 400,
        kvRepeats: 2, fileBytes: 256 << 20, fileRepeats: 2)

    public static let tiny = BenchSizes(
        mode: "tiny", latencyJobs: 3, throughputJobs: 6, throughputRepeats: 1, schedulerWorkers: 50, schedulerJobs: 500, schedulerRepeats: 1,
        sandboxLaunches: 3, tasks: 100, roundTrips: 10, taskRepeats: 1, kvClients: 5, kvOpsPerClient: 20, kvRepeats: 1, fileBytes: 4 << 20,
        fileRepeats: 1, verificationJobs: 10)
}
