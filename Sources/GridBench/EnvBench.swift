import Foundation
import GridClient
import GridCore
import GridSandbox

/// Jobs' Python environments (`EnvBuilder`): a cold build of a small environment from a local wheel folder (no
/// network), with uv against pip side by side when both are installed, and getting an environment that is cached.
/// Builds run as the worker runs them (in bubblewrap when it works here).
enum EnvBench {
    /// Packages in the small environment: pure-Python wheels written by the bench.
    static let packages = 5

    static func run(python: String, builds: Int, scratch: String, log: (String) -> Void) async throws -> [Figure] {
        let wheels = scratch + "/env-wheels"
        for i in 0..<packages { try writeWheel(python: python, folder: wheels, name: "cg-bench-\(i)", module: "cg_bench_\(i)") }
        let interpreter = try EnvBuilder.probe(python: python)
        let sandbox = EnvBuilder.sandbox(of: RestrictedRunner(python: python), python: python)
        func builder(_ root: String, uv: String?) -> EnvBuilder {
            var c = EnvBuilder.Configuration(root: root, python: python)
            c.noIndex = true
            c.findLinks = [wheels]
            c.uv = uv
            c.sandbox = sandbox
            return EnvBuilder(configuration: c, interpreter: interpreter)
        }
        let requirements = try PythonRequirements(lines: (0..<packages).map { "cg-bench-\($0)" })
        let uv = EnvBuilder.findUV(python: python)
        func cold(uv: String?, tag: String) async throws -> [Double] {
            var samples: [Double] = []
            for i in 0..<max(1, builds) {
                let envs = builder(scratch + "/envs-\(tag)-\(i)", uv: uv)
                let t = Stats.now()
                _ = try await envs.prepare(requirements) { _ in }
                samples.append((Stats.now() - t) * 1000)
            }
            return samples
        }
        let where_ = sandbox == nil ? "unsandboxed" : "in bubblewrap"
        var build = Figure(
            id: "env.cold_build", title: "Environment: cold build (\(uv == nil ? "pip" : "uv"))", unit: "ms", better: .lower,
            workload: "\(packages) pure-Python wheels from a local folder, \(where_), \(max(1, builds)) builds")
        build.record(try await cold(uv: uv, tag: uv == nil ? "pip" : "uv"))
        if uv != nil {
            build.add(Reference(name: "python -m pip install --target", samples: try await cold(uv: nil, tag: "pip")))
        } else {
            build.add(Reference.missing("uv pip install --target", because: "uv is not installed (scripts/setup installs it)"))
        }
        log("  env cold build: \(String(format: "%.0f", build.value ?? 0)) ms")
        var cached = Figure(
            id: "env.cached", title: "Environment: cached, ready for a job", unit: "ms", better: .lower,
            workload: "the same \(packages) packages, found in the cache, \(max(1, builds) * 10) times")
        let envs = builder(scratch + "/envs-cached", uv: uv)
        _ = try await envs.prepare(requirements) { _ in }
        var samples: [Double] = []
        for _ in 0..<(max(1, builds) * 10) {
            let t = Stats.now()
            let ready = try await envs.prepare(requirements) { _ in }
            samples.append((Stats.now() - t) * 1000)
            envs.release(ready.key)
        }
        cached.record(samples)
        log("  env cached: \(String(format: "%.2f", cached.value ?? 0)) ms")
        return [build, cached]
    }

    /// On one local grid whose worker installs from the bench's wheel folder, once the small environment is cached
    /// there: submit → start of a job that declares it against the same empty job declaring nothing
    /// (`env.job_submit_to_start`), and the round trip of a function task that declares it against the same task
    /// declaring nothing (`env.task_round_trip`), each pair in the same run.
    static func onGrid(binary: String, python: String, count: Int, roundTrips: Int, scratch: String, log: (String) -> Void) async throws -> [Figure] {
        let wheels = scratch + "/env-job-wheels"
        for i in 0..<packages { try writeWheel(python: python, folder: wheels, name: "cg-bench-\(i)", module: "cg_bench_\(i)") }
        let grid = try await LocalGrid.start(binary: binary, workers: 1, extraWorkerArguments: ["--find-links", wheels, "--no-index"])
        defer { grid.stop() }
        var figure = Figure(
            id: "env.job_submit_to_start", title: "Job with a cached environment: submit → start", unit: "ms", better: .lower,
            workload: "\(count) empty jobs declaring \(packages) packages (the environment built once, before), one at a time, one worker")
        var withEnv = JobBench.submitRequest()
        withEnv.spec.requirements = (0..<packages).map { "cg-bench-\($0)" }
        func starts(_ request: API.SubmitRequest) async throws -> [Double] {
            _ = try await JobBench.runOne(grid: grid, request: request)
            var out: [Double] = []
            for _ in 0..<max(1, count) {
                let job = try await JobBench.runOne(grid: grid, request: request)
                guard job.state == .completed, let s = job.startedAt else {
                    throw BenchError("bench job \(job.id) ended \(job.state.rawValue): \(job.reason ?? "no reason")\n\(grid.logs)")
                }
                out.append((s - job.submittedAt) * 1000)
            }
            return out
        }
        figure.record(try await starts(withEnv))
        figure.add(Reference(name: "the same job declaring no packages", samples: try await starts(JobBench.submitRequest()), targetRatio: 1.2))
        log("  env job start: \(String(format: "%.1f", figure.value ?? 0)) ms")

        var trip = Figure(
            id: "env.task_round_trip", title: "Function task with a cached environment: round trip", unit: "ms", better: .lower,
            workload: "\(max(1, roundTrips)) sequential x*x tasks declaring \(packages) packages (the environment built once, before), alternating with the same task declaring none, one link, one worker")
        let requirements = (0..<packages).map { "cg-bench-\($0)" }
        let driver = GridPeerDriver(ports: grid.peerPorts, manager: grid.client)
        let (declaring, plain) = try await driver.alternatingRoundTrips(max(1, roundTrips), requirements: requirements)
        trip.record(declaring)
        trip.add(Reference(name: "the same task declaring no packages, calls alternating", samples: plain, targetRatio: 1.2))
        log("  env task round trip: \(String(format: "%.2f", trip.value ?? 0)) ms")
        return [figure, trip]
    }

    static func writeWheel(python: String, folder: String, name: String, module: String) throws {
        let program = """
            import base64, hashlib, os, sys, zipfile
            folder, name, module = sys.argv[1:4]
            dist = name.replace('-', '_')
            info = f'{dist}-1.0.dist-info'
            files = {
                f'{module}.py': b'VALUE = 1\\n',
                f'{info}/METADATA': f'Metadata-Version: 2.1\\nName: {name}\\nVersion: 1.0\\n'.encode(),
                f'{info}/WHEEL': b'Wheel-Version: 1.0\\nGenerator: campusgrid-bench\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n',
            }
            record = ''.join(f"{p},sha256={base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b'=').decode()},{len(d)}\\n" for p, d in files.items())
            files[f'{info}/RECORD'] = (record + f'{info}/RECORD,,\\n').encode()
            os.makedirs(folder, exist_ok=True)
            with zipfile.ZipFile(os.path.join(folder, f'{dist}-1.0-py3-none-any.whl'), 'w') as z:
                for p, d in files.items():
                    z.writestr(p, d)
            """
        let r = try Command.run(python, ["-c", program, folder, name, module], timeout: 120)
        guard r.succeeded else { throw BenchError("could not write the bench's wheels: \(r.stderr.suffix(300))") }
    }
}
