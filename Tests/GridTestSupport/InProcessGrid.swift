public import Foundation
public import GridClient
public import GridCore
public import GridManager
public import GridProtocol
public import GridSandbox
import GridHTTP
import GridScheduler
public import GridWorker
import Logging
import ServiceLifecycle
public import Synchronization

/// A whole grid in the test's own process (issue 14): the real manager (`Manager.run`: store, core, grid protocol,
/// HTTP API) and real `WorkerAgent`s, the grid protocol between them on an in-memory transport (`MemoryGridTransport`:
/// no socket, no port), with a `ScriptedRunner` instead of a sandbox, so that a job's lifecycle, its credits and a
/// worker's loss run with no child process at all. Clients use the HTTP API on loopback, as users do. What needs real processes
/// (kill -9, rejoin across restarts, sandboxes, TLS, the browser) stays with `TestGrid`.
public final class InProcessGrid: Sendable {
    public let root: String
    public let ports: Manager.Ports
    public var baseURL: String { "http://127.0.0.1:\(ports.http)" }
    /// Where the manager hears the grid protocol: workers (and tests speaking for one) dial it.
    public let transport: MemoryGridTransport
    /// The account named admin of this grid (it may check the ledger).
    public static let adminName = "grid-admin"
    let logger: Logger
    let config: ManagerConfig
    /// The manager's run (replaced by `restartManager`).
    let manager: Mutex<Task<Void, Never>?>
    /// Every worker started on this grid (stopped, if still running, when the grid stops); the first ones are those
    /// `withTestGrid(workers:)` started, earning for `owner`.
    public let workers: Mutex<[InProcessWorker]> = Mutex([])

    init(root: String, ports: Manager.Ports, transport: MemoryGridTransport, config: ManagerConfig, manager: Task<Void, Never>, logger: Logger) {
        self.transport = transport
        self.root = root
        self.ports = ports
        self.config = config
        self.manager = Mutex(manager)
        self.logger = logger
    }

    /// Starts a manager on `transport` and returns its run once it is ready (both listeners bound, leading).
    static func launch(config: ManagerConfig, transport: MemoryGridTransport, logger: Logger, root: String) async throws -> (Task<Void, Never>, Manager.Ports) {
        let (ready, readyContinuation) = AsyncStream<Manager.Ports>.makeStream(bufferingPolicy: .bufferingNewest(1))
        let manager = Task {
            do {
                try await Manager.run(config: config, logger: logger, gridTransport: transport) { readyContinuation.yield($0) }
            } catch {
                logger.error("manager ended: \(error)")
            }
            readyContinuation.finish()
        }
        guard let ports = await first(of: ready, within: 60) else {
            manager.cancel()
            await manager.value
            throw TestGridError("the in-process manager did not become ready; log: \(root)/grid.log")
        }
        return (manager, ports)
    }

    /// Stops the manager (its listeners close, its connections end, nothing more is written) and starts it again on
    /// the same store, HTTP port and transport, as an operator's restart does; returns once it is ready again. The
    /// workers reconnect by themselves.
    public func restartManager() async throws {
        let old = manager.withLock { m in
            defer { m = nil }
            return m
        }
        old?.cancel()
        await old?.value
        var again = config
        again.httpPort = ports.http
        let (run, _) = try await Self.launch(config: again, transport: transport, logger: logger, root: root)
        manager.withLock { $0 = run }
    }

    /// Creates an account and returns a client logged in as it.
    public func user(_ name: String, password: String = "correct horse battery") async throws -> GridClient {
        var client = GridClient(baseURL: baseURL)
        client.token = try await client.register(name, password: password).token
        return client
    }

    /// The ledger invariant, checked as the grid's admin.
    public func ledgerOK() async throws -> Bool {
        var admin = GridClient(baseURL: baseURL)
        do {
            admin.token = try await admin.login(Self.adminName, password: "correct horse battery").token
        } catch {
            admin.token = try await admin.register(Self.adminName, password: "correct horse battery").token
        }
        return try await admin.ledgerCheck()["ok"] == .bool(true)
    }

    /// The grid's log (the manager's and every worker's lines), as written so far.
    public var log: String { String(decoding: FileManager.default.contents(atPath: root + "/grid.log") ?? Data(), as: UTF8.self) }

    /// Waits (at most `timeout` seconds) until the manager has logged that worker `id` said it is stopping.
    public func managerHeardStopping(_ id: WorkerID, timeout: Double = 20) async -> Bool {
        await eventually(timeout: timeout, interval: 0.02) { log.contains("worker stopping: no new job or task goes to it grid.worker.id=\(id)") }
    }

