import Crypto
import Foundation
import GridClient
import GridCore
import GridPeer
import GridProtocol
import GridSandbox
import Logging
import NIOCore
import ServiceLifecycle

/// A worker's peer services (seed 003): function tasks, distributed memory, distributed files.
///
/// One actor owns the peer's mutable state: membership, the task queue, the memory replicas, uploads, links to other
/// peers. The pure parts decide (`Rendezvous`, `FairQueue`, `MemoryTable`); this actor carries their decisions out.
/// Requests come from `PeerServer`; the manager is reached through the worker's link (`managerLink`).
public actor PeerService: Service {
    /// Who sent a request: a person (API token) or another peer (join token).
    public struct Caller: Sendable, Hashable {
        public var user: String
        public var isPeer: Bool
    }

    /// A reply: a message and, for bulk replies, its bytes.
    public typealias Reply = (message: GridMessage, payload: ByteBuffer?)

    struct QueuedTask: Sendable {
        var id: Int
        var task: Msg.CPUTask
        var continuation: CheckedContinuation<Msg.CPUResult, Never>
    }

    struct StartedTask: Sendable {
        var queued: QueuedTask
        var order: Int
    }

    /// Memory writes waiting to go to one peer (see `push`).
    struct SyncQueue {
        var groups: [(entries: [Msg.MemEntry], bytes: Int, continuation: CheckedContinuation<Bool, Never>)] = []
        var sending = false
    }

    struct Upload {
        var filename: String
        var user: String
        var size: Int64
        var next = 0
        var hasher = SHA256()
        var chunks: [String] = []
        var lastUsed: Double
    }

    let config: PeerConfig
    let pool: FunctionPool
    let chunks: ChunkStore
    let logger: Logger
    private(set) var selfId: String?
    private(set) var members: [Msg.PeerInfo] = []
    private var managerLink: (@Sendable (GridMessage) async throws -> GridMessage)?
    private var onLoadChange: (@Sendable () -> Void)?

    // Function tasks.
    var queue = FairQueue<QueuedTask>()
    var running = 0
    var startedCount = 0
    var doneCount = 0
    var nextTaskSerial = 0
    /// Grid jobs running on this worker (they take slots too).
    var jobsRunning = 0
    private let starts: AsyncStream<StartedTask>
    private let startContinuation: AsyncStream<StartedTask>.Continuation

    // Memory and files.
    let memory: LocalReplicas
    var clock = VersionClock()
    var uploads: [String: Upload] = [:]
    var manifestCache: [String: (manifest: Msg.FileManifest, at: Double)] = [:]
    var outgoingSync: [String: SyncQueue] = [:]

    // Other peers and clients.
    private var links: [String: PeerLink] = [:]
    private var authCache: [String: (caller: Caller, until: Double)] = [:]
    private let repairs: AsyncStream<Void>
    private let repairContinuation: AsyncStream<Void>.Continuation

    public init(config: PeerConfig, launch: FunctionPool.Launch, logger: Logger) throws {
        self.config = config
        self.logger = logger
        self.pool = FunctionPool(launch: launch, size: config.slots)
        self.memory = LocalReplicas(replicas: config.replicas)
        self.chunks = try ChunkStore(root: config.dataDirectory + "/chunks")
        (starts, startContinuation) = AsyncStream<StartedTask>.makeStream()
        (repairs, repairContinuation) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
    }

    // MARK: - Wiring

    /// How to ask the manager (through the worker's link) and how to tell the worker that the task load changed.
    public func connect(
        manager: @escaping @Sendable (GridMessage) async throws -> GridMessage, onLoadChange: @escaping @Sendable () -> Void
    ) {
        managerLink = manager
        self.onLoadChange = onLoadChange
    }

    /// The manager gave this worker its id.
    public func setIdentity(_ id: String) {
        selfId = id
        memory.setView(selfId: selfId, peers: memberIds)
    }

    /// The manager announced the online peers.
    public func membership(_ peers: [Msg.PeerInfo]) {
        let before = Set(members.map(\.workerId))
        members = peers
        memory.setView(selfId: selfId, peers: memberIds)
        for id in Set(links.keys).subtracting(peers.map(\.workerId)) {
            if let link = links.removeValue(forKey: id) { Task { await link.close() } }
        }
        if before != Set(peers.map(\.workerId)) {
            logger.info("peers changed", metadata: ["grid.peers": "\(peers.map(\.workerId))"])
            repairContinuation.yield()
        }
    }

    /// Function tasks queued or running here (reported to the manager for `GET_BEST_PEER`).
    public func taskLoad() -> Int { running + queue.count }

    /// The worker started or finished a job.
    public func setJobsRunning(_ count: Int) { jobsRunning = count }

    /// Whether a task given now would start at once: a slot is free of jobs and tasks, and nothing waits.
    var hasFreeSlot: Bool { jobsRunning + running + queue.count < config.slots }

    /// Ids of the online peers (this one included once known).
    var memberIds: [String] {
        var ids = members.map(\.workerId)
        if let selfId, !ids.contains(selfId) { ids.append(selfId) }
        return ids
    }

    func info(of id: String) -> Msg.PeerInfo? { members.first { $0.workerId == id } }

    // MARK: - Running

    public func run() async throws {
        pool.warm()
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                group.addTask { await self.repairLoop() }
                for await started in starts {
                    group.addTask { await self.execute(started) }
                }
                group.cancelAll()
            }
        } onGracefulShutdown: {
            Task { await self.shutdown() }
        }
        pool.shutdown()
    }

    private func shutdown() {
        startContinuation.finish()
        repairContinuation.finish()
        pool.shutdown()
    }

    private func repairLoop() async {
        let ticker = Task { [repairContinuation, config] in
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(Int64(config.repairSeconds * 1000)))
                repairContinuation.yield()
            }
        }
        defer { ticker.cancel() }
        for await _ in repairs {
            guard selfId != nil else { continue }
            await rebalanceMemory()
            await repairChunks()
        }
    }

    // MARK: - Requests

    /// Checks a client's or peer's token (with the manager, cached for a minute).
    func authenticate(_ token: String) async -> Result<Caller, GridError> {
        let key = ChunkStore.sha256(Array(token.utf8))
        let now = Date().timeIntervalSince1970
        if let hit = authCache[key], hit.until > now { return .success(hit.caller) }
        guard let managerLink else {
            return .failure(GridError(.unreachable, "this peer is not connected to its manager yet and cannot check tokens"))
        }
        do {
            guard case .authOk(let ok) = try await managerLink(.authCheck(Msg.AuthCheck(token: token))) else {
                return .failure(GridError(.internal, "the manager gave an unexpected answer to AUTH_CHECK"))
            }
            let caller = Caller(user: ok.user, isPeer: ok.kind == "worker")
            if authCache.count > 10_000 { authCache = [:] }
            authCache[key] = (caller, now + config.authCacheSeconds)
            return .success(caller)
        } catch let e as GridError {
            return .failure(e)
        } catch {
            return .failure(GridError(.unreachable, "could not check the token with the manager: \(error)"))
        }
    }

    /// One request of an authenticated caller → its reply. Never throws: failures become `ERROR`.
    func handle(_ message: GridMessage, payload: ByteBuffer?, caller: Caller) async -> Reply {
        guard let selfId else {
            return (.error(Msg.Error(GridError(.unreachable, "this peer has not registered with its manager yet; try again"))), nil)
        }
        do {
            switch message {
            case .ping: return (.pong, nil)
            case .getPeerStatus: return (.peerStatus(status(selfId)), nil)
            case .getBestPeer(let ask):
                guard let managerLink else { throw GridError(.unreachable, "this peer is not connected to its manager") }
                return (try await managerLink(.getBestPeer(Msg.GetBestPeer(taskId: ask.taskId, prefer: selfId))), nil)
            case .cpuTask(let task): return (.cpuResult(try await cpuTask(task, caller: caller)), nil)
            case .setMem(let m): return (.memResult(try await setMem(m.key, m.value)), nil)
            case .getMem(let m): return (.memResult(try await getMem(m.key)), nil)
            case .delMem(let m): return (.memResult(try await delMem(m.key)), nil)
            case .listMem(let m): return (.memKeys(Msg.MemKeys(keys: try await listMem(prefix: m.prefix ?? "", local: m.local ?? false))), nil)
            case .memSync(let m):
                try requirePeer(caller, message)
                memory.apply(m.entries)
                return (.ok(Msg.Ok()), nil)
            case .memFetch(let m):
                try requirePeer(caller, message)
                let entries = m.keys.prefix(1000).compactMap { k in
                    memory.get(k).map { Msg.MemEntry(key: k, value: $0.value, version: $0.version, origin: $0.origin) }
                }
                return (.memEntries(Msg.MemEntries(entries: entries)), nil)
            case .putFile(let m): return try await putFile(m, caller: caller)
            case .putFileChunk(let m): return try await putFileChunk(m, payload: payload, caller: caller)
            case .putFileEnd(let m): return (.fileStored(try await putFileEnd(m, caller: caller)), nil)
            case .getFile(let m): return (.fileInfo(try await getFile(m.filename)), nil)
            case .getFileChunk(let m): return try await getFileChunk(m)
            case .listFiles(let m): return (.fileList(Msg.FileList(files: try await listFiles(prefix: m.prefix ?? ""))), nil)
            case .deleteFile(let m):
                try PeerNames.validateFileName(m.filename)
                _ = try await writeEntry(PeerNames.manifestPrefix + m.filename, nil)
                manifestCache[m.filename] = nil
                return (.ok(Msg.Ok(detail: "deleted \(m.filename)")), nil)
            case .chunkPut(let m):
                try requirePeer(caller, message)
                guard let payload else { throw GridError(.badRequest, "CHUNK_PUT needs the chunk as bulk bytes") }
                try chunks.put(m.hash, Array(payload.readableBytesView))
                return (.ok(Msg.Ok()), nil)
            case .chunkGet(let m):
                try requirePeer(caller, message)
                guard let bytes = try? chunks.read(m.hash) else {
                    throw GridError(.notFound, "this peer has no intact copy of chunk \(m.hash.prefix(12))…")
                }
                return (.chunkData(Msg.ChunkData(hash: m.hash)), ByteBuffer(bytes: bytes))
            case .chunkHas(let m):
                try requirePeer(caller, message)
                return (.chunkHave(Msg.ChunkHashes(hashes: m.hashes.prefix(10_000).filter { chunks.has($0) })), nil)
            default:
                throw GridError(.badRequest, "\(message.type) is not a request a peer answers")
            }
        } catch let e as GridError {
            return (.error(Msg.Error(e)), nil)
        } catch {
            return (.error(Msg.Error(GridError(.internal, "\(error)"))), nil)
        }
    }

    private func requirePeer(_ caller: Caller, _ message: GridMessage) throws {
        guard caller.isPeer else { throw GridError(.forbidden, "\(message.type) is only for peers (a worker's join token)") }
    }

    private func status(_ selfId: String) -> Msg.PeerStatus {
        Msg.PeerStatus(
            workerId: selfId, name: info(of: selfId)?.name ?? selfId, slots: config.slots, running: running, queued: queue.waitingByUser,
            peers: members, memKeys: memory.liveCount, chunks: chunks.list().count, tasksDone: doneCount)
    }

    // MARK: - Links to other peers

    /// A link to peer `id` (kept and reused).
    func link(to id: String) async throws -> PeerLink {
        if let l = links[id], await l.isOpen { return l }
        guard let peer = info(of: id) else { throw GridError(.notFound, "peer \(id) is not online") }
        let l = try await PeerLink.connect(host: peer.host, port: peer.port, token: config.token, name: selfId)
        if let old = links[id], old !== l, await old.isOpen {
            await l.close()
            return old
        }
        links[id] = l
        return l
    }

    /// Sends a request to peer `id`; a link that failed is dropped so the next call reconnects.
    func ask(_ id: String, _ message: GridMessage, payload: ByteBuffer? = nil, timeout: Double = 30) async throws -> Reply {
        let l = try await link(to: id)
        do {
            let r = try await l.request(message, payload: payload, timeout: timeout)
            return (r.message, r.payload)
        } catch let e as GridError where e.code == .unreachable || e.code == .timeout {
            if links[id] === l { links[id] = nil }
            await l.close()
            throw e
        }
    }

    // MARK: - Function tasks

    func cpuTask(_ task: Msg.CPUTask, caller: Caller) async throws -> Msg.CPUResult {
        guard !task.taskId.isEmpty, task.taskId.utf8.count <= 128 else { throw GridError(.badRequest, "task_id must be 1–128 bytes") }
        guard task.program.utf8.count <= config.maxProgramBytes else {
            throw GridError(.badRequest, "the program is longer than \(config.maxProgramBytes >> 10) KiB")
        }
        if let t = task.timeout, !(t > 0 && t <= config.maxTaskSeconds) {
            throw GridError(.badRequest, "timeout must be more than 0 and at most \(Int(config.maxTaskSeconds)) s")
        }
        let function = task.function ?? "main"
        guard function.range(of: #"^[A-Za-z_][A-Za-z0-9_]{0,99}$"#, options: .regularExpression) != nil else {
            throw GridError(.badRequest, "function must be a Python name (got \(String(reflecting: function)))")
        }
        var mine = task
        mine.user = caller.isPeer ? (task.user ?? caller.user) : caller.user
        // Confidential tasks, and tasks another peer forwarded here, run here: the manager never hears of them.
        if task.confidential == true || caller.isPeer { return await runHere(mine) }
        // A free slot here is as good as the least-loaded peer's (a peer that is busy nowhere): the task starts at once,
        // without a round trip to the manager, as Ray's local-first scheduling does. Only a busy peer asks.
        if hasFreeSlot { return await runHere(mine) }
        guard let managerLink else { return await runHere(mine) }
        let best: Msg.PeerInfo?
        do {
            guard case .bestPeer(let b) = try await managerLink(.getBestPeer(Msg.GetBestPeer(taskId: task.taskId, prefer: selfId))) else {
                return await runHere(mine)
            }
            best = b.peer
        } catch {
            logger.info("could not ask the manager for a peer; running here", metadata: ["grid.error": "\(error)"])
            best = nil
        }
        guard let best, best.workerId != selfId else { return await runHere(mine) }
        mine.confidential = false
        do {
            let wait = (task.timeout ?? config.defaultTaskSeconds) + 60
            guard case .cpuResult(let r) = try await ask(best.workerId, .cpuTask(mine), timeout: wait).message else {
                throw GridError(.internal, "peer \(best.workerId) gave an unexpected answer")
            }
            return r
        } catch let e as GridError where e.code == .unreachable {
            logger.info("best peer unreachable; running here", metadata: ["grid.worker.id": "\(best.workerId)"])
            return await runHere(mine)
        }
    }

    /// Queues a task on this peer's scheduler and waits for its end.
    func runHere(_ task: Msg.CPUTask) async -> Msg.CPUResult {
        nextTaskSerial += 1
        let serial = nextTaskSerial
        let result = await withCheckedContinuation { (c: CheckedContinuation<Msg.CPUResult, Never>) in
            queue.enqueue(QueuedTask(id: serial, task: task, continuation: c), user: task.user ?? "?", priority: task.priority ?? 0)
            pump()
        }
        return result
    }

    private func pump() {
        while running < config.slots, let next = queue.next() {
            running += 1
            startedCount += 1
            startContinuation.yield(StartedTask(queued: next.item, order: startedCount))
        }
        onLoadChange?()
    }

    private func execute(_ started: StartedTask) async {
        let t = started.queued.task
        let begin = ContinuousClock.now
        let answer = await pool.run(
            FunctionPool.Request(
                program: t.program, function: t.function ?? "main", args: t.args, argsLiteral: t.argsLiteral,
                timeout: t.timeout ?? config.defaultTaskSeconds),
            user: t.user ?? "?")
        let elapsed = ContinuousClock.now - begin
        let ms = elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000
        let result = Msg.CPUResult(
            taskId: t.taskId, ok: answer.ok, result: answer.result, error: answer.error, message: answer.message, traceback: answer.traceback,
            output: answer.output, peer: selfId ?? "?", runtimeMs: ms, startOrder: started.order)
        finished(started.queued, result)
    }

    private func finished(_ q: QueuedTask, _ result: Msg.CPUResult) {
        running -= 1
        doneCount += 1
        q.continuation.resume(returning: result)
        pump()
        if queue.isEmpty && running == 0 { onLoadChange?() }
    }
}
