import CGridSpawn
import Foundation
public import GridCore

/// The weakest tier: the job runs as the worker's user, in its own session and process group and scratch directory,
/// with resource limits (file size, core dumps, open files, address space for CPU jobs). Best-effort isolation only:
/// it does not stop a job reading the worker's files or using the network. Shown as such everywhere.
public struct RestrictedRunner: JobRunner {
    public let python: String
    public let limits: RunnerLimits
    public var tier: SandboxTier { .restricted }

    public init(python: String, limits: RunnerLimits = RunnerLimits()) {
        self.python = python
        self.limits = limits
    }

    public func start(_ request: RunRequest) throws -> JobExecution {
        var rlimits: [grid_rlimit] = [
            grid_rlimit(resource: RLimit.core, value: 0),
            grid_rlimit(resource: RLimit.fsize, value: limits.maxFileBytes),
            grid_rlimit(resource: RLimit.nofile, value: limits.maxOpenFiles),
        ]
        // RLIMIT_AS breaks CUDA, so GPU jobs never get it; CPU jobs get their RAM plus room for the interpreter's mappings.
        let memoryLimitGB = request.spec.gpus == 0 ? request.spec.memoryLimitGb : nil
        if let gb = memoryLimitGB {
            rlimits.append(grid_rlimit(resource: RLimit.addressSpace, value: UInt64(gb + 1) << 30))
        }
        var env = JobEnvironment.make(for: request, home: request.scratch.path)
        // No mount namespace here: the job sees the environment at its own path (and, as the worker's user, could change it).
        if let site = request.pythonEnvironment { env["PYTHONPATH"] = site }
        return try JobExecution.spawn(
            path: python, arguments: ["-u", request.script], environment: env, directory: request.scratch.path, limits: rlimits,
            deadline: request.timeLimitSeconds,
            hooks: JobExecution.Hooks(finish: { report in
                var r = report
                if r.outcome == .timedOut { r.reason = "time limit reached (\(request.spec.minutes) min)" }
                if r.outcome == .failed, let gb = memoryLimitGB, r.signal == nil, r.exitCode == 1, r.peakMemoryKb > (Int64(gb) << 20) * 8 / 10 {
                    r.reason = "out of memory (limit \(gb) GB)"
                }
                if r.signal == 25 { r.reason = "output too large (a file reached the \(limits.maxFileBytes >> 20) MB limit)" }
                return r
            }))
    }
}

/// Linux resource numbers (stable on every Linux architecture we run on).
enum RLimit {
    static let cpu: Int32 = 0
    static let fsize: Int32 = 1
    static let core: Int32 = 4
    static let nproc: Int32 = 6
    static let nofile: Int32 = 7
    static let addressSpace: Int32 = 9
}

/// The environment a job sees: nothing of the worker's, only what it needs.
enum JobEnvironment {
    /// What every job's Python sees as it starts (the rest of its environment is read later, by what it imports).
    /// `PYTHONHASHSEED` is the same for every job: string hashing (the order of a set of strings) then repeats in
    /// every run of a job, check runs included (verification), and a job's interpreter can be started before the
    /// job is known (`WarmStart`), since Python fixes its hash seed as it starts.
    static func startup(home: String) -> [String: String] {
        [
            "PYTHONHASHSEED": "0",
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": home,
            "TMPDIR": "/tmp",
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
        ]
    }

    static func make(for request: RunRequest, home: String) -> [String: String] {
        var env = startup(home: home)
        env.merge([
            "OMP_NUM_THREADS": String(request.spec.cpus),
            "OPENBLAS_NUM_THREADS": String(request.spec.cpus),
            "MKL_NUM_THREADS": String(request.spec.cpus),
            "CAMPUSGRID_JOB_ID": String(request.job.jobId),
            "CAMPUSGRID_ATTEMPT": String(request.job.attempt),
        ]) { _, new in new }
        if request.spec.gpus == 0 { env["CUDA_VISIBLE_DEVICES"] = "" }
        if request.pythonEnvironment != nil { env["PYTHONPATH"] = EnvBuilder.mountPoint }
        for (k, v) in request.environment { env[k] = v }
        return env
    }
}