    /// Starts a worker earning for `owner`, in this process, and returns once the manager registered it. With `peer`,
    /// it offers the peer services too (as every `campusgrid worker` does): its peer port listens on loopback, and its
    /// function tasks run on `ScriptedFunctions`, one slot per CPU. `peerAuthCacheSeconds`: how long its peer keeps
    /// the manager's answers about tokens (`PeerConfig.authCacheSeconds`).
    @discardableResult
    public func startWorker(
        _ name: String, owner: GridClient, cpus: Int = 2, memoryGb: Int = 4, runner: any JobRunner = ScriptedRunner(), peer: Bool = false,
        peerAuthCacheSeconds: Double? = nil, maxGridInputBytes: Int64? = nil, diskReserveBytes: Int64? = nil, jobDisk: DiskLimits? = nil, unsandboxedTasks: Bool = false,
        maxQueuedTasksPerUser: Int? = nil, maxListed: Int? = nil, statusPage: StrangerLimits? = nil,
        timeout: Double = 30
    ) async throws -> InProcessWorker {
        let token = try await owner.createToken(kind: "worker").token
        var config = WorkerConfig(managerHost: "127.0.0.1", token: token, name: name, dataDirectory: root + "/workers/\(name)")
        config.cpus = cpus
        if let maxGridInputBytes { config.maxGridInputBytes = maxGridInputBytes }
        if let diskReserveBytes { config.diskReserveBytes = diskReserveBytes }
        if let jobDisk { config.jobDisk = jobDisk }
        config.sandbox = SandboxReport(tier: runner.tier, label: "scripted, in-process (tests)", acceptsOthers: true)
        // `unsandboxedTasks`: as a worker whose interpreters run outside a sandbox (a container-engine tier): its owner's
        // tasks only.
        if unsandboxedTasks { config.sandbox?.tasksAcceptOthers = false }
        let (registered, continuation) = AsyncStream<String>.makeStream(bufferingPolicy: .bufferingNewest(1))
        var workerLogger = logger
        workerLogger[metadataKey: "worker"] = "\(name)"
        var peers: Worker.Peers?
        if peer {
            var peerSettings = PeerConfig(dataDirectory: config.dataDirectory + "/peer", token: token, slots: cpus)
            if let peerAuthCacheSeconds { peerSettings.authCacheSeconds = peerAuthCacheSeconds }
            peerSettings.tasksForOwnerOnly = unsandboxedTasks
            if let maxQueuedTasksPerUser { peerSettings.maxQueuedTasksPerUser = maxQueuedTasksPerUser }
            if let maxListed { peerSettings.maxListed = maxListed }
            let service = try PeerService(config: peerSettings, functions: ScriptedFunctions(peer: name), logger: workerLogger)
            let bound = Worker.Peers(service: service, listener: try await PeerServer.bind(host: "127.0.0.1", port: 0))
            config.port = bound.port
            config.advertiseHost = "127.0.0.1"
            peers = bound
        }
        let (agent, built) = await Worker.build(
            config: config, runner: runner, resources: Resources(cpus: cpus, ramGb: memoryGb, gpus: 0), gpuNames: [], logger: workerLogger,
            peers: peers, transport: transport
        ) { id in continuation.yield(id) }
        var services = built
        // `statusPage`: its status page too, on a free loopback port, with these connection limits.
        let (pageBound, pageContinuation) = AsyncStream<Int>.makeStream(bufferingPolicy: .bufferingNewest(1))
        if let statusPage {
            services.append(
                WorkerStatusPage(
                    agent: agent, host: "127.0.0.1", port: 0, logger: workerLogger, cap: HTTPConnectionCap(limits: statusPage),
                    onBound: { pageContinuation.yield($0) }))
        }
        let group = ServiceGroup(configuration: .init(services: services, logger: workerLogger))
        let task = Task {
            do { try await group.run() } catch { workerLogger.error("worker \(name) ended: \(error)") }
        }
        let worker = InProcessWorker(name: name, peerPort: config.port, peerService: peers?.service, agent: agent, group: group, task: task)
        workers.withLock { $0.append(worker) }
        guard let id = await first(of: registered, within: timeout) else {
            task.cancel()
            throw TestGridError("in-process worker \(name) did not register within \(Int(timeout)) s; log: \(root)/grid.log")
        }
        worker.id.withLock { $0 = id }
        if statusPage != nil {
            guard let port = await first(of: pageBound, within: timeout) else {
                throw TestGridError("in-process worker \(name)'s status page did not listen within \(Int(timeout)) s; log: \(root)/grid.log")
            }
            worker.statusPort.withLock { $0 = port }
        }
        return worker
    }
}

/// A worker of an `InProcessGrid`.
public final class InProcessWorker: Sendable {
    public let name: String
    /// Its peer port on loopback, if it offers the peer services.
    public let peerPort: Int?
    /// Its peer services, if it offers them.
    public let peerService: PeerService?
    /// Its link to the manager (a test asks the manager as the worker would).
    public let agent: WorkerAgent
    public let id = Mutex<String>("")
    /// Its status page's port, if it was started with one (`statusPage:`).
    public let statusPort = Mutex<Int?>(nil)
    let group: ServiceGroup
    let task: Task<Void, Never>

