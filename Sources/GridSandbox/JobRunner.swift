public import Foundation
public import GridCore

/// Everything a runner needs to start one job attempt. The scratch directory already holds the script and inputs.
public struct RunRequest: Sendable {
    public var job: JobRef
    public var spec: JobSpec
    /// The job's private working directory (read-write); the only place a job may write besides its `/tmp`.
    public var scratch: URL
    /// The entry script, relative to `scratch`.
    public var script: String
    /// Extra environment (GPU assignment, job id); the runner adds the rest.
    public var environment: [String: String]
    /// The job's Python environment (`EnvBuilder.Ready.sitePath`): mounted read-only (at `EnvBuilder.mountPoint` in
    /// the sandboxed tiers) and put first on `sys.path`; nil: the worker's Python as it is.
    public var pythonEnvironment: String?
    /// How long the run may take before its runner stops it (whole tree) and reports it timed out: by default the
    /// spec's minutes. One place for that rule; the runners only enforce what they are given.
    public var timeLimitSeconds: Double

    public init(
        job: JobRef, spec: JobSpec, scratch: URL, script: String, environment: [String: String] = [:], pythonEnvironment: String? = nil
    ) {
        self.pythonEnvironment = pythonEnvironment
        self.job = job
        self.spec = spec
        self.scratch = scratch
        self.script = script
        self.environment = environment
        self.timeLimitSeconds = Double(spec.minutes) * 60
    }
}

/// How a run ended, as measured by the runner.
public struct RunReport: Sendable, Hashable {
    public enum Outcome: String, Sendable, Hashable {
        case completed
        case failed
        case timedOut = "timed_out"
        case cancelled
    }

    public var outcome: Outcome
    public var exitCode: Int32?
    /// The signal that ended the main process, if any.
    public var signal: Int32?
    public var runtimeMs: Int64
    public var peakMemoryKb: Int64
    public var cpuSeconds: Double
    /// Why it failed, in words a student understands.
    public var reason: String?

    public init(
        outcome: Outcome, exitCode: Int32?, signal: Int32? = nil, runtimeMs: Int64, peakMemoryKb: Int64, cpuSeconds: Double,
        reason: String? = nil
    ) {
        self.outcome = outcome
        self.exitCode = exitCode
        self.signal = signal
        self.runtimeMs = runtimeMs
        self.peakMemoryKb = peakMemoryKb
        self.cpuSeconds = cpuSeconds
        self.reason = reason
    }
}

/// A sandbox tier's way of running a job. Implementations: `RestrictedRunner` (rlimits + process-group kill).
public protocol JobRunner: Sendable {
    /// The isolation this runner gives.
    var tier: SandboxTier { get }
    /// Starts the job; the returned execution streams its output and ends with a report.
    func start(_ request: RunRequest) throws -> JobExecution
    /// A label for people that says which limits hold (`bwrap, rootless, rlimits`).
    var label: String { get }
    /// Limits this runner cannot hold, or holds only for some jobs, with the reason.
    var notes: [String] { get }
    /// Deletes a run's folder once the run has ended (a rootless container's files may be out of the worker's reach).
    func removeFolder(_ folder: URL)
}

extension JobRunner {
    /// `start` on a thread of its own: starting may block for seconds (a container engine's create and start), and the
    /// caller (the worker's actor, the shared cooperative pool) must go on meanwhile.
    public func startOffActor(_ request: RunRequest) async throws -> JobExecution {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<JobExecution, any Error>) in
            Thread.detachNewThread {
                continuation.resume(with: Result { try self.start(request) })
            }
        }
    }

    public var label: String { tier.label }
    public var notes: [String] { [] }
    public func removeFolder(_ folder: URL) { DiskRule.remove(folder) }
}

/// Per-worker caps that apply to every job, whatever it asks for.
public struct RunnerLimits: Sendable, Hashable {
    /// Largest file a job may write, in bytes.
    public var maxFileBytes: UInt64
    /// Open files per process.
    public var maxOpenFiles: UInt64
    /// Processes per job (enforced where the tier can: the pids cgroup; RLIMIT_NPROC does nothing for root).
    public var maxProcesses: Int

    public init(maxFileBytes: UInt64 = 1 << 30, maxOpenFiles: UInt64 = 1024, maxProcesses: Int = 256) {
        self.maxFileBytes = maxFileBytes
        self.maxOpenFiles = maxOpenFiles
        self.maxProcesses = maxProcesses
    }
}
