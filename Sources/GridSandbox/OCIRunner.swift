import CGridSpawn
public import Foundation
public import GridCore
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The strongest tier: each job in its own container through a Docker-API engine (Docker, or Podman's compatible
/// service), with no network, memory = memory+swap, a pids limit, a CPU quota, a read-only root, a size-capped `/tmp`,
/// the scratch directory as its only writable volume, uid 65534, no capabilities and no-new-privileges. The
/// container is removed after the job, whatever happened.
public struct OCIRunner: JobRunner {
    public struct Configuration: Sendable {
        /// The engine's unix socket.
        public var socket: String
        /// The image jobs run in; it must already be on this machine (never pulled).
        public var image: String = OCIRunner.defaultImage
        /// The interpreter inside the image.
        public var python: String = "python3"
        public var limits: RunnerLimits = RunnerLimits()
        public var tmpBytes: UInt64 = 256 << 20

        public init(socket: String) { self.socket = socket }
    }

    /// The image `scripts/build-sandbox-image` builds on this machine from the system Python with numpy.
    public static let defaultImage = "localhost/campusgrid-python:3.11-1"
    /// Where the scratch directory is mounted in the container (its working directory and `HOME`).
    public static let jobDirectory = "/job"

    public let configuration: Configuration
    let engine: DockerEngine
    /// Ended jobs' containers are removed here, one at a time, after their reports: the engine's removal waits for
    /// its own clean-up of the container (about 15 ms more on Podman 4.3), which the job's end need not wait for.
    let removals = DispatchQueue(label: "campusgrid.oci.removals")
    public var tier: SandboxTier { .oci }
    /// Where the engine runs containers (rootless Podman, cgroup version), when it said.
    public let host: EngineHost?
    /// For a worker that is not root under a rootless Podman: job folders measured and removed in its user namespace.
    let rootlessFolders: RootlessFolders?
    public var label: String { Self.describe(host).label }
    public var notes: [String] { Self.describe(host).notes }

    /// What an engine said about its host.
    public struct EngineHost: Sendable, Hashable {
        public var rootless: Bool
        public var cgroupVersion: String?
        /// Podman (its own `libpod` API answers too): a container's end is waited for through that API, whose poll
        /// interval can be set (the Docker-compatible wait polls every 250 ms).
        public var podman = false
        public init(rootless: Bool, cgroupVersion: String?, podman: Bool = false) {
            self.rootless = rootless
            self.cgroupVersion = cgroupVersion
            self.podman = podman
        }
    }

    /// How a job's container's end is waited for (pure): Podman's own wait, polling every 10 ms, which answers the
    /// exit code as a bare number; else the Docker API's, which Docker answers on the event and Podman after up to
    /// 250 ms more.
    static func waitPath(container id: String, podman: Bool) -> String {
        podman ? "/libpod/containers/\(id)/wait?condition=stopped&condition=exited&interval=10ms" : "/containers/\(id)/wait"
    }

    /// The exit code in a wait's answer (pure): `{"StatusCode": N}` (Docker API) or a bare `N` (Podman's own);
    /// nil for anything else.
    static func exitCode(fromWait body: [UInt8]) -> Int32? {
        let text = String(decoding: body, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        if let n = Int32(text) { return n }
        guard let json = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any], let code = json["StatusCode"] as? Int else { return nil }
        return Int32(truncatingIfNeeded: code)
    }

    /// The exit code in an inspect's answer (pure) once the container's process has ended: `State.Running` false,
    /// `State.Status` "exited" or "stopped", and an integer `State.ExitCode`; nil for any other state or body.
    static func exitCode(fromInspect body: [UInt8]) -> Int32? {
        guard let json = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any],
            let state = json["State"] as? [String: Any], state["Running"] as? Bool == false,
            let status = state["Status"] as? String, status == "exited" || status == "stopped",
            let code = state["ExitCode"] as? Int, let exact = Int32(exactly: code)
        else { return nil }
        return exact
    }

    /// The label for an engine's host, and whether the resource limits hold there (pure): a rootless engine on
    /// cgroup v1 ignores memory, pids and CPU limits (Podman says so), which the label names.
    public static func describe(_ host: EngineHost?) -> (label: String, notes: [String], limitsHold: Bool) {
        guard let host, host.rootless else { return (SandboxTier.oci.label, [], true) }
        if host.cgroupVersion == "1" {
            return (
                "oci, rootless, no resource limits",
                ["memory, processes and CPU: not limited (a rootless engine on cgroup v1 ignores them); no network, read-only root, uid 65534 hold"],
                false
            )
        }
        return ("oci, rootless", [], true)
    }

    /// Checks the engine answers and has the image; throws `SandboxUnavailable` saying which is missing.
    public init(configuration: Configuration) throws {
        self.configuration = configuration
        engine = DockerEngine(socket: configuration.socket)
        guard engine.ping() else {
            throw SandboxUnavailable(
                "no container engine answers at \(engine.socketPath) (start Docker, or `podman system service`, or choose --sandbox bwrap)")
        }
        host = engine.host()
        rootlessFolders = RootlessFolders.make(host: host)
        guard engine.hasImage(configuration.image) else {
            throw SandboxUnavailable(
                "the container image \(configuration.image) is not on this machine (build it with scripts/build-sandbox-image, or pass --image)")
        }
        (sweptOrphans, sweepFailure) = Self.removeOrphans(engine: engine, podman: host?.podman == true)
    }

    /// Waits (at most `seconds`) until every container removal queued so far has been made; whether they all were.
    /// Whoever stops the engine, or lets the worker exit, calls it first: a Podman service stopped in the middle of a
    /// removal left the container "Removing" without its store, and Podman's compatible list failed for the whole
    /// host from then on.
    @discardableResult
    public func finishRemovals(within seconds: Double = 30) -> Bool {
        let done = DispatchSemaphore(value: 0)
        removals.async { done.signal() }
        return done.wait(timeout: .now() + min(max(seconds.isNaN ? 0 : seconds, 0), 3600)) == .success
    }

    /// The job containers this runner removed as it started because their worker is gone.
    public private(set) var sweptOrphans: [String] = []
    /// Why that sweep could not list the engine's job containers, in words; nil when it could (the worker says so at
    /// its start). Podman was seen to keep a container whose removal was cut short "Removing" after its store lost
    /// it, and from then on to fail every compatible list on the host: the sweep then lists through Podman's own API,
    /// which still answers, and removes that container too when its worker is gone.
    public private(set) var sweepFailure: String?

    /// Labels every job container carries besides its job: the worker process that runs it, and that process's PID
    /// namespace, so that a runner started later can tell a container whose worker is gone.
    static let ownerLabel = "campusgrid.worker-pid"
    static let namespaceLabel = "campusgrid.pid-namespace"
    static let pidNamespace: String = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/ns/pid")) ?? "unknown"

    /// The containers a runner removes as it starts (pure): job containers made in this PID namespace by a worker
    /// process that is gone. A killed worker's container would otherwise run a stranger's code on, unsupervised and
    /// past its time limit. Another namespace's PIDs mean nothing here, and a container without both labels is not
    /// ours to judge.
    static func orphans(_ containers: [[String: Any]], namespace: String, alive: (Int32) -> Bool) -> [String] {
        containers.compactMap { c in
            guard let id = c["Id"] as? String, !id.isEmpty, let labels = c["Labels"] as? [String: String],
                labels["campusgrid.job"] != nil, labels[namespaceLabel] == namespace,
                let text = labels[ownerLabel], let pid = Int32(text), pid > 1, !alive(pid)
            else { return nil }
            return id
        }
    }

    /// Removes (killing if need be) the job containers whose worker is gone; returns their ids (at most 256 a start),
    /// or why the engine would not list them.
    static func removeOrphans(engine: DockerEngine, podman: Bool) -> (removed: [String], failure: String?) {
        // filters={"label":["campusgrid.job"]}
        let query = "/containers/json?all=true&filters=%7B%22label%22%3A%5B%22campusgrid.job%22%5D%7D"
        var list: DockerEngine.Response
        do {
            list = try engine.call("GET", query, timeout: 30)
            if podman, !(list.status == 200 && list.json is [[String: Any]]), let own = try? engine.call("GET", "/libpod" + query, timeout: 30),
                own.status == 200, own.json is [[String: Any]]
            {
                list = own
            }
        } catch {
            return ([], listFailure(status: nil, message: "\(error)"))
        }
        guard list.status == 200, let containers = list.json as? [[String: Any]] else {
            return ([], listFailure(status: list.status, message: list.message))
        }
        let gone = orphans(containers, namespace: pidNamespace) { pid in kill(pid, 0) == 0 || errno == EPERM }
        let removed = gone.prefix(256).filter { id in
            ((try? engine.call("DELETE", "/containers/\(id)?force=true&v=true", timeout: 30))?.status).map { $0 < 300 || $0 == 404 } ?? false
        }
        return (removed, nil)
    }

    /// The words for a container list the engine did not give (pure): its status and its own message, cut to 300
    /// characters of one line (the engine's text goes to a log).
    static func listFailure(status: Int?, message: String) -> String {
        let head = message.prefix(301)
        let oneLine = head.prefix(300).map { $0.isNewline || $0.asciiValue.map { $0 < 0x20 || $0 == 0x7f } == true ? " " : String($0) }.joined()
        let cut = head.count > 300 ? oneLine + "…" : oneLine
        let said = cut.isEmpty ? "no message" : cut
        return "the engine did not list its job containers (\(status.map { "HTTP \($0)" } ?? "no answer")): \(said); "
            + "job containers of workers that are gone stay until it does"
    }

    /// The container to create for one job (pure): the Docker Engine API's create body.
    static func createBody(
        image: String, python: String, script: String, environment: [String: String], scratch: String, spec: JobSpec,
        limits: RunnerLimits, tmpBytes: UInt64, jobId: String, pythonEnvironment: String? = nil, owner: Int32 = getpid()
    ) -> [String: Any] {
        var host: [String: Any] = [
            "NetworkMode": "none",
            "PidsLimit": limits.maxProcesses,
            "ReadonlyRootfs": true,
            // /var/tmp and /run small ones: with a read-only root Podman mounts a tmpfs of no size of its own on each
            // (half the machine's memory, and a rootless Podman on cgroup v1 holds no memory limit to count it against).
            "Tmpfs": [
                "/tmp": "rw,nosuid,nodev,size=\(tmpBytes),mode=1777", "/var/tmp": "rw,nosuid,nodev,size=\(16 << 20),mode=1777",
                "/run": "rw,nosuid,nodev,size=\(16 << 20),mode=1777",
            ],
            "Binds": ["\(scratch):\(jobDirectory):rw"] + (pythonEnvironment.map { ["\($0):\(EnvBuilder.mountPoint):ro"] } ?? []),
            "CapDrop": ["ALL"],
            "SecurityOpt": ["no-new-privileges"],
            "Ulimits": [
                ["Name": "fsize", "Soft": limits.maxFileBytes, "Hard": limits.maxFileBytes],
                ["Name": "core", "Soft": 0, "Hard": 0],
                ["Name": "nofile", "Soft": limits.maxOpenFiles, "Hard": limits.maxOpenFiles],
                // Engines default nproc above what root may set on some hosts (DESIGN §8); the pids limit is the real cap.
                ["Name": "nproc", "Soft": 32768, "Hard": 32768],
            ],
            "AutoRemove": false,
            // The job's output comes through the attach; an engine's own log of it is kept nowhere (its log store grew
            // without bound on the worker's disk, outside the job's folder, whatever the job printed).
            "LogConfig": ["Type": "none", "Config": [String: String]()],
        ]
        host["Memory"] = spec.memoryLimitGb << 30
        host["MemorySwap"] = spec.memoryLimitGb << 30
        if spec.cpus > 0 { host["NanoCpus"] = spec.cpus * 1_000_000_000 }
        if spec.gpus > 0, let visible = environment["CUDA_VISIBLE_DEVICES"], !visible.isEmpty {
            host["DeviceRequests"] = [
                ["Driver": "nvidia", "DeviceIDs": visible.split(separator: ",").map(String.init), "Capabilities": [["gpu"]]]
            ]
        }
        return [
            "Image": image,
            "Cmd": [python, "-u", script],
            "WorkingDir": jobDirectory,
            "User": "65534:65534",
            "Env": environment.keys.sorted().map { "\($0)=\(environment[$0]!)" },
            "NetworkDisabled": true,
            "Labels": ["campusgrid.job": jobId, ownerLabel: "\(owner)", namespaceLabel: pidNamespace],
            "HostConfig": host,
        ]
    }

    public func start(_ request: RunRequest) throws -> JobExecution {
        let spec = request.spec
        let limits = configuration.limits
        Self.handOver(request.scratch.path)
        var env = JobEnvironment.make(for: request, home: Self.jobDirectory)
        env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
        let jobId = "\(request.job.jobId)-\(request.job.attempt)"
        let body = Self.createBody(
            image: configuration.image, python: configuration.python, script: request.script, environment: env, scratch: request.scratch.path,
            spec: spec, limits: limits, tmpBytes: configuration.tmpBytes, jobId: jobId, pythonEnvironment: request.pythonEnvironment)
        let name = "campusgrid-job-\(jobId)-\(UUID().uuidString.prefix(8).lowercased())"
        let created = try engine.call("POST", "/containers/create?name=\(name)", json: body)
        guard created.status == 201, let id = (created.json as? [String: Any])?["Id"] as? String else {
            throw SandboxUnavailable("the container engine refused the job's container: \(created.message)")
        }
        let engine = self.engine
        let removals = self.removals
        let remove: @Sendable () -> Void = { _ = try? engine.call("DELETE", "/containers/\(id)?force=true&v=true", timeout: 30) }
        var fds: [Int32] = [0, 0]
        guard grid_pipe_cloexec(&fds) == 0 else {
            remove()
            throw SpawnError(errno: errno, path: "pipe")
        }
        let writeEnd = fds[1]
        // The job's output comes through an attach made before the start, so none is missed, and it ends when the
        // container's process ends (a `logs?follow=true` stream sometimes outlived it by Podman's poll, or for good).
        let attached = DispatchSemaphore(value: 0)
        let outputDone = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            defer { outputDone.signal() }
            var demux = EngineHTTP.LogDemux()
            _ = try? engine.stream(
                "POST", "/containers/\(id)/attach?stream=1&stdout=1&stderr=1", timeout: nil, onHead: { _ in attached.signal() }
            ) { bytes in
                guard let out = try? demux.feed(bytes) else { return false }
                return Self.writeAll(writeEnd, out)
            }
            attached.signal()
            close(writeEnd)
        }
        _ = attached.wait(timeout: .now() + 30)
        let started = try? engine.call("POST", "/containers/\(id)/start")
        guard let started, started.status == 204 || started.status == 304 else {
            remove()
            throw SandboxUnavailable("the container engine could not start the job: \(started?.message ?? "no answer")")
        }
        let waitPath = Self.waitPath(container: id, podman: host?.podman ?? false)
        let seen = Mutex(Seen())
        var rootlessMeasure: (@Sendable (String, DiskLimits) -> DiskRule.Measure)?
        if let folders = rootlessFolders { rootlessMeasure = { folders.measure($0, limits: $1) } }
        let control = JobExecution.Control(
            waitForExit: {
                // The attach ends when the container's first process does (its PID namespace goes with it): the
                // engine's state says so at once, where its wait answers only after the engine's own clean-up (40–90 ms
                // later on Podman 4.3). A state that does not say "exited" yet (or an attach that failed) falls back to
                // the engine's wait. All output is in the pipe before the end is reported.
                let exited: @Sendable () -> Int32? = {
                    (try? engine.call("GET", "/containers/\(id)/json", timeout: 30)).flatMap { Self.exitCode(fromInspect: $0.body) }
                }
                var code: Int32?
                // An attach that outlived its container must not hold the job's end: the state is looked at every
                // second meanwhile, and once it says "exited" the output gets 10 s more.
                while outputDone.wait(timeout: .now() + 1) == .timedOut {
                    if let c = exited() {
                        code = c
                        _ = outputDone.wait(timeout: .now() + 10)
                        break
                    }
                }
                // The state may trail the attach's end by a moment (the engine's monitor reaps the process): a few
                // looks, 2 ms apart, then the engine's wait.
                for look in 0..<5 where code == nil {
                    if look > 0 { usleep(2_000) }
                    code = exited()
                }
                if code == nil {
                    code = (try? engine.call("POST", waitPath, timeout: nil)).flatMap { Self.exitCode(fromWait: $0.body) }
                }
                return JobExecution.Exit(
                    exitCode: code ?? -1, signal: nil, cpuSeconds: seen.withLock { $0.cpuSeconds },
                    peakMemoryKb: seen.withLock { $0.peakBytes } / 1024)
            },
            killAll: { _ = try? engine.call("POST", "/containers/\(id)/kill?signal=KILL", timeout: 30) },
            check: {
                guard let stats = try? engine.call("GET", "/containers/\(id)/stats?stream=false&one-shot=true", timeout: 10),
                    stats.status == 200, let s = stats.json as? [String: Any]
                else { return nil }
                let pids = (s["pids_stats"] as? [String: Any])?["current"] as? Int ?? 0
                let cpuNs = ((s["cpu_stats"] as? [String: Any])?["cpu_usage"] as? [String: Any])?["total_usage"] as? Int
                let memory = (s["memory_stats"] as? [String: Any])?["usage"] as? Int ?? 0
                seen.withLock { v in
                    if let cpuNs { v.cpuSeconds = max(v.cpuSeconds, Double(cpuNs) / 1e9) }
                    v.peakBytes = max(v.peakBytes, Int64(memory))
                    if pids >= limits.maxProcesses { v.pidsLimitHit = true }
                }
                return pids >= limits.maxProcesses ? .init(outcome: .failed, reason: Reasons.tooManyProcesses(limits.maxProcesses)) : nil
            },
            finish: { report in
                let inspect = try? engine.call("GET", "/containers/\(id)/json", timeout: 30)
                let state = (inspect?.json as? [String: Any])?["State"] as? [String: Any]
                let oom = state?["OOMKilled"] as? Bool ?? false
                removals.async { remove() }
                let v = seen.withLock { $0 }
                let usage = Reasons.Usage(
                    // The engine's OOMKilled flag is unreliable (Podman 4.3's conmon writes its `oom` note into its working
                    // directory); a container's init killed by SIGKILL that we did not send, with a memory limit, is the OOM killer.
                    oomKilled: oom || report.exitCode == 137,
                    pidsLimitHit: v.pidsLimitHit,
                    fileLimitHit: report.outcome == .failed && Reasons.fileLimitHit(in: request.scratch, limit: limits.maxFileBytes),
                    cpuSeconds: nil, peakMemoryBytes: nil)
                return Reasons.explain(report, usage: usage, spec: spec, limits: limits)
            },
            measure: rootlessMeasure)
        return JobExecution(pid: 0, outputFD: fds[0], deadline: request.timeLimitSeconds, control: control)
    }

    /// What the stats polls saw.
    struct Seen: Sendable {
        var cpuSeconds: Double = 0
        var peakBytes: Int64 = 0
        var pidsLimitHit = false
    }

    /// Deletes a run's folder: what the worker may, then, under a rootless Podman, the rest as its namespace's root.
    public func removeFolder(_ folder: URL) {
        DiskRule.remove(folder)
        if let rootlessFolders, FileManager.default.fileExists(atPath: folder.path) { rootlessFolders.remove(folder.path) }
    }

    /// Makes the scratch directory the container user's (uid 65534): chown when the worker is root, else open it up.
    static func handOver(_ scratch: String) {
        if getuid() == 0 {
            let fm = FileManager.default
            chown(scratch, 65534, 65534)
            if let walker = fm.enumerator(atPath: scratch) {
                for case let rel as String in walker { lchown(scratch + "/" + rel, 65534, 65534) }
            }
        } else {
            chmod(scratch, 0o777)
        }
    }

    static func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return false }
            sent += n
        }
        return true
    }
}
