import Crypto
import Foundation
import GridClient
public import GridCore
public import GridProtocol
public import GridSandbox
public import Logging
import NIOCore
import NIOPosix
public import ServiceLifecycle
import Synchronization

/// A worker: keeps a link to the manager (reconnecting by itself), runs the jobs it is given in its sandbox, streams
/// their logs and reports their ends. Results survive a manager outage: they are re-sent until acknowledged.
public actor WorkerAgent: Service {
    typealias Outbox = GridOutbox

    /// The token was refused or the protocol does not match: retrying will not help.
    public struct FatalLinkError: Error, CustomStringConvertible {
        public var message: String
        public var description: String { message }
    }

    struct RunningJob {
        var ref: JobRef
        var spec: JobSpec
        /// The submitter: the grid files the job writes are theirs.
        var owner: String
        /// The manager's write ticket for the outputs this job saves in the grid (`save_outputs_as`).
        var writeTicket: PeerTrust.WriteTicket?
        var execution: JobExecution
        var scratch: URL
        /// The inputs as they were when the job started, to tell them from outputs.
        var inputs: [String: JobFiles.Stamp]
        /// GPU device indices this job holds.
        var gpus: [Int] = []
        var log: [UInt8] = []
        var sent: Int64 = 0
        var truncated = false
        /// The Python environment it runs in (`EnvBuilder` key), released when it ends.
        var envKey: String?
        /// Its grid inputs that were public files, and whose (`Msg.JobDone.publicInputs`).
        var publicInputs: [Msg.PublicInput] = []
    }

    /// The log of a job whose Python environment is being prepared (the installer's output): it goes to the manager
    /// as it comes; the job counts as running (its lease is renewed), but it has not started and is not billed.
    struct Preparation {
        var ref: JobRef
        var log: [UInt8] = []
        var sent: Int64 = 0
    }

    let config: WorkerConfig
    let runner: any JobRunner
    let resources: Resources
    let gpuNames: [String]
    /// Free GPU devices; a job asking for GPUs gets whole devices and only those are visible in its sandbox.
    private var gpuSlots: GPUSlots
    let logger: Logger
    private var workerId: String?
    /// The account this worker earns for (from `HELLO_OK`): the only owner a worker that refuses others' jobs serves.
    private var owner: String?
    private var heartbeatSeconds: Double = 1
    private var outbox: Outbox?
    /// Which of the grid's managers the link tries next (issue 16).
    private lazy var rotation = ManagerRotation(config.managers)
    /// Which run is in which phase, which was cancelled, which reports wait for an acknowledgement: the decisions
    /// (pure, `WorkerJobTable`). A run's sandbox starts off the actor (a container engine may take seconds, and the
    /// link must go on answering meanwhile); a cancel that comes meanwhile stops it as soon as it has started.
    private var table = WorkerJobTable<Unacked>()
    /// Started runs' executions and logs.
    private var jobs: [JobRef: RunningJob] = [:]
    /// The runs whose log is being written now, and who waits to write more of it (`lockLog`).
    private var logWriters: [JobRef: [CheckedContinuation<Void, Never>]] = [:]
    /// Logs of runs whose Python environment is being built or waited for.
    private var preparations: [JobRef: Preparation] = [:]
    /// Builds and caches jobs' Python environments; nil: jobs that declare packages are refused.
    private let environments: EnvBuilder?
    /// The environments' digests last reported to the manager.
    private var reportedEnvs: [String]?
    /// A run that ended, kept until the manager acknowledges its `JOB_DONE`: with its whole log, so that bytes the
    /// manager never got are re-sent (from the offset in `REGISTERED`) before the report itself.
    struct Unacked {
        var done: Msg.JobDone
        var payload: ByteBuffer
        var log: [UInt8]
    }
    /// The last jobs this worker finished, newest last, for its status page.
    private var recent: [WorkerStatus.Task] = []
    private var startedAt: [JobRef: Double] = [:]
    /// Work for the task group of `run()`: an assignment to prepare, start and watch to its end, each in a task of its
    /// own (so that a long build never holds up the messages from the manager).
    enum Work: Sendable {
        case prepare(Msg.JobAssign, ByteBuffer)
    }
    private let starts: AsyncStream<Work>
    private let startContinuation: AsyncStream<Work>.Continuation
    /// Finished when the worker, stopping, has reported its runs (or waited its bound): the link to the manager closes.
    private let leave: AsyncStream<Void>
    private let leaveContinuation: AsyncStream<Void>.Continuation
    /// How long a stopping worker waits for the reports of the runs it cancelled to be acknowledged.
    static let leaveSeconds = 10.0
    /// Called with the manager's answer once the worker is registered (used by `up` and tests to know it is ready).
    private let onRegistered: @Sendable (String) -> Void
    /// The peer services, told the worker's id and the online peers; nil when the worker offers none.
    private let peers: PeerService?
    /// Tests (issue 14): reach the manager on this in-memory transport instead of `config.managerHost`.
    private let transport: MemoryGridTransport?
    /// The key of this worker's peer-port certificate on a TLS grid: made at start, never sent (only its public half).
    private let peerTLSKey = P256.Signing.PrivateKey()
    /// Requests to the manager in flight, matched to replies by id (`Correlator`, pure; see `ask`).
    private var asks = Correlator<Result<GridMessage, any Error>, CheckedContinuation<GridMessage, any Error>>()
    /// When the manager was last heard from, and when to ping it (`ManagerSilence`); per connection.
    private var silence = ManagerSilence(heartbeat: 1, now: 0)
    /// Rung whenever the runs held or awaiting acknowledgement change, or the link drops: what a stopping worker
    /// waits on (`shutdown()`) instead of looking every few milliseconds.
    private let settled = Doorbell()
    private var leftSilentManager = false
    /// Whether the current try at a link got as far as being registered: if it then breaks, by an error or not, the
    /// worker lost a manager it had (and says so), rather than failing to reach one.
    private var linkRegistered = false
    /// Rung when the peer's task load changed: the next heartbeat goes out at once.
    private let loadChangedBell = Doorbell()

    public init(
        config: WorkerConfig, runner: any JobRunner, resources: Resources, gpuNames: [String], logger: Logger, peers: PeerService? = nil,
        environments: EnvBuilder? = nil, transport: MemoryGridTransport? = nil, onRegistered: @escaping @Sendable (String) -> Void = { _ in }
    ) {
        self.transport = transport
        self.environments = environments
        self.peers = peers
        self.config = config
        self.runner = runner
        self.resources = resources
        self.gpuNames = gpuNames
        self.gpuSlots = GPUSlots(indices: config.gpuIndices)
        self.logger = logger
        self.onRegistered = onRegistered
        (starts, startContinuation) = AsyncStream<Work>.makeStream()
        (leave, leaveContinuation) = AsyncStream<Void>.makeStream()
        self.workerId = Self.loadWorkerId(config.dataDirectory)
    }

    public func run() async throws {
        // What jobs and tasks leave on the disk (their folders, the environments they build) is the worker's user's
        // alone: a root worker's sandbox writes as root, and a setuid file a job made in its folder must be no way in
        // for another local user; nor may one put files in a running job's folder.
        for folder in ["jobs", "envs", "peer"] {
            let path = config.dataDirectory + "/" + folder
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            guard chmod(path, 0o700) == 0 else { throw GridError(.internal, "could not make \(path) private: \(String(cString: strerror(errno)))") }
        }
        // What a worker that was killed mid-run left: nothing else would ever delete it.
        let swept = JobFiles.sweep(jobs: config.dataDirectory + "/jobs", exclusive: config.folderLock != nil, remove: runner.removeFolder)
        if !swept.isEmpty { logger.notice("removed \(swept.count) job folder(s) a stopped worker left: \(swept.prefix(5).joined(separator: ", "))") }
        try await withGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { group in
                // The link outlives the start of a graceful shutdown: it ends once the runs the worker cancelled are reported
                // (`shutdown()`), so the manager hears they stopped instead of waiting for their leases to run out.
                group.addTask {
                    try await withThrowingTaskGroup(of: Void.self) { link in
                        link.addTask { try await self.linkLoop() }
                        link.addTask { for await _ in self.leave {} }
                        defer { link.cancelAll() }
                        _ = try await link.next()
                    }
                }
                for await work in starts {
                    switch work {
                    case .prepare(let assign, let payload): group.addTask { await self.start(assign, payload: payload) }
                    }
                }
            }
        } onGracefulShutdown: {
            Task { await self.shutdown() }
        }
    }

    /// Stops the worker: its runs are cancelled and nothing new starts; while the manager is connected, the worker waits
    /// (at most `leaveSeconds`) until the manager has acknowledged the report of every run, then leaves. The manager
    /// puts each run's job back in the queue at once (a run reported cancelled that nobody cancelled is only
    /// interrupted), instead of a lease period later, and does not take the worker's going for the job's fault.
    private func shutdown() async {
        // First, so that the manager reads it before the reports of the cancelled runs and offers this worker nothing new.
        try? await outbox?.write(
            GridFrame(.loadUpdate(Msg.LoadUpdate(load: MachineInfo.load(), running: runningRefs, tasks: nil, envs: nil, stopping: true))))
        for ref in table.shutdown() { jobs[ref]?.execution.cancel() }
        await environments?.stopBuilds()
        startContinuation.finish()
        let deadline = ContinuousClock.now + .milliseconds(Int64(Self.leaveSeconds * 1000))
        while outbox != nil, !(table.held.isEmpty && table.finished.isEmpty), ContinuousClock.now < deadline {
            // Woken by each change (a report, an acknowledgement, the link dropping); at least once a second in case
            // a change came by a way that does not ring.
            let left = deadline - ContinuousClock.now
            _ = await settled.wait(upTo: min(1, Double(left.components.seconds) + Double(left.components.attoseconds) / 1e18))
        }
        leaveContinuation.finish()
    }

    // MARK: - The link to the manager

    private func linkLoop() async throws {
        var backoff = Backoff()
        while !Task.isCancelled && !table.stopping {
            linkRegistered = false
            do {
                try await connectOnce(&backoff)
                logger.warning("lost the manager; reconnecting")
            } catch let redirect as NotLeader {
                let from = rotation.current
                let followed = rotation.notLeader(naming: redirect.leader)
                logger.info(
                    "the manager does not lead; trying another",
                    metadata: ["grid.manager": "\(from)", "grid.leader": "\(redirect.leader)", "grid.next": "\(rotation.current)", "grid.followed": "\(followed)"])
            } catch let error as FatalLinkError {
                logger.critical("the manager refused this worker: \(error.message)")
                startContinuation.finish()
                throw error
            } catch is CancellationError {
                return
            } catch {
                // A registered link that broke with an error (a reset from a manager that died, say) is a lost manager
                // as much as one that closed cleanly; only a link that never got registered is an unreachable one.
                if linkRegistered {
                    logger.warning("lost the manager; reconnecting", metadata: ["grid.manager": "\(rotation.current)", "grid.error": "\(error)"])
                } else {
                    logger.info("manager unreachable; retrying", metadata: ["grid.manager": "\(rotation.current)", "grid.error": "\(error)"])
                }
                rotation.failed()
            }
            detach()
            if Task.isCancelled || table.stopping { return }
            try? await Task.sleep(for: .milliseconds(Int(backoff.next() * 1000)))
        }
    }

    private func connectOnce(_ backoff: inout Backoff) async throws {
        let pin = PinnedManager(fingerprint: config.caFingerprint)
        do {
            try await connectOnce(&backoff, pin: pin)
        } catch let error as FatalLinkError {
            throw error
        } catch {
            // A refused certificate surfaces as a failed handshake: say which CA was found instead of the pinned one.
            if let refusal = pin.refusal { throw FatalLinkError(message: refusal.message) }
            throw error
        }
    }

    private func connectOnce(_ backoff: inout Backoff, pin: PinnedManager) async throws {
        if let transport {
            try await session(try transport.dial(), &backoff)
            return
        }
        let tls = try pin.context()
        // Whether a frame from the manager is on its way in: a large one on a slow link is no silence (`ManagerSilence`).
        let flow = InboundFlow()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.seconds(3))
            .channelOption(.socketOption(.so_keepalive), value: 1)
            .connect(host: rotation.current.host, port: rotation.current.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls { try channel.pipeline.syncOperations.addHandler(pin.handler(context: tls)) }
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(GridFrameDecoder(flow: flow)))
                    try channel.pipeline.syncOperations.addHandler(GridFrameWriter())
                    return try NIOAsyncChannel<InboundFrame, GridFrame>(wrappingChannelSynchronously: channel)
                }
            }
        try await channel.withGridLink(flow: flow) { link in try await session(link, &backoff) }
    }

    /// One connection to the manager, whichever transport carries it: the handshake, then its frames until it closes.
    private func session(_ link: GridLink, _ backoff: inout Backoff) async throws {
        leftSilentManager = false
        // A manager that accepts the connection but never answers (frozen: the kernel still accepts for it) is left after
        // a bound, not waited on: the handshake must be over by then (cancelled once registered).
        let handshakeBound = MultiThreadedEventLoopGroup.singleton.next().scheduleTask(in: .seconds(Int64(Self.handshakeSeconds))) { link.close() }
        defer { handshakeBound.cancel() }
        try await link.executeThenClose { inbound, outbound in
            var messages = inbound.makeAsyncIterator()
            // The handshake's frames are decided by `ManagerHandshake` (pure); this carries its answers out.
            var handshake = ManagerHandshake()
            func step() async throws -> ManagerHandshake.Action {
                guard let item = try await messages.next() else { return handshake.closed() }
                link.flow?.handled()
                switch item {
                case .frame(let f): return handshake.received(f)
                case .invalid(let e, _, _): return handshake.invalid(e)
                }
            }
            try await outbound.write(
                GridFrame(
                    .hello(Msg.Hello(token: config.token, name: config.name, workerId: workerId, user: config.user, peerKey: peers?.publicKey))))
            var hello: Msg.HelloOk?
            var registered: (answer: Msg.Registered, early: [GridFrame])?
            while registered == nil {
                switch try await step() {
                case .readOn: continue
                case .followLeader(let leader): throw NotLeader(leader: leader)
                case .fatal(let message): throw FatalLinkError(message: message)
                case .reconnect(let reason): throw HandshakeFailed(description: reason)
                case .registered(let r, let frames): registered = (r, frames)
                case .register(let ok):
                    hello = ok
                    adopt(workerId: ok.workerId, heartbeat: ok.heartbeatSeconds)
                    owner = ok.owner
                    await peers?.setIdentity(ok.workerId, owner: ok.owner)
                    await peers?.setTrust(managerKey: ok.managerKey, credential: nil)
                    let envs = environments?.cachedDigests()
                    reportedEnvs = envs
                    let register = Msg.Register(
                        resources: resources, gpuNames: gpuNames, tier: runner.tier, slots: config.slots ?? resources.cpus,
                        host: config.advertiseHost, port: config.port, webPort: config.webPort, running: runningRefs,
                        finished: table.finished, sandbox: sandbox,
                        tlsKey: peers?.tls.required == true ? peerTLSKey.publicKey.pemRepresentation : nil, envs: envs,
                        python: environments?.interpreter.version, diskFull: diskFull() ? true : nil,
                        jobDiskBytes: config.jobDisk.maxBytes)
                    try await outbound.write(GridFrame(.register(register)))
                }
            }
            guard let ok = hello, let (reg, early) = registered else { throw HandshakeFailed(description: "registered without HELLO_OK") }
            await peers?.setTrust(managerKey: nil, credential: reg.credential)
            if let peers, peers.tls.required {
                // The manager (verified against the join string's CA) signed our key: the peer port can now open.
                guard let certificate = reg.peerCertificate, let ca = reg.peerAuthority else {
                    throw FatalLinkError(message: "the manager issued no certificate for this worker's peer port (is it older than this worker?)")
                }
                peers.tls.set(try PeerTLS(caPEM: ca, certificatePEM: certificate, keyPEM: peerTLSKey.pemRepresentation))
            }
            handshakeBound.cancel()
            backoff.reset()
            // Registered from here on: a link that breaks while the logs are re-sent lost a manager it had.
            linkRegistered = true
            await attach(outbound, registered: reg)
            logger.info("registered with the manager", metadata: ["grid.worker.id": "\(ok.workerId)", "grid.worker.owner": "\(ok.owner)"])
            onRegistered(ok.workerId)
            // The heartbeat task lives exactly as long as this connection: it is cancelled when the read loop ends.
            silence = ManagerSilence(heartbeat: heartbeatSeconds, now: Self.clock())
            let heartbeat = Task { try await self.heartbeats(outbound, link: link) }
            defer { heartbeat.cancel() }
            for frame in early { await handle(frame, outbound) }
            reading: while let item = try await messages.next() {
                link.flow?.handled()
                switch item {
                case .frame(let frame): await handle(frame, outbound)
                case .invalid(let e, _, let fatal):
                    logger.warning("bad message from the manager", metadata: ["grid.error": "\(e)"])
                    if fatal { break reading }
                }
            }
        }
        // Left for its silence: the next connection tries another manager first.
        if leftSilentManager { throw ManagerWentSilent() }
    }

    /// How long a manager has to answer HELLO and REGISTER.
    static let handshakeSeconds = 20.0
    struct ManagerWentSilent: Error, CustomStringConvertible {
        var description: String { "the manager went silent" }
    }

    struct LinkClosed: Error {}
    /// The handshake with the manager went wrong in a way another try may cure.
    struct HandshakeFailed: Error, CustomStringConvertible {
        var description: String
    }
    /// The manager answered `HELLO` with `NOT_LEADER`.
    struct NotLeader: Error { var leader: String }

    private func adopt(workerId id: String, heartbeat: Double) {
        heartbeatSeconds = max(0.1, min(heartbeat, 30))
        if workerId != id {
            workerId = id
            Self.saveWorkerId(id, config.dataDirectory)
        }
    }

    /// A new connection is registered: kill what the manager gave away, re-send unsent log bytes and unacknowledged ends.
    private func attach(_ out: Outbox, registered: Msg.Registered) async {
        outbox = out
        let decided = table.registered(cancel: registered.cancel)
        settled.ring()
        for ref in decided.cancelRuns {
            logger.info("manager gave this job away; stopping it", metadata: ["grid.job.id": "\(ref.jobId)"])
            jobs[ref]?.execution.cancel()
        }
        // Every log's resume point first, before the first await: a run whose turn came later in the loop could flush
        // from its old connection's offset meanwhile (a review), a chunk past what the manager holds.
        for (ref, job) in jobs {
            jobs[ref]?.sent = WorkerJobTable<Unacked>.resumeOffset(claimed: registered.logOffsets[String(ref.jobId)], held: job.log.count)
        }
        for (ref, prep) in preparations {
            preparations[ref]?.sent = WorkerJobTable<Unacked>.resumeOffset(claimed: registered.logOffsets[String(ref.jobId)], held: prep.log.count)
        }
        for ref in Array(jobs.keys) { await flushLog(ref) }
        for ref in Array(preparations.keys) { await flushPreparationLog(ref) }
        for (ref, pending) in decided.resend {
            // The tail of the log first (the manager settles a run only once it holds all of it), then the report.
            if let offset = registered.logOffsets[String(ref.jobId)], offset >= 0, offset < Int64(pending.log.count) {
                let tail = ByteBuffer(bytes: pending.log[Int(offset)...])
                try? await out.write(GridFrame(.jobLog(Msg.JobLog(job: pending.done.job, offset: offset)), payload: tail))
            }
            try? await out.write(GridFrame(.jobDone(pending.done), payload: pending.payload))
        }
    }

    private func detach() {
        outbox = nil
        settled.ring()
        let lost: Result<GridMessage, any Error> = .failure(GridError(.unreachable, "lost the connection to the manager"))
        for waiter in asks.failAll(lost) { waiter.resume(with: lost) }
    }

    /// Sends a request to the manager and waits (at most `timeout` seconds) for the reply with its id; an `ERROR`
    /// reply is thrown. Used by the peer services (`AUTH_CHECK`, `GET_BEST_PEER`).
    public func ask(_ message: GridMessage, timeout: Double = 10) async throws -> GridMessage {
        guard let out = outbox else { throw GridError(.unreachable, "this worker is not connected to its manager right now") }
        // Never closed (a lost connection fails what is in flight; the next one takes new requests), so always an id.
        guard case .success(let id) = asks.begin(deadline: .infinity, label: message.type) else {
            throw GridError(.unreachable, "this worker is not connected to its manager right now")
        }
        defer { asks.finish(id) }
        let expired = GridError(.timeout, "the manager did not answer \(message.type) in \(Int(timeout)) s")
        // The deadline is a child of this call: it ends (cancelled) when the answer comes, and never outlives the call.
        let reply = try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try? await Task.sleep(for: .milliseconds(Int64(timeout * 1000)))
                if !Task.isCancelled { await self.answer(id, .failure(expired)) }
            }
            defer { group.cancelAll() }
            do { try await out.write(GridFrame(id: id, message)) } catch {
                answer(id, .failure(GridError(.unreachable, "could not reach the manager: \(error)")))
            }
            return try await withCheckedThrowingContinuation { c in
                if let outcome = asks.wait(id, c, missing: .failure(GridError(.unreachable, "the request to the manager was dropped"))) {
                    c.resume(with: outcome)
                }
            }
        }
        if case .error(let e) = reply { throw GridError(e.code, e.message) }
        return reply
    }

    /// The reply (or failure) of request `id`: to its asker now if it waits, else kept until it does. Only the first
    /// counts; a request no longer in flight is ignored.
    private func answer(_ id: Int, _ result: Result<GridMessage, any Error>) {
        asks.resolve(id, result)?.resume(with: result)
    }

    /// The peer's task load changed: report it with the next heartbeat tick, not a whole period later.
    public nonisolated func loadChanged() {
        loadChangedBell.ring()
    }

    /// Seconds on a monotonic clock, for `ManagerSilence`.
    private static func clock() -> Double {
        let d = ContinuousClock.now - Self.epoch
        return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }
    private static let epoch = ContinuousClock.now
    /// The shortest interval between two load reports (`TaskRouting.answerReuseSeconds` assumes it).
    static let loadReportSeconds = 0.05

    private func heartbeats(_ out: Outbox, link: GridLink) async throws {
        while !Task.isCancelled {
            let flow = link.flow
            switch silence.tick(now: Self.clock(), busy: flow?.busy(quiet: silence.giveUpAfter, waiting: false) == true, progress: flow?.progress ?? 0) {
            case .none: break
            case .ping:
                // Its PONG (any frame, in fact) counts as an answer; the id is one no request of ours uses.
                try await out.write(GridFrame(id: asks.reserveId(), .ping))
            case .giveUp(let silent):
                // A manager frozen with the connection open: close it, and the link goes to whichever manager leads.
                logger.warning(
                    "the manager has said nothing for \(Int(silent)) s; leaving it for whichever manager leads",
                    metadata: ["grid.manager": "\(rotation.current)"])
                leftSilentManager = true
                link.close()
                return
            }
            let tasks = await peers?.taskLoad()
            var envs = environments?.cachedDigests()
            // Sent again only when the set changed, not its order (the most recently used come first).
            if envs.map(Set.init) == reportedEnvs.map(Set.init) { envs = nil } else { reportedEnvs = envs }
            let update = Msg.LoadUpdate(load: MachineInfo.load(), running: runningRefs, tasks: tasks, envs: envs, diskFull: diskFull() ? true : nil)
            try await out.write(GridFrame(.loadUpdate(update)))
            // A heartbeat period, or less: a change of the task load is reported soon, but at most every 50 ms (a busy
            // peer's load changes with each of thousands of tasks a second; the manager's answers assume this pace).
            let sent = Self.clock()
            switch await loadChangedBell.wait(upTo: heartbeatSeconds) {
            case .cancelled: throw CancellationError()
            case .timedOut: break
            case .rung:
                let wait = Self.loadReportSeconds - (Self.clock() - sent)
                if wait > 0 { try await Task.sleep(for: .milliseconds(Int((wait * 1000).rounded(.up)))) }
            }
        }
    }

    private func handle(_ frame: GridFrame, _ out: Outbox) async {
        silence.heard(now: Self.clock())
        if frame.id != 0, asks.isInFlight(frame.id) {
            answer(frame.id, .success(frame.message))
            return
        }
        guard let order = ManagerOrder(frame.message) else {
            logger.warning("the manager sent \(frame.message.type), which it does not send a worker unasked; ignored")
            return
        }
        switch order {
        case .peers(let update):
            await peers?.membership(update.peers, barred: update.barred ?? [])
        case .jobAssign(let assign):
            // Taken here, on the read loop, so that a CANCEL read next finds it; prepared and started in a task of
            // its own, so that a slow start never holds up the link.
            let admitted = owner.map { Admission.accepts(jobOwner: assign.owner ?? "", workerOwner: $0, acceptsOthers: sandbox.acceptsOthers) } ?? true
            switch table.assign(assign.job, admitted: admitted) {
            case .duplicate: break
            case .refuse(let reason): await reject(assign.job, reason: reason)
            case .take(let replaced):
                for old in replaced { jobs[old]?.execution.cancel() }
                startContinuation.yield(.prepare(assign, frame.payload ?? ByteBuffer()))
            }
        case .cancel(let cancel):
            switch table.cancel(cancel.job) {
            case .cancelRun:
                logger.info("cancelling job", metadata: ["grid.job.id": "\(cancel.job.jobId)", "grid.reason": "\(cancel.reason)"])
                jobs[cancel.job]?.execution.cancel()
            case .noted, .unknown:
                // Not started yet: it is reported cancelled instead of starting, or stopped the moment it has started.
                break
            }
        case .jobDoneAck(let ack):
            table.acknowledged(ack.job)
            settled.ring()
        case .ping:
            try? await out.write(GridFrame(id: frame.id, .pong))
        case .pong:
            break
        case .error(let e):
            logger.warning("manager said: \(e.message)", metadata: ["grid.error.code": "\(e.code)"])
        }
    }

    // MARK: - Jobs

    /// Prepares and starts a run the table took (`assign`): its files unpacked, its grid inputs fetched, its Python
    /// environment ready, then its sandbox started, unless it was cancelled meanwhile.
    private func start(_ assign: Msg.JobAssign, payload: ByteBuffer) async {
        let ref = assign.job
        // Limits are computed from these figures (cgroups, rlimits, a container's): out of range, they could trap.
        if let problem = assign.spec.resourceProblem {
            await reject(ref, reason: "the job's spec is out of range: \(problem)")
            return
        }
        var bytes = payload
        var files: [(name: String, data: Data)] = []
        for entry in assign.files {
            guard entry.size >= 0, let slice = bytes.readSlice(length: entry.size) else {
                await reject(ref, reason: "the job bundle was damaged in transit")
                return
            }
            files.append((entry.name, Data(slice.readableBytesView)))
        }
        // Every run of a job is held to the job's own scratch-disk limit and to no other, so two honest runs of it end
        // alike (verification); a worker that allows less runs none of it (placement sends it none: this one goes on).
        var diskLimits = config.jobDisk
        guard assign.spec.diskLimitBytes <= config.jobDisk.maxBytes else {
            await reject(
                ref, reason: "the job may fill \(assign.spec.diskLimitGb) GB of scratch disk; this worker allows \(config.jobDisk.maxBytes >> 20) MiB a job")
            return
        }
        diskLimits.maxBytes = assign.spec.diskLimitBytes
        let scratch = JobFiles.folder(for: ref, in: config.dataDirectory + "/jobs")
        do {
            try? FileManager.default.removeItem(at: scratch)
            try JobFiles.unpack(files, into: scratch)
            try FileName.validate(assign.script)
            var inputs = Dictionary(files.map { ($0.name, $0.data.count) }, uniquingKeysWith: { a, _ in a })
            var publicInputs: [Msg.PublicInput] = []
            // Inputs stored in the grid's files come straight from the peers that hold them.
            if let names = assign.spec.gridInputs, !names.isEmpty {
                guard let peers else { throw GridError(.badRequest, "this worker offers no peer services to fetch grid inputs") }
                // The owner's ticket for this worker: the peers holding the owner's files give them to it.
                if let ticket = assign.ticket { await peers.adopt(ticket) }
                var room = config.maxGridInputBytes
                for name in names {
                    try FileName.validate(name)
                    let path = scratch.appendingPathComponent(name).path
                    // What the disk takes now, less what it keeps free (the inputs fetched so far are on it).
                    let disk = DiskRule.freeBytes(scratch.path).map { $0 - max(0, config.diskReserveBytes) } ?? .max
                    do {
                        let fetched = try await peers.fetchFile(name, to: path, user: assign.owner ?? "", maxBytes: room, diskBytes: disk)
                        room -= fetched.bytes
                        // Never silently: the job's history says whose file stood in for a name its submitter has none of.
                        if let publisher = fetched.publishedBy { publicInputs.append(Msg.PublicInput(name: name, publishedBy: publisher)) }
                    } catch let e as GridError where e.code == .notFound || e.code == .badRequest {
                        // The submitter's mistake: no worker could do better, so the job fails instead of moving on.
                        try? FileManager.default.removeItem(at: scratch)
                        await reject(ref, reason: "input grid:\(name): \(e.message)", outcome: .failed)
                        return
                    } catch let e as GridError {
                        throw GridError(e.code, "input grid:\(name): \(e.message)")
                    }
                    inputs[name] = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
                }
            }
            // The job's Python packages: built (or found cached) before it starts; this time is not billed.
            var environment: EnvBuilder.Ready?
            let requirements = assign.spec.pythonRequirements
            if !requirements.isEmpty {
                switch await prepareEnvironment(ref, requirements) {
                case .ready(let ready): environment = ready
                case .stop:
                    try? FileManager.default.removeItem(at: scratch)
                    return
                }
            }
            // A disk already under what it keeps free would stop the job at its first measure: it goes to another worker.
            if let free = DiskRule.freeBytes(scratch.path), free < config.jobDisk.floorBytes {
                if let key = environment?.key { environments?.release(key) }
                try? FileManager.default.removeItem(at: scratch)
                await reject(ref, reason: "this worker's disk is nearly full (\(free >> 20) MiB free, under the \(config.jobDisk.floorBytes >> 20) MiB it keeps)")
                return
            }
            let decision = table.beginStart(ref)
            if decision != .start {
                settled.ring()
                if let key = environment?.key { environments?.release(key) }
                try? FileManager.default.removeItem(at: scratch)
                if decision == .reportCancelled {
                    await reject(ref, reason: "cancelled before it started", outcome: .cancelled, refund: true)
                }
                return
            }
            var preparedLog: (log: [UInt8], sent: Int64) = ([], 0)
            if let prep = preparations.removeValue(forKey: ref) { preparedLog = (prep.log, prep.sent) }
            // Stamped before the job starts, so an input it rewrites is seen as an output.
            let stamps = JobFiles.stamps(of: inputs.keys, in: scratch)
            guard let devices = gpuSlots.take(assign.spec.gpus) else {
                if let key = environment?.key { environments?.release(key) }
                throw GridError(.sandboxUnavailable, "\(assign.spec.gpus) GPU(s) asked for, \(gpuSlots.free.count) free on this worker")
            }
            // The job's fixed seed (CAMPUSGRID_SEED; PYTHONHASHSEED is 0 for every job): honest reruns of seeded code
            // match (verification).
            var variables = assign.spec.seedEnvironment
            if !devices.isEmpty { variables["CUDA_VISIBLE_DEVICES"] = GPUSlots.visibleDevices(devices) }
            let execution: JobExecution
            do {
                execution = try await runner.startOffActor(
                    RunRequest(
                        job: ref, spec: assign.spec, scratch: scratch, script: assign.script, environment: variables,
                        pythonEnvironment: environment?.sitePath))
            } catch {
                gpuSlots.give(devices)
                if let key = environment?.key { environments?.release(key) }
                throw error
            }
            // Cancelled (or the worker began stopping) while it started: it runs only to be stopped, and is reported
            // like any cancelled run.
            if table.started(ref) == .cancelAtOnce { execution.cancel() }
            execution.watchDisk(folder: scratch.path, limits: diskLimits)
            jobs[ref] = RunningJob(
                ref: ref, spec: assign.spec, owner: assign.owner ?? "", writeTicket: assign.writeTicket, execution: execution, scratch: scratch,
                inputs: stamps,
                gpus: devices, log: preparedLog.log, sent: preparedLog.sent, envKey: environment?.key, publicInputs: publicInputs)
            startedAt[ref] = Date().timeIntervalSince1970
            await peers?.setJobsRunning(jobs.count)
            logger.info("job started", metadata: ["grid.job.id": "\(ref.jobId)", "grid.job.attempt": "\(ref.attempt)"])
            try? await outbox?.write(GridFrame(.jobStarted(Msg.JobStarted(job: ref))))
            // Watched by this same task, not a new one: a worker that began stopping while this run started has closed
            // its stream of work, and a run handed to it would never be watched, nor reported.
            await watch(ref)
        } catch {
            // A start that failed late (a container's start timed out) may have run the job already: its files may be
            // the sandbox user's.
            runner.removeFolder(scratch)
            await reject(ref, reason: "the worker could not start the job: \(error)")
        }
    }

    /// Whether the data disk is under the free space the worker keeps: then it takes no job (each would be handed back at
    /// once, again and again), and says so in `REGISTER` and every `LOAD_UPDATE`.
    private func diskFull() -> Bool {
        DiskRule.freeBytes(config.dataDirectory).map { $0 < config.jobDisk.floorBytes } ?? false
    }

    /// Reports a job that could not even start: `rejected` (the manager gives it to another worker, and the submitter
    /// pays nothing for it), `failed` when no worker could do better (a grid input that does not exist), or
    /// `cancelled` before it started; `refund` gives the submitter the whole hold back. The log so far (preparing its
    /// environment) goes with it.
    private func reject(_ ref: JobRef, reason: String, outcome: Msg.Outcome = .rejected, refund: Bool? = nil) async {
        logger.error("job could not start", metadata: ["grid.job.id": "\(ref.jobId)", "grid.reason": "\(reason)"])
        let log = preparations.removeValue(forKey: ref)?.log ?? []
        let done = Msg.JobDone(
            job: ref, outcome: outcome, exitCode: nil, runtimeMs: 0, peakMemoryKb: 0, cpuSeconds: 0, reason: reason, files: [],
            logBytes: Int64(log.count), refund: refund)
        table.reported(ref, Unacked(done: done, payload: ByteBuffer(), log: log))
        settled.ring()
        try? await outbox?.write(GridFrame(.jobDone(done)))
    }

    /// Every run this worker holds, in any phase: fetching inputs, preparing its environment, starting, running.
    private var runningRefs: [JobRef] { table.held }

    enum Prepared {
        case ready(EnvBuilder.Ready)
        /// The job was reported (failed, rejected or cancelled): do not start it.
        case stop
    }

    /// Builds (or finds cached) the job's Python environment, streaming the installer's output into the job's log
    /// under a "preparing environment" heading. A build that fails fails the job, refunded in full; a job this
    /// worker's Python cannot run is rejected, so that another worker may take it.
    private func prepareEnvironment(_ ref: JobRef, _ requirements: PythonRequirements) async -> Prepared {
        guard let environments else {
            await reject(ref, reason: "this worker does not build Python environments")
            return .stop
        }
        if let spec = requirements.requiresPython, !PythonVersionSpec.allows(spec, version: environments.interpreter.version) {
            await reject(ref, reason: "the job requires Python \(spec); this worker has Python \(environments.interpreter.version)")
            return .stop
        }
        preparations[ref] = Preparation(ref: ref)
        await preparationOutput(ref, Array("=== preparing environment ===\n".utf8))
        logger.info("preparing environment", metadata: ["grid.job.id": "\(ref.jobId)", "grid.env.digest": "\(requirements.digest.prefix(12))"])
        let ready: EnvBuilder.Ready
        do {
            ready = try await environments.prepare(requirements) { bytes in await self.preparationOutput(ref, bytes) }
        } catch {
            let reason = (error as? GridError)?.message ?? "could not build the job's environment: \(error)"
            await preparationOutput(ref, Array("[\(reason)]\n".utf8))
            if table.isCancelled(ref) || table.phase(of: ref) == nil {
                await reject(ref, reason: "cancelled while its environment was prepared", outcome: .cancelled, refund: true)
            } else if DiskRule.mentionsFloor(reason) {
                // This worker's disk ran low, not the job's doing: it goes back to the queue for another worker.
                await reject(ref, reason: reason)
            } else {
                await reject(ref, reason: reason, outcome: .failed, refund: true)
            }
            return .stop
        }
        logger.info(
            ready.built ? "environment built" : "environment reused",
            metadata: ["grid.job.id": "\(ref.jobId)", "grid.env.key": "\(ready.key)", "grid.env.built": "\(ready.built)"])
        if table.isCancelled(ref) || table.stopping || table.phase(of: ref) == nil {
            environments.release(ready.key)
            await reject(ref, reason: "cancelled while its environment was prepared", outcome: .cancelled, refund: true)
            return .stop
        }
        // A new environment: the next heartbeat (sent at once) tells the manager, before this job's own report.
        if ready.built { loadChanged() }
        await preparationOutput(ref, Array("=== environment ready; starting the job ===\n".utf8))
        return .ready(ready)
    }

    private func preparationOutput(_ ref: JobRef, _ bytes: [UInt8]) async {
        guard var prep = preparations[ref] else { return }
        // The installer's output may take at most half the log; the job's own output keeps the rest.
        let room = config.maxLogBytes / 2 - prep.log.count
        guard room > 0 else { return }
        prep.log += bytes.prefix(room)
        preparations[ref] = prep
        await flushPreparationLog(ref)
    }

    /// Waits until no other task writes run `ref`'s log, and takes the turn (`unlockLog` gives it back). A write to the
    /// manager suspends the actor, and two writes of one log could then reach the connection in either order: after a
    /// reconnect, the re-sent part (from the manager's offset) and a new chunk the job printed meanwhile went out the
    /// wrong way round, and the manager stored a gap (`[40 bytes of log lost in transit]`) and then dropped the late
    /// chunk as already held. One writer at a time keeps each log's chunks in offset order.
    private func lockLog(_ ref: JobRef) async {
        while logWriters[ref] != nil {
            await withCheckedContinuation { logWriters[ref, default: []].append($0) }
        }
        logWriters[ref] = []
    }

    private func unlockLog(_ ref: JobRef) {
        for waiter in logWriters.removeValue(forKey: ref) ?? [] { waiter.resume() }
    }

    private func flushPreparationLog(_ ref: JobRef) async {
        await lockLog(ref)
        defer { unlockLog(ref) }
        guard let out = outbox, let prep = preparations[ref], prep.sent < Int64(prep.log.count) else { return }
        let start = Int(prep.sent)
        preparations[ref]?.sent = Int64(prep.log.count)
        try? await out.write(GridFrame(.jobLog(Msg.JobLog(job: prep.ref, offset: Int64(start))), payload: ByteBuffer(bytes: prep.log[start...])))
    }

    /// Streams a job's output to the manager until it ends, then reports its end.
    private func watch(_ ref: JobRef) async {
        guard let job = jobs[ref] else { return }
        for await chunk in job.execution.output {
            append(ref, chunk)
            await flushLog(ref)
        }
        let report = await job.execution.wait()
        await finish(ref, report: report)
    }

    private func append(_ ref: JobRef, _ chunk: [UInt8]) {
        guard var job = jobs[ref] else { return }
        // Taken out first, so that the log is not copied on each append.
        jobs[ref] = nil
        let room = config.maxLogBytes - job.log.count
        if room >= chunk.count {
            job.log += chunk
        } else if !job.truncated {
            job.log += chunk.prefix(max(0, room))
            job.log += Array("\n[log truncated at \(config.maxLogBytes >> 20) MB]\n".utf8)
            job.truncated = true
        }
        jobs[ref] = job
    }

    private func flushLog(_ ref: JobRef) async {
        await lockLog(ref)
        defer { unlockLog(ref) }
        guard let out = outbox, let job = jobs[ref], job.sent < Int64(job.log.count) else { return }
        let start = Int(job.sent)
        jobs[ref]?.sent = Int64(job.log.count)
        let payload = ByteBuffer(bytes: job.log[start...])
        do {
            try await out.write(GridFrame(.jobLog(Msg.JobLog(job: job.ref, offset: Int64(start))), payload: payload))
        } catch {
            // Re-sent from the manager's offset after the next registration.
        }
    }

    @concurrent nonisolated static func collectOutputs(
        in scratch: URL, globs: [String], inputs: [String: JobFiles.Stamp], maxBytes: Int
    ) async -> (files: [(name: String, data: Data)], skipped: [String], leftOut: Int) {
        JobFiles.collect(in: scratch, globs: globs, inputs: inputs, maxBytes: maxBytes)
    }

    private func finish(_ ref: JobRef, report: RunReport) async {
        guard let job = jobs[ref] else { return }
        // Off the actor: a job's folder may hold thousands of files, and heartbeats and other jobs go on meanwhile.
        let (files, skipped, leftOut) = await Self.collectOutputs(
            in: job.scratch, globs: job.spec.outputs, inputs: job.inputs, maxBytes: config.maxOutputBytes)
        if leftOut > 0 {
            let more = leftOut > skipped.count ? " and \(leftOut - skipped.count) more" : ""
            append(
                ref,
                Array(("\n[\(leftOut) output(s) left out, over the \(config.maxOutputBytes >> 20) MB limit or past \(WorkerClaims.files.upperBound) files "
                    + "(or \(JobFiles.maxOutputNameBytes >> 10) KiB of names): \(skipped.joined(separator: ", "))\(more)]\n").utf8))
        }
        // What became of the outputs saved in the grid goes in the report, not the log (`Msg.JobDone.saved`).
        // A cancelled run saves nothing: it was stopped (by its submitter, or because its lease went to another
        // worker, whose outputs a late save here would replace).
        var saved: [Msg.SavedOutput]?
        if let prefix = job.spec.saveOutputsAs, report.outcome != .cancelled {
            saved = []
            for f in files {
                do {
                    guard let peers else { throw GridError(.unreachable, "this worker offers no peer services") }
                    guard let ticket = job.writeTicket, ticket.user == job.owner else {
                        throw GridError(.forbidden, "the manager gave this run no write ticket for its outputs")
                    }
                    _ = try await peers.storeFile(prefix + f.name, f.data, ticket: ticket)
                    saved?.append(Msg.SavedOutput(name: f.name))
                } catch {
                    logger.warning(
                        "could not save a job's output in the grid",
                        metadata: ["grid.job.id": "\(ref.jobId)", "grid.file": "\(prefix + f.name)", "grid.error": "\(error)"])
                    saved?.append(Msg.SavedOutput(name: f.name, error: Msg.SavedOutput.oneLine("\(error)", maxBytes: Msg.SavedOutput.maxErrorBytes)))
                }
            }
        }
        await flushLog(ref)
        let log = jobs[ref]?.log ?? job.log
        var payload = ByteBuffer()
        for f in files { payload.writeBytes(f.data) }
        var outcome: Msg.Outcome =
            switch report.outcome {
            case .completed: .completed
            case .failed: .failed
            case .timedOut: .timedOut
            case .cancelled: .cancelled
            }
        // Stopped because this worker's disk ran low (not the job's folder alone): the worker's trouble, so the job goes
        // back to the queue for another worker, unpaid, and does not fail.
        if outcome == .failed, let why = report.reason, DiskRule.isFloor(why) { outcome = .rejected }
        var reason = report.reason
        if reason == nil, leftOut > 0 { reason = "output too large: \(leftOut) file(s) left out" }
        let written = Msg.JobDone(
            job: job.ref, outcome: outcome, exitCode: report.exitCode, runtimeMs: report.runtimeMs, peakMemoryKb: report.peakMemoryKb,
            cpuSeconds: report.cpuSeconds, reason: reason, files: files.map { FileEntry(name: $0.name, size: $0.data.count) },
            logBytes: Int64(log.count), saved: saved, publicInputs: job.publicInputs.isEmpty ? nil : job.publicInputs)
        // What the manager would refuse is never sent: it would be kept here, unacknowledged, for good.
        let done = WorkerClaims.fitted(written)
        if done != written {
            logger.error("a job's report was out of the manager's ranges; sent as failed", metadata: ["grid.job.id": "\(ref.jobId)", "grid.reason": "\(done.reason ?? "")"])
            if done.files.isEmpty { payload = ByteBuffer() }
        }
        jobs[ref] = nil
        // Reported before the next await: a reconnect meanwhile re-sends the log's tail and the report (a review: in
        // between, the run was neither running here nor unacknowledged, and its tail was never sent again).
        table.reported(ref, Unacked(done: done, payload: payload, log: log))
        await peers?.setJobsRunning(jobs.count)
        gpuSlots.give(job.gpus)
        if let key = job.envKey { environments?.release(key) }
        recent.append(
            WorkerStatus.Task(
                job: ref.jobId, attempt: ref.attempt, name: job.spec.name, cpus: job.spec.cpus, startedAt: startedAt.removeValue(forKey: ref) ?? 0,
                outcome: outcome.rawValue, exitCode: report.exitCode, runtimeMs: report.runtimeMs))
        if recent.count > 20 { recent.removeFirst(recent.count - 20) }
        settled.ring()
        logger.info(
            "job ended", metadata: ["grid.job.id": "\(ref.jobId)", "grid.job.outcome": "\(outcome.rawValue)", "grid.job.runtime_ms": "\(report.runtimeMs)"])
        try? await outbox?.write(GridFrame(.jobDone(done), payload: payload))
        // After the report: a rootless Podman's folder is removed through `podman unshare`, which takes a while.
        runner.removeFolder(job.scratch)
    }

    // MARK: - Status

    /// What the worker's status page shows: resources, load, sandbox tier, current and recent tasks.
    public func status() -> WorkerStatus {
        WorkerStatus(
            name: config.name, workerId: workerId, connected: outbox != nil, resources: resources, gpuNames: gpuNames, tier: runner.tier,
            sandbox: sandbox,
            slots: config.slots ?? resources.cpus, load: MachineInfo.load(),
            current: jobs.values.sorted { $0.ref.jobId < $1.ref.jobId }.map {
                WorkerStatus.Task(
                    job: $0.ref.jobId, attempt: $0.ref.attempt, name: $0.spec.name, cpus: $0.spec.cpus, startedAt: startedAt[$0.ref] ?? 0,
                    outcome: nil, exitCode: nil, runtimeMs: nil)
            },
            recent: recent.reversed(),
            storage: peers?.storageUse)
    }

    /// The sandbox as this worker reports it.
    var sandbox: SandboxReport {
        config.sandbox ?? SandboxReport(tier: runner.tier, label: runner.label, notes: runner.notes)
    }

    // MARK: - Identity

    static func loadWorkerId(_ dir: String) -> String? {
        guard let data = FileManager.default.contents(atPath: dir + "/worker-id") else { return nil }
        let id = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return id.isEmpty ? nil : id
    }

    static func saveWorkerId(_ id: String, _ dir: String) {
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try? Data((id + "\n").utf8).write(to: URL(fileURLWithPath: dir + "/worker-id"), options: .atomic)
    }
}
