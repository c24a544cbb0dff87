import CGridSpawn
import Foundation
import GridCore
import Synchronization

/// The bwrap tier without cgroups: per-job rlimits (`RootlessLimits`), the PID namespace as the kill handle.
extension BwrapRunner {
    /// Starts a job whose limits are rlimits: RLIMIT_NPROC inside the user namespace, the rest on bwrap; a watcher
    /// stops a job that reaches its process limit (and enforces it where RLIMIT_NPROC cannot: a root worker).
    func startWithRlimits(_ request: RunRequest) throws -> JobExecution {
        let spec = request.spec
        let limits = configuration.limits
        let plan = RootlessLimits.plan(spec: spec, limits: limits)
        var env = JobEnvironment.make(for: request, home: Self.jobDirectory)
        env["TMPDIR"] = "/tmp"
        // A root worker's job runs as 65534 in a user namespace of its own (`SandboxUser`), writing its folder as that.
        if switchesUser { try SandboxUser.handOver(request.scratch.path) }
        let userns = switchesUser ? try SandboxUser.namespace() : -1
        defer { if userns >= 0 { close(userns) } }
        let args = Self.arguments(
            python: configuration.python, pythonRoots: pythonRoots, topLevel: topLevel, scratch: request.scratch.path, script: request.script,
            environment: env, tmpBytes: configuration.tmpBytes,
            gpuDevices: Self.gpuDevices(gpus: spec.gpus, visible: request.environment["CUDA_VISIBLE_DEVICES"]), processes: plan.processes,
            pythonEnvironment: request.pythonEnvironment, userns: userns >= 0 ? String(userns) : nil)
        let namespace = JobNamespace()
        let tooMany = Mutex(false)
        let hooks = JobExecution.Hooks(
            killAll: { namespace.killAll() },
            check: {
                // RLIMIT_NPROC counts bwrap's reaper in the namespace too: at the limit, the job's next fork fails.
                guard namespace.sample() >= limits.maxProcesses else { return nil }
                tooMany.withLock { $0 = true }
                return .init(outcome: .failed, reason: Reasons.tooManyProcesses(limits.maxProcesses))
            },
            finish: { report in
                // After `reap`'s kill: the report waits (bounded) until every process of the job is gone.
                _ = namespace.waitGone(seconds: 10)
                var usage = Reasons.Usage(
                    pidsLimitHit: tooMany.withLock { $0 },
                    fileLimitHit: report.outcome == .failed && Reasons.fileLimitHit(in: request.scratch, limit: limits.maxFileBytes))
                let peak = namespace.peakResidentBytes
                if peak > 0 { usage.peakMemoryBytes = peak }
                return Reasons.explain(report, usage: usage, spec: spec, limits: limits)
            },
            explainTail: { report, tail in
                guard RootlessLimits.outOfMemory(report: report, addressSpace: plan.addressSpace, outputTail: tail) else { return report }
                var r = report
                r.reason = Reasons.outOfMemory(gb: spec.memoryLimitGb)
                return r
            },
            processes: { namespace.members().map(\.pid) })
        let execution = try JobExecution.spawn(
            path: configuration.bwrapPath, arguments: args, environment: [:], directory: request.scratch.path,
            limits: plan.outside.map { grid_rlimit(resource: $0.resource, value: $0.value) }, deadline: request.timeLimitSeconds, hooks: hooks,
            inherit: userns)
        namespace.attach(execution.pid)
        return execution
    }

    /// A probe job in the sandbox: it must run as uid 65534 without a network, and (for a worker that is not root)
    /// RLIMIT_NPROC must stop its forks. Throws `SandboxUnavailable` with what failed.
    func probeRlimits() throws {
        let dir = NSTemporaryDirectory() + "campusgrid-probe-\(getpid())-\(UUID().uuidString.prefix(8))"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let script = """
            import os, socket, time
            print("uid", os.getuid())
            n = 0
            try:
                for i in range(12):
                    if os.fork() == 0:
                        time.sleep(5)
                        os._exit(0)
                    n += 1
            except OSError:
                pass
            print("forked", n)
            try:
                socket.create_connection(("1.1.1.1", 53), timeout=1)
                print("net yes")
            except OSError:
                print("net no")
            """
        guard FileManager.default.createFile(atPath: dir + "/probe.py", contents: Data(script.utf8)) else {
            throw SandboxUnavailable("cannot write the sandbox probe under \(NSTemporaryDirectory())")
        }
        let args = Self.arguments(
            python: configuration.python, pythonRoots: pythonRoots, topLevel: topLevel, scratch: dir, script: "probe.py",
            environment: ["PATH": "/usr/bin:/bin", "HOME": Self.jobDirectory], tmpBytes: 16 << 20, gpuDevices: [], processes: 6)
        let r: Command.Result
        do { r = try Command.run(configuration.bwrapPath, args, timeout: 30) } catch {
            throw SandboxUnavailable("cannot start \(configuration.bwrapPath): \(error)")
        }
        if r.timedOut { throw SandboxUnavailable("the sandbox probe did not finish within 30 s") }
        switch RootlessLimits.judgeProbe(output: r.stdout, errors: r.stderr, status: r.status, isRoot: isRoot) {
        case .ok: return
        case .failed(let why): throw SandboxUnavailable(why)
        }
    }
}
