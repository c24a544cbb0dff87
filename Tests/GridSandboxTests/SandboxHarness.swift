import Foundation
import GridCore
import GridTestSupport
import Testing

@testable import GridSandbox

#if canImport(Glibc)
import Glibc
#endif

/// The tiers the hostile-job tests run in, for real.
enum Tier: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case bwrap
    /// bwrap's namespaces with per-job rlimits and the PID-namespace kill (no cgroup): the rootless tier's runner.
    case rootless
    case oci
    /// The tiers that hold a CPU share (a cgroup or an engine); the rootless rlimits cannot.
    static let withCPUQuota: [Tier] = [.bwrap, .oci]
    var testDescription: String { rawValue }
}

/// One test's sandbox: a fake worker data folder (with a token file and a database to steal), a scratch folder
/// under it like the worker's, and the tier's runner (for OCI, with a Podman service of its own).
final class SandboxHarness: @unchecked Sendable {
    // Safe: used by one test at a time.
    let tier: Tier
    let dataDir: String
    let runner: any JobRunner
    private let podman: PodmanService?
    private var next = 1
    /// The latest job started (ids are random, so concurrent harnesses never share container labels).
    private(set) var lastJob = JobRef(jobId: 0, attempt: 1)

    static var python: String { TestPython.path }

    /// `init` on a thread of its own: starting a Podman service (the OCI tier) waits seconds for it to answer, which
    /// must not hold a thread of the pool every test shares.
    static func make(_ tier: Tier, limits: RunnerLimits = RunnerLimits(maxProcesses: 64)) async throws -> SandboxHarness {
        try await onThread { try SandboxHarness(tier, limits: limits) }
    }

    init(_ tier: Tier, limits: RunnerLimits = RunnerLimits(maxProcesses: 64)) throws {
        self.tier = tier
        dataDir = "/tmp/cg-sbx-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dataDir + "/jobs", withIntermediateDirectories: true)
        try Data("cgw_secret_token\n".utf8).write(to: URL(fileURLWithPath: dataDir + "/token"))
        try Data("SQLite format 3\0secret".utf8).write(to: URL(fileURLWithPath: dataDir + "/manager.sqlite"))
        switch tier {
        case .bwrap:
            podman = nil
            var c = BwrapRunner.Configuration(python: Self.python)
            c.limits = limits
            // As a worker's: the next job's interpreter starts ahead in its sandbox (`WarmStart`).
            c.warmDirectory = dataDir + "/jobs"
            runner = try BwrapRunner(configuration: c)
        case .rootless:
            podman = nil
            var c = BwrapRunner.Configuration(python: Self.python)
            c.limits = limits
            c.limitSource = .rlimits
            runner = try BwrapRunner(configuration: c)
        case .oci:
            let service = try PodmanService()
            podman = service
            var c = OCIRunner.Configuration(socket: service.socket)
            c.image = PodmanService.image
            c.limits = limits
            runner = try OCIRunner(configuration: c)
        }
    }

    deinit {
        (runner as? OCIRunner)?.finishRemovals()
        podman?.stop()
        try? FileManager.default.removeItem(atPath: dataDir)
    }

    struct Result {
        var report: RunReport
        var output: String
        var scratch: URL
    }

    /// Starts `script` as a job; `files` go into its scratch folder too.
    /// `timeLimitSeconds` replaces the spec's minutes as the run's limit (the runner enforces what the request says).
    func start(
        _ script: String, spec: JobSpec = JobSpec(name: "t", cpus: 1, ramGb: 1, minutes: 2), files: [String: String] = [:],
        timeLimitSeconds: Double? = nil
    ) throws -> (JobExecution, URL) {
        let scratch = URL(fileURLWithPath: dataDir + "/jobs/\(next)-1")
        next += 1
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        try Data(script.utf8).write(to: scratch.appendingPathComponent("main.py"))
        for (name, text) in files { try Data(text.utf8).write(to: scratch.appendingPathComponent(name)) }
        lastJob = JobRef(jobId: JobID.random(in: 1_000_000...9_999_999), attempt: 1)
        var request = RunRequest(job: lastJob, spec: spec, scratch: scratch, script: "main.py")
        if let timeLimitSeconds { request.timeLimitSeconds = timeLimitSeconds }
        // The bwrap tier's jobs start from a standby forked ahead into its cgroup (issue 17), as a worker's jobs do
        // after its first: every hostile test of the tier runs on that path, and fails if the job started cold.
        guard let bwrap = runner as? BwrapRunner, bwrap.configuration.limitSource == .cgroups else {
            return (try runner.start(request), scratch)
        }
        // A plain job (no packages, no GPU, no settings of its own) starts in a warm standby's interpreter, as a
        // worker's do: every hostile test of the tier runs on that path, and fails if the job started otherwise.
        guard request.pythonEnvironment == nil, spec.gpus == 0, request.environment.isEmpty else { return (try runner.start(request), scratch) }
        try bwrap.standbys.prepare()
        try bwrap.standbys.waitUntilWarm()
        let warm = bwrap.standbys.servedWarm
        let execution = try runner.start(request)
        guard bwrap.standbys.servedWarm == warm + 1 else {
            execution.cancel()
            throw TestGridError("the bwrap job did not start in its warm standby")
        }
        return (execution, scratch)
    }

    /// Runs `script` to its end and collects its output.
    func run(
        _ script: String, spec: JobSpec = JobSpec(name: "t", cpus: 1, ramGb: 1, minutes: 2), files: [String: String] = [:],
        timeLimitSeconds: Double? = nil, disk: DiskLimits? = nil
    ) async throws -> Result {
        // On a thread of its own: making a standby and waiting for its launcher blocks (Swift's pool has 2 threads here).
        let (execution, scratch) = try await onThread { [self] in try start(script, spec: spec, files: files, timeLimitSeconds: timeLimitSeconds) }
        // As a worker does for every job it starts.
        if let disk { execution.watchDisk(folder: scratch.path, limits: disk) }
        var output: [UInt8] = []
        for await chunk in execution.output { output += chunk.prefix(1 << 20) }
        let report = await execution.wait()
        return Result(report: report, output: String(decoding: output, as: UTF8.self), scratch: scratch)
    }
}

/// Host processes whose command line contains `marker` (to prove nothing of a job is left).
func hostProcesses(containing marker: String) -> [Int32] {
    guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
    return entries.compactMap { e -> Int32? in
        guard let pid = Int32(e), let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return nil }
        return String(decoding: data, as: UTF8.self).contains(marker) ? pid : nil
    }
}
