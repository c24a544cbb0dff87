import Foundation
import GridClient
import GridSandbox

/// Runs every figure of `campusgrid bench` in turn and collects the report. A part that fails is reported as not
/// measured, with the reason, and the rest still runs.
public struct BenchSuite: Sendable {
    /// The sections, in the order they run.
    public enum Section: String, Sendable, CaseIterable {
        case jobs, scheduler, sandbox, tasks, memory, files, tls, verification, env, curves, ha
    }

    public var sizes: BenchSizes
    /// The `campusgrid` binary to start the local grid with.
    public var binary: String
    /// The repository checkout (for `scripts/bench-reference` and the git commit), if known.
    public var repository: String?
    public var sections: [Section]
    /// Whether missing reference tools are installed first.
    public var installReferences: Bool
    /// Progress lines (to standard error).
    public var log: @Sendable (String) -> Void

    public init(
        sizes: BenchSizes, binary: String, repository: String?, sections: [Section] = Section.allCases, installReferences: Bool,
        log: @escaping @Sendable (String) -> Void
    ) {
        self.sizes = sizes
        self.binary = binary
        self.repository = repository
        self.sections = sections
        self.installReferences = installReferences
        self.log = log
    }

    public func run() async -> BenchReport {
        let started = Date()
        let t0 = Stats.now()
        let machine = MachineDescription.current(repository: repository)
        let scratch = NSTemporaryDirectory() + "campusgrid-bench-scratch-\(UUID().uuidString.prefix(8))"
        try? FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        var figures: [Figure] = []
        var curves: [Curve] = []
        let python = (try? PythonLocator.resolve(ProcessInfo.processInfo.environment["CAMPUSGRID_PYTHON"] ?? "python3")) ?? "/usr/bin/python3"
        var references = ReferenceTools(repository: repository, install: installReferences, runPython: sizes.mode != "tiny")
        let needsReferences = sections.contains { [.tasks, .memory, .files].contains($0) }
        if needsReferences, let why = references.prepare(log: log) {
            log("reference tools: \(why)")
            references.runPython = false
        }
        // One local grid (a manager + 2 workers with peer ports) for the job and peer figures, started when first needed.
        var grid: LocalGrid?
        defer {
            grid?.stop()
            PeerServices.current = nil
        }
        func shared() async throws -> LocalGrid {
            if let grid { return grid }
            let g = try await LocalGrid.start(binary: binary, workers: 2)
            grid = g
            if g.client.token != nil { PeerServices.current = GridPeerDriver(ports: g.peerPorts, manager: g.client) }
            return g
        }
        for section in sections {
            log("bench: \(section.rawValue)")
            let s0 = Stats.now()
            do {
                switch section {
                case .jobs:
                    let grid = try await shared()
                    figures += try await JobBench.latency(grid: grid, count: sizes.latencyJobs, python: python, scratch: scratch + "/jobs", log: log)
                    figures.append(
                        try await JobBench.throughput(
                            grid: grid, count: sizes.throughputJobs, repeats: sizes.throughputRepeats, python: python, scratch: scratch + "/jobs",
                            log: log))
                case .scheduler:
                    for owned in [false, true] {
                        figures.append(
                            try await SchedulerBench.run(
                                workers: sizes.schedulerWorkers, jobs: sizes.schedulerJobs, repeats: sizes.schedulerRepeats, owned: owned, scratch: scratch,
                                log: log))
                    }
                case .sandbox:
                    figures += try await SandboxBench.run(python: python, launches: sizes.sandboxLaunches, scratch: scratch, log: log)
                case .tasks:
                    _ = try? await shared()
                    figures += try await PeerBench.tasks(sizes: sizes, references: references, log: log)
                case .memory:
                    _ = try? await shared()
                    figures += try await PeerBench.memory(sizes: sizes, references: references, scratch: scratch, log: log)
                case .files:
                    _ = try? await shared()
                    figures += try await PeerBench.files(sizes: sizes, references: references, scratch: scratch, log: log)
                case .tls:
                    let plain = try await shared()
                    let secure = try await LocalGrid.start(binary: binary, workers: 2, tls: true)
                    defer { secure.stop() }
                    figures += try await TLSBench.run(plain: plain, tls: secure, sizes: sizes, scratch: scratch + "/tls", log: log)
                case .verification:
                    // A grid of its own: workers of three owners, each on probation from the start.
                    figures.append(try await VerificationBench.cost(binary: binary, jobs: sizes.verificationJobs, log: log))
                case .env:
                    figures += try await EnvBench.run(python: python, builds: max(1, sizes.sandboxLaunches / 3), scratch: scratch, log: log)
                    figures += try await EnvBench.onGrid(
                        binary: binary, python: python, count: sizes.latencyJobs, roundTrips: sizes.roundTrips, scratch: scratch, log: log)
                case .ha:
                    figures.append(
                        try await HABench.placements(
                            workers: sizes.haWorkers, jobs: sizes.haJobs, repeats: sizes.haRepeats, repository: repository, scratch: scratch, log: log))
                    figures.append(
                        try await HABench.submitToStart(
                            binary: binary, count: sizes.latencyJobs, repository: repository, python: python, scratch: scratch, log: log))
                    figures.append(
                        try await HABench.failover(binary: binary, runs: sizes.failoverRuns, leaderLease: 3, repository: repository, log: log))
                case .curves:
                    curves.append(try await SchedulerBench.curve(workers: sizes.curveWorkers, jobs: sizes.curveJobs, scratch: scratch, log: log))
                    curves.append(await CurveBench.memoryByPeers(binary: binary, peers: sizes.curvePeers, sizes: sizes, log: log))
                    _ = try? await shared()
                    curves.append(await CurveBench.fileGetBySize(bytes: sizes.curveFileBytes, repeats: sizes.fileRepeats, scratch: scratch, log: log))
                    curves.append(await CurveBench.submitToStartByQueue(binary: binary, queued: sizes.curveQueued, count: sizes.curveLatencyJobs, log: log))
                }
            } catch {
                log("bench: \(section.rawValue) failed: \(error)")
                figures += Self.placeholders(for: section, reason: "failed: \(error)")
                if section == .curves {
                    let have = Set(curves.map(\.id))
                    curves += Self.curvePlaceholders(reason: "failed: \(error)").filter { !have.contains($0.id) }
                }
            }
            log(String(format: "bench: %@ took %.1f s", section.rawValue, Stats.now() - s0))
        }
        return BenchReport(
            mode: sizes.mode, startedAt: ISO8601DateFormatter().string(from: started), durationSeconds: Stats.now() - t0, machine: machine,
            figures: figures, curves: curves)
    }