    init(name: String, peerPort: Int?, peerService: PeerService?, agent: WorkerAgent, group: ServiceGroup, task: Task<Void, Never>) {
        self.name = name
        self.peerPort = peerPort
        self.peerService = peerService
        self.agent = agent
        self.group = group
        self.task = task
    }

    public var workerId: WorkerID { id.withLock { $0 } }

    /// Stops it as a signal would: its runs are cancelled and reported, then its link closes.
    public func stop() async {
        await group.triggerGracefulShutdown()
        await task.value
    }

    /// It vanishes: its link closes at once, nothing is reported (its runs go on until they end by themselves).
    public func vanish() async {
        task.cancel()
        await task.value
    }
}

/// Runs `body` with a manager in this process, and `workers` workers (2 CPUs, 4 GB each) earning for an account
/// named `owner`; everything is stopped afterwards, whatever `body` did.
public func withTestGrid<T: Sendable>(
    workers: Int = 0, leaseSeconds: Double = 10, label: String = "inproc", configure: (inout ManagerConfig) -> Void = { _ in },
    _ body: (InProcessGrid) async throws -> T
) async throws -> T {
    let root = NSTemporaryDirectory() + "campusgrid-test-\(label)-\(UUID().uuidString.prefix(8))"
    try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    let logger = FileLogHandler.logger(path: root + "/grid.log")
    var config = ManagerConfig(dataDirectory: root + "/manager")
    config.host = "127.0.0.1"
    config.gridPort = 0
    config.httpPort = 0
    config.leaseSeconds = leaseSeconds
    // Heartbeats well inside a lease, so that a loaded machine does not take a worker for a silent one.
    config.heartbeatSeconds = min(1, max(0.1, leaseSeconds / 4))
    config.bcryptCost = 4
    config.admins = [InProcessGrid.adminName]
    // Verification off, as in `TestGrid`: these scenarios count exact earnings with a single worker owner.
    config.verification = .init(spotCheckRate: 0, fundSharePercent: 0, reputation: .init(probationResults: 0))
    configure(&config)
    let transport = MemoryGridTransport()
    let (manager, ports) = try await InProcessGrid.launch(config: config, transport: transport, logger: logger, root: root)
    let grid = InProcessGrid(root: root, ports: ports, transport: transport, config: config, manager: manager, logger: logger)
    do {
        if workers > 0 {
            let owner = try await grid.user("owner")
            for i in 1...workers { try await grid.startWorker("w\(i)", owner: owner) }
        }
        let result = try await body(grid)
        await stop(grid, root: root, failed: false)
        return result
    } catch {
        await stop(grid, root: root, failed: true)
        throw error
    }
}

private func stop(_ grid: InProcessGrid, root: String, failed: Bool) async {
    for w in grid.workers.withLock({ $0 }) { await w.vanish() }
    let manager = grid.manager.withLock { $0 }
    manager?.cancel()
    await manager?.value
    if !failed && ProcessInfo.processInfo.environment["CAMPUSGRID_TEST_KEEP_FILES"] == nil {
        try? FileManager.default.removeItem(atPath: root)
    }
}

/// The first element of `stream`, or nil after `seconds`.
func first<T: Sendable>(of stream: AsyncStream<T>, within seconds: Double) async -> T? {
    await withTaskGroup(of: T?.self) { group in
        group.addTask {
            var it = stream.makeAsyncIterator()
            return await it.next()
        }
        group.addTask {
            try? await Task.sleep(for: .milliseconds(Int64(seconds * 1000)))
            return nil
        }
        let value = await group.next() ?? nil
        group.cancelAll()
        return value
    }
}

/// Log lines of an in-process grid, into one file (a failed test names it).
struct FileLogHandler: LogHandler {
    let file: FileHandleBox
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .info

    static func logger(path: String) -> Logger {
        FileManager.default.createFile(atPath: path, contents: nil)
        let box = FileHandleBox(FileHandle(forWritingAtPath: path))
        return Logger(label: "campusgrid.inproc") { _ in FileLogHandler(file: box) }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(
        level: Logger.Level, message: Logger.Message, metadata extra: Logger.Metadata?, source: String, file _: String, function: String,
        line: UInt
    ) {
        let all = metadata.merging(extra ?? [:]) { $1 }
        let tail = all.isEmpty ? "" : " " + all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        file.write("\(Date().timeIntervalSince1970) \(level) \(message)\(tail)\n")
    }
}

final class FileHandleBox: Sendable {
    private let handle: Mutex<FileHandle?>
    init(_ handle: FileHandle?) { self.handle = Mutex(handle) }
    func write(_ line: String) { handle.withLock { $0?.write(Data(line.utf8)) } }
}
