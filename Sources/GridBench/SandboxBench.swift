import Foundation
import GridCore
import GridSandbox

/// Launch overhead of each sandbox tier this machine has: an empty Python script started through the tier's runner
/// and waited for as the worker does (output drained, report received), against the same script started with a plain
/// `posix_spawn` + `waitpid`. Samples alternate between the two so drift in the machine's load hits both alike.
enum SandboxBench {
    /// The tiers that can run here, weakest first, each with its runner, or the reason it cannot. The OCI tier uses
    /// the first Docker-API engine that answers (`CAMPUSGRID_ENGINE_SOCKET`, DOCKER_HOST, the usual sockets).
    /// `id` names the figure (`sandbox.<id>`): the tier, or `bwrap-rootless` for bwrap with rlimits instead of cgroups.
    static func tiers(python: String, engine: String? = nil) -> [(id: String, label: String, runner: Result<any JobRunner, BenchError>)] {
        var out: [(id: String, label: String, runner: Result<any JobRunner, BenchError>)] = [
            ("restricted", SandboxTier.restricted.label, .success(RestrictedRunner(python: python)))
        ]
        do {
            out.append(("bwrap", SandboxTier.bwrap.label, .success(try BwrapRunner(configuration: BwrapRunner.Configuration(python: python)))))
        } catch {
            out.append(("bwrap", SandboxTier.bwrap.label, .failure(BenchError("not available here: \(error)"))))
        }
        // The rootless form: the same namespaces, per-job rlimits, RLIMIT_NPROC set inside by a prelude, the PID-namespace kill.
        var rootless = BwrapRunner.Configuration(python: python)
        rootless.limitSource = .rlimits
        do {
            let runner = try BwrapRunner(configuration: rootless)
            out.append(("bwrap-rootless", runner.label, .success(runner)))
        } catch {
            out.append(("bwrap-rootless", "bwrap, rootless, rlimits", .failure(BenchError("not available here: \(error)"))))
        }
        let env = ProcessInfo.processInfo.environment
        var oci: Result<any JobRunner, BenchError> = .failure(
            BenchError("not available here: no Docker-API engine with the sandbox image answered, and podman could not start one (run scripts/setup)"))
        let sockets = SandboxSelection.sockets(for: .auto, given: env["CAMPUSGRID_ENGINE_SOCKET"], environment: env) + (engine.map { [$0] } ?? [])
        for socket in sockets {
            if let runner = try? OCIRunner(configuration: OCIRunner.Configuration(socket: socket)) {
                oci = .success(runner)
                break
            }
        }
        out.append(("oci", SandboxTier.oci.label, oci))
        return out
    }

    static func run(python: String, launches: Int, scratch: String, log: (String) -> Void) async throws -> [Figure] {
        var figures: [Figure] = []
        let engine = privateEngine(scratch: scratch, log: log)
        defer { engine?.stop() }
        for (tier, label, runner) in tiers(python: python, engine: engine?.socket) {
            var figure = Figure(
                id: "sandbox.\(tier)", title: "Sandbox launch: \(label)", unit: "ms", better: .lower,
                workload: "\(launches) launches of an empty Python script, alternating with plain launches (worker uid \(getuid()))")
            switch runner {
            case .failure(let why):
                figure.skip(why.description)
                figure.add(Reference.missing("plain process start (posix_spawn + wait)", because: "the tier did not run"))
            case .success(let runner):
                let dir = scratch + "/sandbox-\(tier)"
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                try Data(JobBench.script.utf8).write(to: URL(fileURLWithPath: dir + "/empty.py"))
                var ours: [Double] = []
                var plain: [Double] = []
                // One warm-up of each, not counted.
                _ = try await launch(runner, scratch: dir, attempt: 0)
                _ = try PlainSpawn.run(python, ["-u", dir + "/empty.py"], directory: dir)
                for i in 0..<launches {
                    plain.append(try PlainSpawn.run(python, ["-u", dir + "/empty.py"], directory: dir) * 1000)
                    ours.append(try await launch(runner, scratch: dir, attempt: i + 1) * 1000)
                }
                // Its container removals are made before the bench's own engine stops (one stopped mid-removal left a
                // container that broke the host's container list).
                (runner as? OCIRunner)?.finishRemovals()
                figure.record(ours)
                figure.add(Reference(name: "plain process start (posix_spawn + wait)", samples: plain))
                if let a = figure.value, let b = figure.references.last?.value { figure.detail["overhead_ms"] = a - b }
                log("  sandbox \(tier): \(String(format: "%.1f", figure.value ?? 0)) ms vs plain \(String(format: "%.1f", figure.references.last?.value ?? 0)) ms")
            }
            figures.append(figure)
        }
        return figures
    }

    /// A Podman service (Docker API) of the bench's own, for the OCI figure: started when podman is installed and no
    /// engine answers already. Started as a worker starts its own (`PodmanUserService`): stopped with the section, and
    /// killed with the bench if the bench is killed first (a parent-death signal), where a plain child outlived it.
    static func privateEngine(scratch: String, log: (String) -> Void) -> PodmanUserService? {
        let env = ProcessInfo.processInfo.environment
        let known = SandboxSelection.sockets(for: .auto, given: env["CAMPUSGRID_ENGINE_SOCKET"], environment: env)
        if known.contains(where: { (try? OCIRunner(configuration: OCIRunner.Configuration(socket: $0))) != nil }) { return nil }
        guard let podman = PodmanUserService.podman(environment: env) else { return nil }
        let dir = scratch + "/podman"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        guard let service = try? PodmanUserService.start(podman: podman, socket: dir + "/podman.sock", environment: env) else { return nil }
        log("  started a private podman service for the OCI tier")
        return service
    }

    /// Starts the script through `runner`, drains its output and waits for its report; returns the seconds taken.
    static func launch(_ runner: any JobRunner, scratch: String, attempt: Int) async throws -> Double {
        let request = RunRequest(
            job: JobRef(jobId: 1, attempt: attempt), spec: JobBench.spec, scratch: URL(fileURLWithPath: scratch), script: "empty.py")
        let start = Stats.now()
        let execution = try runner.start(request)
        for await _ in execution.output {}
        let report = await execution.wait()
        let elapsed = Stats.now() - start
        guard report.outcome == .completed else { throw BenchError("the sandboxed script ended \(report.outcome.rawValue): \(report.reason ?? "")") }
        return elapsed
    }
}