    /// Every curve the `curves` section makes, marked not measured.
    static func curvePlaceholders(reason: String) -> [Curve] {
        [
            Curve.missing("curve.placements", title: "Scheduler placements by queue length", unit: "placements/s", better: .higher, x: "queued jobs", because: reason),
            Curve.missing("curve.memory_peers", title: "Memory set/get by peers", unit: "ops/s", better: .higher, x: "peers", because: reason),
            Curve.missing("curve.file_get", title: "File get by size", unit: "MB/s", better: .higher, x: "bytes", because: reason),
            Curve.missing(
                "curve.submit_to_start", title: "Empty job submit → start by queue length", unit: "ms", better: .lower, x: "queued jobs", because: reason),
        ]
    }

    /// The figures a section would have produced, marked not measured (so the report always names every figure).
    static func placeholders(for section: Section, reason: String) -> [Figure] {
        let ids: [(String, String, String, Better)] =
            switch section {
            case .jobs:
                [
                    ("job.submit_to_start", "Empty job: submit → start", "ms", .lower),
                    ("job.submit_to_completion", "Empty job: submit → completion", "ms", .lower),
                    ("job.throughput", "Job throughput", "jobs/s", .higher),
                ]
            case .scheduler:
                [
                    ("scheduler.placements", "Scheduler placements", "placements/s", .higher),
                    ("scheduler.placements_owned", "Scheduler placements, workers with owners", "placements/s", .higher),
                ]
            case .sandbox: [("sandbox.restricted", "Sandbox launch: restricted", "ms", .lower)]
            case .tasks:
                [("tasks.throughput", "Function tasks (x*x)", "tasks/s", .higher), ("tasks.round_trip", "Function task round trip", "ms", .lower)]
            case .memory:
                [("memory.ops", "Memory set/get", "ops/s", .higher), ("memory.set", "Memory SET (ours: two copies)", "ops/s", .higher), ("memory.get", "Memory GET", "ops/s", .higher)]
            case .files: [("files.put", "File put", "MB/s", .higher), ("files.get", "File get", "MB/s", .higher)]
            case .tls:
                [
                    ("tls.job_submit_to_start", "TLS: empty job submit → start", "ms", .lower),
                    ("tls.task_round_trip", "TLS: function task round trip", "ms", .lower),
                    ("tls.memory_ops", "TLS: memory set/get", "ops/s", .higher), ("tls.file_get", "TLS: file get", "MB/s", .higher),
                ]
            case .verification: [("verification.extra_cpu_per_100_jobs", "Verification: extra CPU per 100 jobs", "CPU-s", .lower)]
            case .env:
                [
                    ("env.cold_build", "Environment: cold build", "ms", .lower), ("env.cached", "Environment: cached, ready for a job", "ms", .lower),
                    ("env.job_submit_to_start", "Job with a cached environment: submit → start", "ms", .lower),
                    ("env.task_round_trip", "Function task with a cached environment: round trip", "ms", .lower),
                ]
            case .curves: []
            case .ha:
                [
                    ("ha.placements_postgres", "Scheduler placements on PostgreSQL", "placements/s", .higher),
                    ("ha.submit_to_start_postgres", "Empty job submit → start, PostgreSQL store", "ms", .lower),
                    ("ha.failover", "Failover: leader SIGKILLed → first job placed by the next", "s", .lower),
                ]
            }
        return ids.map { id, title, unit, better in
            var f = Figure(id: id, title: title, unit: unit, better: better, workload: "")
            f.skip(reason)
            return f
        }
    }
}
