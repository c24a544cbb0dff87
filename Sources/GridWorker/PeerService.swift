import Crypto
import Foundation
import GridClient
import GridCore
import GridPeer
public import GridProtocol
public import GridSandbox
public import Logging
public import NIOCore
public import ServiceLifecycle
import Synchronization

/// A worker's peer services (seed 003): function tasks, distributed memory, distributed files.
///
/// One actor owns the peer's mutable state: membership, the task queue, the memory replicas, uploads, links to other
/// peers. The pure parts decide (`Rendezvous`, `FairQueue`, `MemoryTable`); this actor carries their decisions out.
/// Requests come from `PeerServer`; the manager is reached through the worker's link (`managerLink`).
public actor PeerService: Service {
    /// Who sent a request: a person (its `SESSION`'s certificate, checked here with the manager's key) or another peer
    /// (its credential, checked the same way).
    /// Whom a write is for, and what proves that to the peers that keep it: the person's write grant to this peer, or
    /// the manager's write ticket for a job's outputs.
    public struct Writer: Sendable {
        public var user: String
        public var authority: PeerTrust.Authority
        public init(user: String, authority: PeerTrust.Authority) {
            self.user = user
            self.authority = authority
        }
    }

    public struct Caller: Sendable, Hashable {
        /// The person; empty for a peer (a peer acts for a user only with that user's ticket).
        public var user: String
        /// The worker id a peer proved with its credential; nil for a person.
        public var peer: String?
        /// That peer's credential key: it signs the requests the peer forwards.
        public var peerKey: String?
        /// When that peer's credential expires: a credential given before its manager barred it is refused on each
        /// request (`PeerTrust.Bars`).
        public var peerExpires: Int64?
        /// The certificate a person opened a `SESSION` with: each of their requests needs it to still stand
        /// (`standing(of:)`), so a session opened before its token was revoked does nothing after.
        public var certificate: PeerTrust.UserCertificate?
        /// What that session proves to the peers that keep this person's writes (`PeerTrust.Authority`).
        public var authority: PeerTrust.Authority?
        /// Why the session's write grant is not used, when it came with one this peer will not seal under.
        public var writeRefusal: String?
        /// The connection the requests come on (`PeerServer`): its tasks still queued are dropped when it closes.
        public var connection: Int?
        public var isPeer: Bool { peer != nil }
        public init(
            user: String, peer: String? = nil, peerKey: String? = nil, peerExpires: Int64? = nil, certificate: PeerTrust.UserCertificate? = nil
        ) {
            self.user = user
            self.peer = peer
            self.peerKey = peerKey
            self.peerExpires = peerExpires
            self.certificate = certificate
        }
    }

    /// A reply: a message and, for bulk replies, its bytes.
    public typealias Reply = (message: GridMessage, payload: ByteBuffer?)

    /// A task waiting for its turn; `admit` is resumed with its start order once it may run (the request's own
    /// task then runs it), or with nil when the peer stops first.
    struct QueuedTask: Sendable {
        var id: Int
        var task: Msg.CPUTask
        var connection: Int?
        var admit: CheckedContinuation<Int?, Never>
    }

    /// How a push of memory entries to one peer ended.
    enum PushOutcome: Sendable, Equatable {
        case stored
        /// The peer holds a newer version of one of the entries: this write lost.
        case lost
        /// The peer has no room for some of the entries (their owner's share, or the peer, is full): why, and which
        /// keys (the others are stored).
        case refused(String, keys: Set<String>)
        /// The peer would not keep some of the entries for what they are (their seal, version or size): why, and which.
        case forbidden(String, keys: Set<String>)
        case failed
    }

    /// Memory writes waiting to go to one peer (see `push`).
    struct SyncQueue {
        var groups: [(entries: [Msg.MemEntry], bytes: Int, continuation: CheckedContinuation<PushOutcome, Never>)] = []
        var sending = false
    }

    struct Upload {
        var filename: String
        var user: String
        var isPublic: Bool
        var size: Int64
        var next = 0
        /// The whole file's SHA-256, fed in chunk order and computed off the actor.
        let hasher = OrderedHasher()
        /// Each chunk's hash once stored (`""` before); sized at the first chunk.
        var chunks: [String] = []
        /// Chunks that arrived ahead of `next`, kept until the whole-file hash reaches them.
        var early: [Int: ByteBuffer] = [:]
        var lastUsed: Double
        /// Who writes the manifest, and the version and credential it is sealed with: the upload's start, under the
        /// write grant of that moment (an upload may outlast the grant, which counts for an hour).
        var writer: Writer
        var stamp: Stamp
    }

    /// The version an entry is sealed with, and the credential that seals it.
    struct Stamp: Sendable {
        var version: Int64
        var credential: PeerTrust.Credential
    }

    let config: PeerConfig
    /// Runs the function tasks (`FunctionPool`: warm interpreters).
    let pool: any FunctionRunner
    /// Builds the Python environments tasks declare (`CPU_TASK.requirements`); the worker's own, shared with its jobs.
    private var environments: EnvBuilder?
    let chunks: ChunkStore
    /// The chunks held here as the last repair pass counted them (`chunksHeld()`).
    var chunkCount: Int
    let logger: Logger
    private(set) var selfId: String?
    private(set) var members: [Msg.PeerInfo] = []
    /// When the membership last changed (`uptime()`); nil until the manager first announced it.
    private(set) var membershipChangedAt: Double?
    private var managerLink: (@Sendable (GridMessage) async throws -> GridMessage)?

    // Trust (see `PeerTrust`).
    /// This worker's own key: its credentials name the public half; it signs handshake proofs and forwarded requests.
    let signer = PeerTrust.Signer()
    /// The manager's public key, from `HELLO_OK`.
    private(set) var managerKey: String?
    /// Checks the seals of entries other peers send (`MEM_SYNC`, answers to `MEM_FETCH`), remembering good parts.
    var sealChecker: PeerTrust.SealChecker?
    /// The signature checks each peer's failed entries have cost lately (`SealStrikes`).
    var sealStrikes = SealStrikes()
    /// This worker's current credential, from `REGISTERED` or `CREDENTIAL`.
    private(set) var credential: PeerTrust.Credential?
    /// The newest forwarding ticket per user, from `SESSION`: lets this peer forward that user's tasks.
    var tickets: [String: PeerTrust.Ticket] = [:]
    /// The newest mandate per user (`SESSION`'s delegation): lets this peer read that user's data from other peers.
    var mandates: [String: PeerTrust.Mandate] = [:]
    /// Jobs' read tickets per owner (`JOB_ASSIGN`), kept apart: each reads only its job's files, and never stands in
    /// for a session's mandate.
    var readTickets: [String: [PeerTrust.Ticket]] = [:]
    private var onLoadChange: (@Sendable () -> Void)?

    // Function tasks.
    var queue = FairQueue<QueuedTask>()
    /// Tasks handed to the pool: up to the slots running, and up to its `lookahead` more waiting there to start the
    /// moment a slot frees (their users, by serial).
    var running = 0
    var handedOver: [Int: String] = [:]
    /// The confidential tasks among those handed over, and those waiting by user: left out of what this peer tells the
    /// manager and other callers (`taskLoad`, `PEER_STATUS`), and no load change is said for them.
    var confidentialSerials: Set<Int> = []
    var confidentialWaiting: [String: Int] = [:]
    var startedCount = 0
    var doneCount = 0
    var nextTaskSerial = 0
    /// Grid jobs running on this worker (they take slots too).
    var jobsRunning = 0
    /// Ends when the peer stops (`run()` waits for it).
    private let stopped: AsyncStream<Never>
    private let stopContinuation: AsyncStream<Never>.Continuation
    private var stopping = false

    // Memory and files.
    let memory: LocalReplicas
    var clock = VersionClock()
    var uploads: [String: Upload] = [:]
    /// Manifests read in the last 5 s, by stored key, with a public one's publisher.
    var manifestCache: [String: (manifest: Msg.FileManifest, publisher: String?, at: Double)] = [:]
    /// Chunks of files being stored now, by operation (`pin(_:under:)`), and the last pin given.
    var pinnedChunks: [Int: [String]] = [:]
    var nextPin = 0
    /// When this peer last renewed the leases of the chunks its manifests name (`renewChunkLeases`).
    var leaseScannedAt: Double?
    /// Peers whose `CHUNK_REFS`, and whose `CHUNK_KEEP`, is being answered: one of each at a time from each.
    var chunkQuestions: Set<String> = []
    var chunkRenewals: Set<String> = []
    var outgoingSync: [String: SyncQueue] = [:]
    /// Peers with writes waiting to be sent: each is drained by a task of `run()`'s group (`syncLoop`).
    private let drains: AsyncStream<String>
    let drainContinuation: AsyncStream<String>.Continuation

    // Other peers and clients.
    private var links: [String: PeerLink] = [:]
    /// What the manager said of the tokens people's certificates were granted under (`PeerTrust.Standing`). Behind a
    /// lock: the server's fast path reads it on the event loop (`stands(_:)`).
    private let tokenStanding = Mutex(PeerTrust.Standing.Memo())
    /// Sessions waiting for the answer to an ask in flight about their token: one ask per token at a time, however many
    /// of that person's requests need it at once.
    private var standingWaiters: [String: [CheckedContinuation<GridError?, Never>]] = [:]

    /// Whether `caller`'s certificate, if any, is known to stand now (no ask): the fast path serves only such callers.
    nonisolated func stands(_ caller: Caller) -> Bool {
        let now = Self.nowS()
        if let certificate = caller.certificate, PeerTrust.sessionLapsed(certificate: certificate, now: now) { return false }
        guard let token = caller.certificate?.tokenHash else { return true }
        return tokenStanding.withLock { $0.verdict(token: token, now: now) } == .stands
    }
    private let repairs: AsyncStream<Void>
    private let repairContinuation: AsyncStream<Void>.Continuation

    /// TLS on links to other peers, and on this peer's own port (`PeerServer`), on a TLS grid.
    public nonisolated let tls: PeerTLSSwitch

    public init(config: PeerConfig, launch: FunctionPool.Launch, logger: Logger, tls: PeerTLSSwitch = PeerTLSSwitch(required: false)) throws {
        try self.init(config: config, functions: FunctionPool(launch: launch, size: config.slots), logger: logger, tls: tls)
    }

    /// With `functions` running the function tasks (the in-process test grid gives a scripted one).
    public init(config: PeerConfig, functions: any FunctionRunner, logger: Logger, tls: PeerTLSSwitch = PeerTLSSwitch(required: false)) throws {
        self.tls = tls
        self.config = config
        self.logger = logger
        self.pool = functions
        self.memory = LocalReplicas(replicas: config.replicas, budget: config.memoryBudget)
        self.chunks = try ChunkStore(root: config.dataDirectory + "/chunks", budget: config.diskBudget)
        self.chunkCount = chunks.countedAtStart
        (stopped, stopContinuation) = AsyncStream<Never>.makeStream()
        (repairs, repairContinuation) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        (drains, drainContinuation) = AsyncStream<String>.makeStream()
    }

    // MARK: - Wiring

    /// How to ask the manager (through the worker's link) and how to tell the worker that the task load changed.
    public func connect(
        manager: @escaping @Sendable (GridMessage) async throws -> GridMessage, onLoadChange: @escaping @Sendable () -> Void
    ) {
        managerLink = manager
        self.onLoadChange = onLoadChange
    }

    /// The manager gave this worker its id; `owner`: the user it belongs to (whose tasks run here whatever the tier).
    public func setIdentity(_ id: String, owner: String? = nil) {
        selfId = id
        if let owner { ownerName = owner }
        memory.setView(selfId: selfId, peers: memberIds)
    }

    /// The public half of this worker's own key, sent to the manager in `HELLO`.
    public nonisolated var publicKey: String { signer.publicKey }

    /// The manager's key (from `HELLO_OK`) and this worker's credential (from `REGISTERED`).
    public func setTrust(managerKey: String?, credential: PeerTrust.Credential?) {
        if let managerKey { self.managerKey = managerKey }
        if let credential { self.credential = credential }
    }

    /// Asks the manager for a fresh credential when less than half of this one's life is left.
    func renewCredential() async {
        guard PeerTrust.needsRenewal(credential, now: Self.nowS()), let managerLink else { return }
        do {
            if case .credential(let grant) = try await managerLink(.credential(Msg.CredentialGrant())), let c = grant.credential {
                credential = c
            }
        } catch {
            logger.info("could not renew the peer credential", metadata: ["grid.error": "\(error)"])
        }
    }

    static func nowS() -> Int64 { Int64(Date().timeIntervalSince1970) }
    /// Seconds on a monotonic clock.
    static func uptime() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

    /// The manager announced the online peers.
    public func membership(_ peers: [Msg.PeerInfo], barred: [Msg.PeerBar] = []) {
        let change = Membership.change(
            previous: members.map(\.workerId), announced: peers.map(\.workerId), selfId: selfId, linked: Array(links.keys))
        members = peers
        if change.changed || membershipChangedAt == nil {
            membershipChangedAt = Self.uptime()
            // Chunks may have new owners: their leases are renewed there at the next pass.
            leaseScannedAt = nil
        }
        self.bars = PeerTrust.Bars(barred)
        // A link to a barred worker is closed (it is no member either, so it went above unless it was never one).
        for id in links.keys where bars.before[id] != nil {
            if let link = links.removeValue(forKey: id) { link.close() }
        }
        memory.setView(selfId: selfId, peers: memberIds)
        for id in change.departed {
            if let link = links.removeValue(forKey: id) { link.close() }
        }
        // Mandates shown by, or to, peers that left are forgotten with them.
        let online = Set(memberIds)
        shownMandates.keepOnly(peers: online)
        mandatesShown = mandatesShown.filter { online.contains($0.key) }
        if change.changed {
            logger.info("peers changed", metadata: ["grid.peers": "\(peers.map(\.workerId))"])
            repairContinuation.yield()
        }
    }

    /// Workers the manager said are no peers for cause (`PEERS {barred}`): the credentials given to them before are
    /// refused here, at `PEER_AUTH` and on each request of a connection they opened with one.
    private var bars = PeerTrust.Bars()

    /// Why peer `id`, proven with a credential that expires at `expires`, is refused now, or nil.
    private func barring(_ id: String, expires: Int64?) -> GridError? {
        guard bars.refuses(worker: id, credentialExpires: expires ?? .min) else { return nil }
        return GridError(.forbidden, "worker \(id.prefix(64)) is no peer (its manager barred it: join token revoked, or quarantined)")
    }

    /// The last decision to keep a task here after asking the manager (`GET_BEST_PEER`), reused for a moment
    /// (`TaskRouting.reusable`, `keeps`), with when its ask began.
    private var lastBestPeer: TaskRouting.Answer?
    /// Users' tickets of forwarded tasks whose manager signature was already checked.
    private var goodTickets = PeerTrust.TicketMemo()
    /// Mandates of peers reading here whose signatures were already checked.
    private var goodMandates = PeerTrust.MandateMemo()
    /// Mandates other peers showed with a `MEM_FETCH`, checked, by peer and reference (at most 256 per peer): a peer
    /// that reads again for the same person sends the reference alone.
    private var shownMandates = PeerTrust.ShownMandates()
    /// The references of the mandates this peer showed each other peer (see `shownMandates`).
    var mandatesShown: [String: Set<String>] = [:]
    /// Requirement lines already parsed, by their exact text: a user's tasks repeat the same few sets, and parsing one
    /// (PEP 508) was a tenth of what a task with packages adds to a round trip. Bounded; lines that fail are not kept.
    private var parsedRequirements: [[String]: PythonRequirements] = [:]
    static let parsedRequirementsLimit = 64
    /// Function tasks queued or running here (reported to the manager for `GET_BEST_PEER`).
    /// Tasks queued or running here, as the manager is told (`LOAD_UPDATE`): confidential ones left out, as their
    /// existence never leaves this machine.
    public func taskLoad() -> Int { max(0, running + queue.count - confidentialSerials.count - confidentialWaiting.values.reduce(0, +)) }

    /// The worker started or finished a job.
    public func setJobsRunning(_ count: Int) { jobsRunning = count }

    /// Whether a task given now would start at once: a slot is free of jobs and tasks, and nothing waits.
    var hasFreeSlot: Bool { TaskRouting.hasFreeSlot(jobsRunning: jobsRunning, tasksRunning: running, queued: queue.count, slots: config.slots) }

    /// Ids of the online peers (this one included once known).
    var memberIds: [String] {
        Membership.change(previous: [], announced: members.map(\.workerId), selfId: selfId, linked: []).members
    }

    func info(of id: String) -> Msg.PeerInfo? { members.first { $0.workerId == id } }

    // MARK: - Running

    public func run() async throws {
        pool.warm()
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                group.addTask { await self.repairLoop() }
                group.addTask { await self.syncLoop() }
                for await _ in stopped {}
                group.cancelAll()
            }
        } onGracefulShutdown: {
            Task { await self.shutdown() }
        }
        // Stopped or cancelled: the tasks still waiting for a slot are answered, and none starts.
        shutdown()
    }

    private func shutdown() {
        stopping = true
        pump()  // the queued tasks end: none starts now
        stopContinuation.finish()
        repairContinuation.finish()
        drainContinuation.finish()
        pool.shutdown()
    }

    /// Drains each peer's waiting writes (`push`), one drain per peer at a time, all owned by `run()`.
    private func syncLoop() async {
        await withDiscardingTaskGroup { group in
            for await peer in drains { group.addTask { await self.drainSync(to: peer) } }
        }
    }

    private func repairLoop() async {
        // Whatever the configuration says, a period that does not trap (`Int64(.infinity)` does).
        let period = config.repairSeconds.isFinite ? min(max(config.repairSeconds, 0.01), 86_400) : 30
        let ticker = Task { [repairContinuation] in
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(Int64(period * 1000)))
                repairContinuation.yield()
            }
        }
        defer { ticker.cancel() }
        for await _ in repairs {
            guard selfId != nil else { continue }
            await renewCredential()
            await rebalanceMemory()
            // Before the repair pass: a chunk no file names is not copied again to the peers that just let it go.
            await renewChunkLeases()
            await reclaimChunks()
            await repairChunks()
        }
    }

    // MARK: - Requests

    /// A person's `SESSION`: its certificate (the manager's) and its key's signature over this peer's id and our
    /// `nonce`, checked offline with the manager's key, so sessions open while no manager is reachable. The person's
    /// API token never comes here. The forwarding ticket, when newer than the one kept, lets this peer hand the
    /// person's tasks on.
    func authenticateSession(_ session: Msg.Session, nonce: String) async -> Result<Caller, GridError> {
        guard let managerKey, let selfId else { return .failure(GridError(.unreachable, "this peer does not know its manager's key yet; try again")) }
        if let e = PeerTrust.check(session, managerKey: managerKey, holder: selfId, nonce: nonce, now: Self.nowS()) {
            logger.warning("refused a session", metadata: ["grid.user": "\(TerminalText.field(session.certificate.user))", "grid.error": "\(e.message)"])
            return .failure(e)
        }
        if let e = await standing(of: session.certificate) { return .failure(e) }
        let user = session.certificate.user
        if let forward = session.forward, forward.files == nil { keep(forwarding: forward) }
        // Reads only with the person's delegation: a forwarding ticket lets this peer hand tasks on, not read their data.
        if let delegation = session.delegation { keep(PeerTrust.Mandate(certificate: session.certificate, delegation: delegation)) }
        var caller = Caller(user: user, certificate: session.certificate)
        if let grant = session.writeGrant {
            if let why = PeerTrust.grantRefusal(grant, now: Self.nowS()) { caller.writeRefusal = why } else { caller.authority = .session(session) }
        }
        return .success(caller)
    }

    /// Why the API token `certificate` was granted under no longer stands, or nil while it does (`PeerTrust.Standing`):
    /// asked of the manager when not known (at most once per `authCacheSeconds` for a token that stands), the answer
    /// kept. With no manager reachable, or none answering, it stands: the grid works through an outage, as a
    /// certificate is checked offline, and a revocation reaches this peer once the manager answers again (an ask that
    /// failed counts as a standing answer, so it is not repeated for every session meanwhile).
    func standing(of certificate: PeerTrust.UserCertificate) async -> GridError? {
        guard let token = certificate.tokenHash else { return nil }
        let refusal = PeerTrust.Standing.revoked
        switch tokenStanding.withLock({ $0.verdict(token: token, now: Self.nowS()) }) {
        case .stands: return nil
        case .revoked: return refusal
        case .ask: break
        }
        guard let managerLink else { return nil }
        // A caller already cancelled (its connection closed) starts no ask: the ask would run without its timeout, and
        // others of the same person would wait on it.
        if Task.isCancelled { return GridError(.unreachable, "the request was cancelled before its session could be checked") }
        if standingWaiters[token] != nil {
            return await withCheckedContinuation { standingWaiters[token, default: []].append($0) }
        }
        standingWaiters[token] = []
        let answer = await askStanding(certificate, token: token, managerLink: managerLink)
        for waiter in standingWaiters.removeValue(forKey: token) ?? [] { waiter.resume(returning: answer) }
        return answer
    }

    /// How many sessions wait on the ask in flight about `token` (nil: none is in flight). For tests.
    func waitingOnStanding(token: String) -> Int? { standingWaiters[token]?.count }

    /// Asks the manager whether `certificate`'s token stands, and keeps the answer (`standing(of:)`).
    private func askStanding(
        _ certificate: PeerTrust.UserCertificate, token: String, managerLink: @Sendable (GridMessage) async throws -> GridMessage
    ) async -> GridError? {
        let refusal = PeerTrust.Standing.revoked
        let standsFor = config.authCacheSeconds.isFinite ? Int64(max(0, min(config.authCacheSeconds, 3600))) : 60
        do {
            guard case .authOk(let ok) = try await managerLink(.authCheck(Msg.AuthCheck(certificate: certificate))), ok.user == certificate.user else {
                return nil
            }
            tokenStanding.withLock { $0.record(token: token, stands: true, now: Self.nowS(), standsFor: standsFor, certificateExpires: certificate.expires) }
            return nil
        } catch let e as GridError where e.code == .unauthorized {
            tokenStanding.withLock { $0.record(token: token, stands: false, now: Self.nowS(), standsFor: standsFor, certificateExpires: certificate.expires) }
            dropMandates(grantedUnder: token)
            logger.warning("refused a revoked certificate", metadata: ["grid.user": "\(certificate.user.prefix(64))", "grid.error": "\(e.message)"])
            return refusal
        } catch {
            // Kept as an answer too: a manager that is slow to answer (frozen, say) holds up one session a minute per
            // token, not every one.
            tokenStanding.withLock { $0.record(token: token, stands: true, now: Self.nowS(), standsFor: standsFor, certificateExpires: certificate.expires) }
            logger.info("the manager did not say whether a certificate stands; it does meanwhile", metadata: ["grid.error": "\(error)"])
            return nil
        }
    }

    /// A person accepted (by `SESSION`) is told so with `HELLO_OK {worker_id, owner}`.
    func welcome(_ result: Result<Caller, GridError>) -> Result<(Caller, GridMessage), GridError> {
        result.map { ($0, .helloOk(Msg.HelloOk(version: ProtocolVersion.current, workerId: selfId ?? "", owner: $0.user, heartbeatSeconds: 0))) }
    }

    /// Keeps forwarding ticket `ticket` when it outlasts the one kept for its user (expired ones go when many are kept).
    func keep(forwarding ticket: PeerTrust.Ticket) {
        guard ticket.expires > tickets[ticket.user]?.expires ?? .min else { return }
        if tickets.count > 10_000 {
            let now = Self.nowS()
            tickets = tickets.filter { $0.value.expires > now }
        }
        tickets[ticket.user] = ticket
    }

    /// Forgets the mandates kept for reading whose certificate was granted under revoked token `token`: the next
    /// session's takes their place (other peers refuse them anyway).
    private func dropMandates(grantedUnder token: String) {
        for (user, m) in mandates where m.certificate?.tokenHash == token { mandates[user] = nil }
    }

    /// Keeps `mandate` when it outlasts the one kept for its user (checked already: it came with a session, from the
    /// manager, or with a job).
    func keep(_ mandate: PeerTrust.Mandate) {
        guard let user = mandate.user, mandate.ticket?.files == nil, mandate.expires > mandates[user]?.expires ?? .min else { return }
        if mandates.count > 10_000 {
            let now = Self.nowS()
            mandates = mandates.filter { $0.value.expires > now }
        }
        mandates[user] = mandate
    }

    /// A job's `JOB_ASSIGN` ticket for its owner (the manager's, for this worker): this peer reads the owner's grid
    /// files with it.
    public func adopt(_ ticket: PeerTrust.Ticket) {
        let now = Self.nowS()
        guard ticket.files != nil, let managerKey, let selfId, PeerTrust.check(ticket, managerKey: managerKey, holder: selfId, now: now) == nil else {
            return
        }
        if readTickets.count > 10_000 { readTickets = readTickets.filter { $0.value.contains { $0.expires > now } } }
        readTickets[ticket.user] = (readTickets[ticket.user, default: []].filter { $0.expires > now } + [ticket]).suffix(64)
    }

    /// The mandate to read stored key (or list prefix) `stored` with: none for a public one; the session's mandate of
    /// its owner when this peer holds one, else a job's read ticket that names that very file.
    func mandate(for stored: String) -> PeerTrust.Mandate? {
        guard let user = PeerNamespace.owner(of: stored) else { return nil }
        let now = Self.nowS()
        if let m = mandates[user], m.expires > now { return m }
        return readTickets[user]?.last { $0.expires > now && PeerNamespace.mayRead(stored, for: user, files: $0.files) }.map { PeerTrust.Mandate(ticket: $0) }
    }

    /// Whom a `MEM_FETCH` reads for: its mandate's person, checked and then kept under the mandate's reference for the
    /// calling peer; or the person of a mandate that peer showed before, named by its reference (until it expires).
    private func fetchReader(_ m: Msg.MemFetch, caller: Caller) async throws -> PeerTrust.Reader? {
        guard let peer = caller.peer else { return nil }
        if let mandate = m.mandate {
            let reader = try await reader(mandate, caller: caller)
            if let reader { shownMandates.keep(mandate, reader: reader, from: peer, now: Self.nowS()) }
            return reader
        }
        guard let ref = m.mandateRef else { return nil }
        guard let reader = shownMandates.reader(ref, from: peer, now: Self.nowS()) else {
            throw GridError(.mandateUnknown, "this peer holds no mandate of that reference from \(peer) (it restarted, or it expired): send the mandate")
        }
        if let certificate = reader.certificate, let e = await standing(of: certificate) { throw GridError(.forbidden, e.message) }
        return reader
    }

    /// Whom a reading peer reads for: nobody without a mandate; the mandate's person (and files) when it is good.
    /// A person's certificate in a mandate must still stand (`standing(of:)`): a key and certificate copied from a
    /// person who then logged out read nothing.
    private func reader(_ mandate: PeerTrust.Mandate?, caller: Caller) async throws -> PeerTrust.Reader? {
        guard let mandate else { return nil }
        guard let managerKey, let peer = caller.peer else { throw GridError(.unreachable, "this peer does not know its manager's key yet") }
        let reader = try goodMandates.check(mandate, managerKey: managerKey, holder: peer, now: Self.nowS()).get()
        if let certificate = reader.certificate, let e = await standing(of: certificate) { throw GridError(.forbidden, e.message) }
        return reader
    }

    /// Another peer said `HELLO {nonce}`: our answer proves who we are (credential, signature over its nonce) and
    /// carries a nonce of ours for its `PEER_AUTH`.
    func peerHello(nonce: String) async -> Result<Msg.HelloOk, GridError> {
        guard PeerTrust.nonceBytes.contains(nonce.utf8.count) else { return .failure(GridError(.badRequest, "the nonce must be 16–128 bytes")) }
        await renewCredential()
        guard let selfId, let credential, credential.expires > Self.nowS() else {
            return .failure(GridError(.unreachable, "this peer has no valid credential from its manager yet; try again"))
        }
        return .success(
            Msg.HelloOk(
                version: ProtocolVersion.current, workerId: selfId, owner: "", heartbeatSeconds: 0, credential: credential,
                proof: signer.proof(nonce: nonce, workerId: selfId, role: .server), nonce: PeerTrust.nonce()))
    }

    /// A connecting peer's `PEER_AUTH`: a credential the manager signed and its signature over our `nonce`.
    /// `link`: what the connection's TLS certificate (if any) says of the peer at its other end.
    func authenticatePeer(_ auth: Msg.PeerAuth, nonce: String, link: PeerTrust.LinkIdentity) -> Result<Caller, GridError> {
        guard let managerKey, let selfId else { return .failure(GridError(.unreachable, "this peer does not know its manager's key yet")) }
        if let e = PeerTrust.checkClient(
            credential: auth.credential, proof: auth.proof, nonce: nonce, managerKey: managerKey, now: Self.nowS(), audience: selfId, link: link)
        {
            logger.warning("refused a peer", metadata: ["grid.worker.id": "\(TerminalText.field(auth.credential.workerId))", "grid.error": "\(e.message)"])
            return .failure(e)
        }
        if let e = barring(auth.credential.workerId, expires: auth.credential.expires) {
            logger.warning("refused a barred peer", metadata: ["grid.worker.id": "\(TerminalText.field(auth.credential.workerId))"])
            return .failure(e)
        }
        return .success(Caller(user: "", peer: auth.credential.workerId, peerKey: auth.credential.key, peerExpires: auth.credential.expires))
    }

    /// One request of an authenticated caller → its reply. Never throws: failures become `ERROR`.
    func handle(_ message: GridMessage, payload: ByteBuffer?, caller: Caller) async -> Reply {
        guard let selfId else {
            return (.error(Msg.Error(GridError(.unreachable, "this peer has not registered with its manager yet; try again"))), nil)
        }
        do {
            guard let request = PeerPortRequest(message) else {
                throw GridError(.badRequest, "\(message.type) is not a request a peer answers")
            }
            // A person's session stands only while the token its certificate was granted under does; a peer's only
            // while its manager has not barred it.
            // Nor does a session outlive its certificate, or a peer's link both its credential and its membership (a
            // worker that left, or whose bar has lapsed with its credential, kept an idle link open and was served again).
            let now = Self.nowS()
            if let certificate = caller.certificate, PeerTrust.sessionLapsed(certificate: certificate, now: now) {
                throw GridError(.unauthorized, "this session's certificate expired; open a new session")
            }
            if let certificate = caller.certificate, let e = await standing(of: certificate) { throw e }
            if let peer = caller.peer, let e = barring(peer, expires: caller.peerExpires) { throw e }
            if let peer = caller.peer, PeerTrust.peerLinkLapsed(credentialExpires: caller.peerExpires, isMember: members.contains { $0.workerId == peer }, now: now) {
                throw GridError(.forbidden, "worker \(peer.prefix(64)) is no peer now and its credential expired; it must connect again")
            }
            switch request {
            case .ping: return (.pong, nil)
            case .getPeerStatus: return (.peerStatus(status(selfId, viewer: caller.isPeer ? nil : caller.user)), nil)
            case .cpuTask(let task): return (.cpuResult(try await cpuTask(task, caller: caller)), nil)
            // Replication between peers: only a peer that proved its credential.
            case .memSync(let m):
                try requirePeer(caller, message)
                guard m.entries.count <= Self.maxSyncEntries else {
                    throw GridError(.badRequest, "a MEM_SYNC carries at most \(Self.maxSyncEntries) entries (got \(m.entries.count))")
                }
                // A peer whose entries failed their checks too often lately is refused unchecked for a while: each
                // costs a signature check or more (`SealStrikes`).
                let sender = caller.peer ?? ""
                let clock = Date().timeIntervalSince1970
                if sealStrikes.allowance(of: sender, now: clock) == 0 {
                    let wait = Int((sealStrikes.windowEnds(for: sender, now: clock) ?? clock) - clock) + 1
                    throw GridError(
                        .rateLimited,
                        "this peer sent too many entries with bad seals in the last \(Int(SealStrikes.window)) s; MEM_SYNC is refused for \(wait) s more")
                }
                // Every entry must carry its writer's seal, for a person who may write that key. One that does not is
                // refused alone, with its reason, as one over the budget is: a batch carries many people's writes,
                // and one bad entry must not hold up the rest.
                var unsealed: [String: String] = [:]
                let nowMs = Self.nowMs()
                var sealed: [Msg.MemEntry] = []
                var toCheck: [Msg.MemEntry] = []
                var unchanged: [Msg.MemEntry] = []
                for e in m.entries {
                    // A version out of range, an entry over the limits: refused alone too (a writer whose clock runs
                    // ahead must not fail everyone's writes in its batches).
                    if let why = VersionRules.check(e.version, nowMs: nowMs) ?? EntryRules.check(key: e.key, origin: e.origin, value: e.value, encodedSize: Self.encodedSize) {
                        unsealed[e.key] = why.message
                        continue
                    }
                    // The very entry held here (a repair pass sends every key to its other owners each time) was
                    // checked when it came: not checked again.
                    if let held = memory.get(e.key), held.version == e.version, held.origin == e.origin, held.seal == e.seal {
                        unchanged.append(e)
                        continue
                    }
                    toCheck.append(e)
                }
                // The signatures off the actor, on either core (a batch of 1,000 is that many Ed25519 checks); what
                // this peer holds, and who owns what, here, again, just before the entries are kept.
                var writers: [String: String] = [:]
                for (e, result) in zip(toCheck, try await checkSeals(toCheck, from: sender)) {
                    switch result {
                    case .failure(let why): unsealed[e.key] = why.message
                    case .success(let person):
                        if let why = keepRule(e, sealed: person, storing: true) {
                            unsealed[e.key] = why.message
                        } else {
                            sealed.append(e)
                            writers[e.key] = person.user
                        }
                    }
                }
                // The very entry still held: nothing to do. One replaced while the others were checked (the actor ran
                // other work meanwhile) is checked now against what is held: a copy passed unchecked landed over the
                // newer write that had taken its place, past the rule that would have refused it.
                for e in unchanged {
                    if let held = memory.get(e.key), held.version == e.version, held.origin == e.origin, held.seal == e.seal { continue }
                    if let why = checkSeal(of: e, storing: true) { unsealed[e.key] = why.message } else { sealed.append(e) }
                }
                if !unsealed.isEmpty {
                    logger.info(
                        "refused memory entries without a good seal",
                        metadata: ["grid.worker.id": "\(caller.peer ?? "")", "grid.keys": "\(unsealed.count)", "grid.error": "\(unsealed.values.min() ?? "")"])
                }
                // The writer learns which of its entries lost, and to which version, never the value that won: any
                // proven peer may send a MEM_SYNC (an old version of any key), and reading a key needs a mandate. It
                // learns too which did not fit this peer's budget, and why: a proven peer cannot fill this one either.
                var applied = memory.apply(sealed, writers: writers)
                applied.refused.merge(unsealed) { kept, _ in kept }
                if applied.allKept { return (.ok(Msg.Ok()), nil) }
                let lost = applied.lost.map { Msg.MemEntry(key: $0.key, value: nil, version: $0.version, origin: $0.origin) }
                return (
                    .memEntries(
                        Msg.MemEntries(
                            entries: lost, refused: applied.refused.isEmpty ? nil : applied.refused, forbidden: unsealed.isEmpty ? nil : unsealed.keys.sorted())),
                    nil
                )
            case .memFetch(let m):
                try requirePeer(caller, message)
                // A peer reads public names, and the private ones of the person whose mandate it shows (or showed before,
                // and names by its reference): no others.
                let reader = try await fetchReader(m, caller: caller)
                if let other = m.keys.prefix(1000).first(where: { !PeerNamespace.mayRead($0, for: reader?.user, files: reader?.files) }) {
                    throw GridError(.forbidden, "MEM_FETCH of another user's key (\(PeerNamespace.owner(of: other) ?? "?")) needs their mandate")
                }
                return (.memEntries(Msg.MemEntries(entries: try Self.fetchAnswer(keys: m.keys.prefix(1000), lookup: { memory.get($0) }))), nil)
            case .listMem(let m) where caller.isPeer:
                // A peer lists this peer's stored keys under a public prefix, or a prefix of the person whose mandate
                // it shows.
                let prefix = m.prefix ?? ""
                let reader = try await reader(m.mandate, caller: caller)
                guard PeerNamespace.mayRead(prefix, for: reader?.user, files: reader?.files) else {
                    throw GridError(.forbidden, "LIST_MEM of another user's keys (\(PeerNamespace.owner(of: prefix) ?? "all")) needs their mandate")
                }
                let keys = PeerNamespace.listable(memory.keys(prefix: prefix), for: reader?.user, files: reader?.files)
                return (.memKeys(Msg.MemKeys(fitting: keys)), nil)
            case .chunkPut(let m):
                try requirePeer(caller, message)
                guard let payload else { throw GridError(.badRequest, "CHUNK_PUT needs the chunk as bulk bytes") }
                // No file's chunk is larger (`PeerNames.isConsistent`): a larger one is no chunk of any file, and each
                // read of it (its hash checked) would cost a peer that much.
                guard payload.readableBytes <= PeerNames.chunkSize else {
                    throw GridError(.badRequest, "a chunk holds at most \(PeerNames.chunkSize) bytes (got \(payload.readableBytes))")
                }
                // Checked (hashed) and written off the actor: other requests go on meanwhile.
                let store = chunks
                let hash = m.hash
                // At most half a lease of age is taken over (a sender's clock set back cannot make the copy due).
                let oldest = Int64(Date().timeIntervalSince1970 - ChunkReclaim.maxInheritedAge(lease: config.chunkLeaseSeconds))
                let storedAt = m.storedAt.map { max($0, oldest) }
                let failure = await Self.offActor { () -> GridError? in
                    do {
                        try store.put(hash, payload, storedAt: storedAt)
                        return nil
                    } catch let e as GridError { return e } catch { return GridError(.internal, "could not store the chunk: \(error)") }
                }
                if let failure { throw failure }
                return (.ok(Msg.Ok()), nil)
            case .chunkGet(let m):
                try requirePeer(caller, message)
                // Read and hashed off the actor (4 MiB each), as CHUNK_PUT is: the peer's other requests go on.
                let store = chunks
                let hash = m.hash
                guard let bytes = await Self.offActor({ try? store.readBuffer(hash) }) else {
                    throw GridError(.notFound, "this peer has no intact copy of chunk \(m.hash.prefix(12))…")
                }
                return (.chunkData(Msg.ChunkData(hash: m.hash)), bytes)
            case .chunkHas(let m):
                try requirePeer(caller, message)
                // Up to 10,000 looks at the disk: off the actor too.
                let store = chunks
                let asked = Array(m.hashes.prefix(10_000))
                return (.chunkHave(Msg.ChunkHashes(hashes: await Self.offActor { asked.filter { store.has($0) } })), nil)
            case .chunkRefs(let m):
                try requirePeer(caller, message)
                let asker = try oneChunkQuestion(caller, message, in: &chunkQuestions)
                defer { chunkQuestions.remove(asker) }
                let asked = Array(m.hashes.prefix(ChunkReclaim.maxPerRound))
                return (.chunkUsed(Msg.ChunkRefs(hashes: await chunksInUse(among: asked), members: membershipDigest)), nil)
            case .chunkKeep(let m):
                try requirePeer(caller, message)
                // A slot of its own: a slow question never holds up a renewal.
                let asker = try oneChunkQuestion(caller, message, in: &chunkRenewals)
                defer { chunkRenewals.remove(asker) }
                return (.ok(Msg.Ok(detail: "\(await keepChunks(m.hashes))")), nil)
            // Everything else is a person's request, on their own data.
            case .getBestPeer:
                _ = try person(caller, message)
                guard let managerLink else { throw GridError(.unreachable, "this peer is not connected to its manager") }
                // No task id: a user's question sends no task anywhere, so the manager counts none on the peer it names.
                return (try await managerLink(.getBestPeer(Msg.GetBestPeer(taskId: nil, prefer: selfId))), nil)
            case .setMem(let m):
                return (.memResult(try await setMem(m.key, m.value, isPublic: m.isPublic ?? false, as: try writer(caller, message))), nil)
            case .getMem(let m): return (.memResult(try await getMem(m.key, user: try person(caller, message))), nil)
            case .delMem(let m): return (.memResult(try await delMem(m.key, as: try writer(caller, message))), nil)
            case .listMem(let m):
                let user = try person(caller, message)
                let listed = try await listMem(prefix: m.prefix ?? "", local: m.local ?? false, user: user)
                var keys = Msg.MemKeys(fitting: listed.names)
                if listed.truncated { keys.truncated = true }
                return (.memKeys(keys), nil)
            case .putFile(let m):
                return try await putFile(m, caller: caller, as: try writer(caller, message))
            case .putFileChunk(let m):
                _ = try person(caller, message)
                return try await putFileChunk(m, payload: payload, caller: caller)
            case .putFileEnd(let m):
                // Sealed with the grant of the upload's start (`Upload.writer`): an upload may outlast its grant.
                _ = try person(caller, message)
                return (.fileStored(try await putFileEnd(m, caller: caller)), nil)
            case .getFile(let m): return (.fileInfo(try await getFile(m.filename, user: try person(caller, message))), nil)
            case .getFileChunk(let m): return try await getFileChunk(m, user: try person(caller, message))
            case .listFiles(let m):
                let user = try person(caller, message)
                let listed = try await listFiles(prefix: m.prefix ?? "", user: user)
                var files = Msg.FileList(fitting: listed.files)
                if listed.truncated { files.truncated = true }
                return (.fileList(files), nil)
            case .deleteFile(let m):
                try await deleteFile(m.filename, as: try writer(caller, message))
                return (.ok(Msg.Ok(detail: "deleted \(m.filename)")), nil)
            }
        } catch let e as GridError {
            return (.error(Msg.Error(e)), nil)
        } catch {
            return (.error(Msg.Error(GridError(.internal, "\(error)"))), nil)
        }
    }

    /// Who a person's write is for, and what proves it to the peers that keep it: their session here.
    private func writer(_ caller: Caller, _ message: GridMessage) throws -> Writer {
        let user = try person(caller, message)
        if let grant = caller.authority?.grant, grant.expires <= Self.nowS() {
            throw GridError(.forbidden, "this session's write grant expired; open a new session to write")
        }
        guard let authority = caller.authority else {
            if let why = caller.writeRefusal { throw GridError(.forbidden, why) }
            throw GridError(
                .forbidden,
                "\(message.type) needs a session with a write grant (the client gives one for commands that write): it is what other peers keep the write on")
        }
        return Writer(user: user, authority: authority)
    }

    /// Why a replica from another peer may not be kept here, or nil: its seal is not its writer's, under a person's
    /// write grant to that writer or the manager's write ticket for it, or that person may not write its key where this
    /// peer holds what it holds (`PeerNamespace.mayWrite`).
    /// `storing` (a `MEM_SYNC`): a public name's entry is kept only by the name's owners (by this peer's view) or a
    /// peer that holds it already: first come holds only where the first claim is held, so a claim pushed to a peer
    /// that is no owner (and never saw the name) is not kept to be read back as the name's. (A reader takes answers
    /// from owners it chose itself.)
    func checkSeal(of entry: Msg.MemEntry, storing: Bool = false) -> GridError? {
        guard let managerKey else { return GridError(.unreachable, "this peer does not know its manager's key yet") }
        if sealChecker?.managerKey != managerKey { sealChecker = PeerTrust.SealChecker(managerKey: managerKey) }
        let current = memory.get(entry.key)
        let result = sealChecker!.check(key: entry.key, value: entry.value, version: entry.version, origin: entry.origin, seal: entry.seal) { claimed in
            PeerNamespace.mayWrite(
                entry.key, value: entry.value, current: current?.value, user: claimed.user, files: claimed.filePrefix,
                deletedBy: LocalReplicas.deleter(entry.key, held: current))
        }
        switch result {
        case .failure(let e): return e
        case .success(let person): return keepRule(entry, sealed: person, storing: storing)
        }
    }

    /// The seals of `entries`, checked off the actor (their signatures), each with the person it was sealed for; the
    /// person's right to the key as this peer holds it now is asked first (`mayKeep`), so a forgery for another's
    /// key costs no signature check. The caller asks `keepRule` again once back on the actor, before keeping any.
    /// `sender`'s allowance of wasted checks (`SealStrikes`) bounds the batch: once the signatures of its failed
    /// entries reach it, the rest are refused unchecked, and what they cost is counted against it.
    func checkSeals(_ entries: [Msg.MemEntry], from sender: String) async throws -> [Result<PeerTrust.Sealed, GridError>] {
        guard !entries.isEmpty else { return [] }
        guard let managerKey else { throw GridError(.unreachable, "this peer does not know its manager's key yet") }
        if sealChecker?.managerKey != managerKey { sealChecker = PeerTrust.SealChecker(managerKey: managerKey) }
        let checker = sealChecker!
        let memory = self.memory
        // Reserved before the checks leave the actor (a peer's batches overlap), settled after. An entry costs at most
        // four checks: its credential, certificate, grant and its own signature.
        let allowance = sealStrikes.reserve(entries.count.multipliedReportingOverflow(by: 4).partialValue, by: sender, now: Date().timeIntervalSince1970)
        let (results, after, wasted) = await Self.offActor { () -> ([Result<PeerTrust.Sealed, GridError>], PeerTrust.SealChecker, Int) in
            var c = checker
            var wasted = 0
            let results = entries.map { e -> Result<PeerTrust.Sealed, GridError> in
                guard wasted < allowance else {
                    return .failure(GridError(.rateLimited, "not checked: this batch's entries with bad seals used up the sender's allowance"))
                }
                let before = c.signatureChecks
                let result = c.check(key: e.key, value: e.value, version: e.version, origin: e.origin, seal: e.seal) { claimed in
                    let held = memory.get(e.key)
                    return PeerNamespace.mayWrite(
                        e.key, value: e.value, current: held?.value, user: claimed.user, files: claimed.filePrefix,
                        deletedBy: LocalReplicas.deleter(e.key, held: held))
                }
                if case .failure = result { wasted += c.signatureChecks &- before }
                return result
            }
            return (results, c, wasted)
        }
        sealStrikes.settle(reserved: allowance, spent: wasted, by: sender, now: Date().timeIntervalSince1970)
        if wasted > 0, sealStrikes.allowance(of: sender, now: Date().timeIntervalSince1970) == 0 {
            logger.warning(
                "a peer's entries with bad seals used up its allowance; its MEM_SYNC is refused for a while",
                metadata: ["grid.worker.id": "\(sender.prefix(64))"])
        }
        // What it found good is remembered (another batch checked meanwhile may lose what it found: a cache).
        if after.managerKey == self.managerKey { sealChecker = after }
        return results
    }

    /// Whether a sealed entry for `sealed`'s person may be kept here as this peer holds the key now
    /// (`PeerNamespace.mayWrite`), and, `storing` (a `MEM_SYNC`), the owners' rule for a public name's claim.
    func keepRule(_ entry: Msg.MemEntry, sealed: PeerTrust.Sealed, storing: Bool) -> GridError? {
        let current = memory.get(entry.key)
        if let e = PeerNamespace.mayWrite(
            entry.key, value: entry.value, current: current?.value, user: sealed.user, files: sealed.filePrefix,
            deletedBy: LocalReplicas.deleter(entry.key, held: current))
        {
            return e
        }
        if storing, PeerNamespace.owner(of: entry.key) == nil, current == nil, let selfId,
            !Rendezvous.owners(of: entry.key, among: memberIds, replicas: config.replicas).contains(selfId)
        {
            return GridError(.forbidden, "this peer is no owner of that public name and holds none of it")
        }
        return nil
    }

    /// A value's size as JSON text, as a writer measures it (`setMem`).
    static let encodedSize: @Sendable (JSONValue) -> Int = { (try? GridJSON.encode($0).count) ?? Int.max }

    /// The most entries one `MEM_SYNC` may carry (a writer's batches carry at most 1,000).
    static let maxSyncEntries = 1_000

    /// The user a person's request acts for; a peer (which acts for a user only with a ticket) is refused.
    private func person(_ caller: Caller, _ message: GridMessage) throws -> String {
        guard !caller.isPeer, PeerNamespace.isValidUser(caller.user) else {
            throw GridError(.forbidden, "\(message.type) is a request of a person (in a session); a peer acts for a user only with a ticket")
        }
        return caller.user
    }

    /// Takes the one `CHUNK_REFS`/`CHUNK_KEEP` a peer may have answered at a time (each reads every memory entry or
    /// touches thousands of files); the caller gives it back when done.
    private func oneChunkQuestion(_ caller: Caller, _ message: GridMessage, in slots: inout Set<String>) throws -> String {
        let peer = caller.peer ?? ""
        guard slots.insert(peer).inserted else {
            throw GridError(.rateLimited, "\(message.type): this peer answers one at a time from each peer; wait for the last answer")
        }
        return peer
    }

    private func requirePeer(_ caller: Caller, _ message: GridMessage) throws {
        guard caller.isPeer else { throw GridError(.forbidden, "\(message.type) is only for peers (a worker's credential)") }
    }

    /// What the shared storage takes here, against what the owner lent (read without the actor: both counts have locks).
    nonisolated var storageUse: Msg.StorageUse {
        Msg.StorageUse(
            memoryBytes: memory.heldBytes, memoryLimit: config.memoryBudget.totalBytes, diskBytes: chunks.heldBytes, diskLimit: config.diskBudget.totalBytes)
    }

    /// The entries a `MEM_FETCH` of `keys` answers with: each key once, those held (`lookup`). Throws when they would
    /// not fit one line (`Msg.replyBudgetBytes`): an honest peer asks for one key at a time, and one request naming a
    /// public value of 256 KiB a thousand times had a peer build an answer of 256 MB, 32 of them at once per connection.
    static func fetchAnswer(keys: some Sequence<String>, lookup: (String) -> MemoryTable.Entry?) throws -> [Msg.MemEntry] {
        var seen = Set<String>()
        var left = Msg.replyBudgetBytes
        var out: [Msg.MemEntry] = []
        for key in keys where seen.insert(key).inserted {
            guard let e = lookup(key) else { continue }
            let others = JSONValue.encodedSize(ofString: key) + JSONValue.encodedSize(ofString: e.origin) + (e.seal.map(JSONValue.encodedSize(ofString:)) ?? 4) + 64
            // The bound first (cheap); measured only when the bound does not fit: it counts a number as 24 bytes, and
            // an array of 100,000 zeros (200 KB, a value any writer may store) is bounded at 2.5 MB.
            var value = e.value?.encodedSizeBound ?? 4
            if value > left - others, let v = e.value { value = encodedSize(v) }
            left -= others + value
            guard left >= 0 else {
                throw GridError(.lineTooLong, "the answer to MEM_FETCH would be over the \(Msg.replyBudgetBytes) bytes a line may hold: ask for fewer keys")
            }
            out.append(Msg.MemEntry(key: key, value: e.value, version: e.version, origin: e.origin, seal: e.seal))
        }
        return out
    }

    /// `viewer`: the person asking, who sees their own confidential tasks (nobody else's).
    private func status(_ selfId: String, viewer: String? = nil) -> Msg.PeerStatus {
        // The tasks handed to the pool beyond its slots wait there (it starts them in the order they came: the last
        // ones wait), so they show as queued.
        // Confidential tasks are left out: their existence never leaves this machine.
        // The queue's shares are the user's own and the user's through each forwarding peer (`runHere`): shown as the
        // user's, together.
        var queued: [String: Int] = [:]
        for (turn, n) in queue.waitingByUser { queued[TaskShare.person(ofKey: turn), default: 0] += n }
        for (user, n) in confidentialWaiting where user != viewer {
            let left = (queued[user] ?? 0) - n
            queued[user] = left > 0 ? left : nil
        }
        let visible = handedOver.filter { !confidentialSerials.contains($0.key) || $0.value == viewer }
        let visibleRunning = visible.count
        for (_, user) in visible.sorted(by: { $0.key < $1.key }).suffix(max(0, visibleRunning - config.slots)) { queued[user, default: 0] += 1 }
        return Msg.PeerStatus(
            workerId: selfId, name: info(of: selfId)?.name ?? selfId, slots: config.slots, running: min(visibleRunning, config.slots), queued: queued,
            peers: members, memKeys: memory.liveCount, chunks: chunksHeld(), tasksDone: doneCount, storage: storageUse)
    }

    /// How many chunks this peer holds, as the last repair pass counted them (off the actor, every `repairSeconds`),
    /// or the store when it opened: `GET_PEER_STATUS`, which any user may send in a loop, listed the whole chunk folder
    /// (thousands of files) on the actor each time, holding up every memory and file request meanwhile.
    private func chunksHeld() -> Int { chunkCount }

    func counted(chunks n: Int) { chunkCount = n }

    // MARK: - Links to other peers

    /// A link to peer `id` (kept and reused). Before anything but a nonce is sent, the other side must show a
    /// credential the manager signed for worker `id` at the address `PEERS` lists for it, and sign our nonce with its
    /// key; then this peer proves itself the same way. No token ever crosses a peer link.
    func link(to id: String) async throws -> PeerLink {
        if let l = links[id], await l.isOpen { return l }
        guard let peer = info(of: id) else { throw GridError(.notFound, "peer \(id) is not online") }
        await renewCredential()
        guard let selfId, let managerKey, let credential else {
            throw GridError(.unreachable, "this peer has no credential from its manager yet; try again")
        }
        if tls.required && tls.tls == nil {
            throw GridError(.unreachable, "this peer has no certificate from its manager yet; try again")
        }
        let expected = PeerTrust.Expected(workerId: id, host: peer.host, port: peer.port)
        let nonce = PeerTrust.nonce()
        let l: PeerLink
        do {
            l = try await connectAsPeer(peer, expected: expected, nonce: nonce, managerKey: managerKey, credential: credential, selfId: selfId)
        } catch let e as GridError {
            // A peer that cannot prove itself is as good as unreachable: nothing is sent to it.
            logger.warning("could not open a trusted link to a peer", metadata: ["grid.worker.id": "\(id)", "grid.error": "\(e.message)"])
            throw GridError(e.code == .unauthorized ? .unauthorized : .unreachable, e.message)
        }
        // Membership may have changed while the link opened: a worker that left, or was barred, meanwhile gets nothing.
        guard info(of: id) != nil, barring(id, expires: l.hello?.credential?.expires) == nil else {
            await l.close()
            throw GridError(.unreachable, "peer \(id) is no longer a peer")
        }
        if let old = links[id], old !== l, await old.isOpen {
            await l.close()
            return old
        }
        links[id] = l
        return l
    }

    private func connectAsPeer(
        _ peer: Msg.PeerInfo, expected: PeerTrust.Expected, nonce: String, managerKey: String, credential: PeerTrust.Credential, selfId: String
    ) async throws -> PeerLink {
        let (signer, now) = (signer, Self.nowS())
        return try await PeerLink.connectAsPeer(host: peer.host, port: peer.port, nonce: nonce, name: selfId, tls: tls.tls) { ok, link in
            if let e = PeerTrust.checkServer(
                credential: ok.credential, proof: ok.proof, nonce: nonce, managerKey: managerKey, now: now, expected: expected)
            {
                throw e
            }
            // Over TLS the answering side's certificate names the worker it proves to be (a worker with a certificate
            // of its own cannot stand in the middle, relaying the other's proof).
            if let e = PeerTrust.checkLink(link, proves: expected.workerId) { throw e }
            guard let theirs = ok.nonce, (16...128).contains(theirs.utf8.count) else {
                throw GridError(.unauthorized, "the peer at \(peer.host):\(peer.port) sent no nonce to sign")
            }
            return Msg.PeerAuth(
                credential: credential, proof: signer.proof(nonce: theirs, workerId: selfId, role: .client, audience: expected.workerId))
        }
    }

    /// Sends a request to peer `id`; a link that failed is dropped so the next call reconnects.
    func ask(_ id: String, _ message: GridMessage, payload: ByteBuffer? = nil, timeout: Double = 30) async throws -> Reply {
        let l = try await link(to: id)
        do {
            let r = try await l.request(message, payload: payload, timeout: timeout)
            return (r.message, r.payload)
        } catch let e as GridError {
            await dropIfBroken(l, to: id, e)
            throw e
        }
    }

    /// A link whose request failed as unreachable or timed out is dropped (and closed), so the next call reconnects.
    func dropIfBroken(_ l: PeerLink, to id: String, _ error: GridError) async {
        guard error.code == .unreachable || error.code == .timeout else { return }
        if links[id] === l { links[id] = nil }
        await l.close()
    }

    // MARK: - Function tasks

    /// The user this worker belongs to (`HELLO_OK {owner}`).
    private var ownerName: String?

    /// Whether `user`'s function task may run here: anyone's where the interpreters are sandboxed, else only the
    /// owner's (`PeerConfig.tasksForOwnerOnly`).
    private func mayRunHere(_ user: String) -> Bool {
        !config.tasksForOwnerOnly || (ownerName != nil && user == ownerName)
    }

    private func refusedHere() -> GridError {
        GridError(
            .forbidden,
            "this worker runs function tasks without a sandbox (its jobs run under a container engine, or none): only its owner's tasks run here")
    }

    func cpuTask(_ task: Msg.CPUTask, caller: Caller) async throws -> Msg.CPUResult {
        guard !task.taskId.isEmpty, task.taskId.utf8.count <= 128 else { throw GridError(.badRequest, "task_id must be 1–128 bytes") }
        guard task.program.utf8.count <= config.maxProgramBytes else {
            throw GridError(.badRequest, "the program is longer than \(config.maxProgramBytes >> 10) KiB")
        }
        if let t = task.timeout, !(t > 0 && t <= config.maxTaskSeconds) {
            throw GridError(.badRequest, "timeout must be more than 0 and at most \(Int(config.maxTaskSeconds)) s")
        }
        let function = task.function ?? "main"
        guard PythonName.isValid(function) else {
            throw GridError(.badRequest, "function must be a Python name (got \(String(reflecting: function)))")
        }
        if let lines = task.requirements, !lines.isEmpty {
            guard environments != nil else { throw GridError(.badRequest, "this peer does not build Python environments for tasks") }
            _ = try requirements(lines)
        }
        if let p = task.priority, !Self.priorities.contains(p) {
            throw GridError(.badRequest, "priority must be \(Self.priorities.lowerBound)…\(Self.priorities.upperBound) (got \(p))")
        }
        let user: String
        if let peer = caller.peer {
            // A worker whose interpreters have no sandbox runs its owner's tasks only, sent to it directly: a task
            // forwarded by a peer is the forwarding peer's word that the user sent it, and a hostile peer that held the
            // owner's ticket ran code outside any sandbox on the owner's own machine.
            guard !config.tasksForOwnerOnly else { throw refusedHere() }
            // Forwarded by a peer: it runs as the user of the manager's ticket, which must be this peer's, and the peer
            // must have signed this very request with its credential key.
            guard let ticket = task.ticket, let signature = task.signature, let peerKey = caller.peerKey, let managerKey else {
                throw GridError(.forbidden, "a peer may forward a task only with the user's ticket and its signature")
            }
            if let e = PeerTrust.checkForwarding(ticket) ?? goodTickets.check(ticket, managerKey: managerKey, holder: peer, now: Self.nowS()) { throw e }
            var unsigned = task
            unsigned.signature = nil
            guard PeerTrust.isValid(signature: signature, over: PeerTrust.requestBytes(ticket: ticket, requestJSON: try GridJSON.encode(unsigned)), key: peerKey)
            else { throw GridError(.forbidden, "the forwarded task's signature does not match its peer's credential") }
            user = ticket.user
        } else {
            user = caller.user
        }
        if let claimed = task.user, !claimed.isEmpty, claimed != user {
            throw GridError(.forbidden, "this task would run as \(user), not \(claimed): a task always runs as the user who sent it")
        }
        var mine = task
        mine.user = user
        mine.ticket = nil
        mine.signature = nil
        // Where it runs is decided by `TaskRouting` (pure): here, or on the manager's least-loaded peer. A task that may
        // not run here (no sandbox, not the owner's) is refused, or handed on when it may be.
        let here = mayRunHere(user)
        let first = TaskRouting.first(
            confidential: task.confidential == true, forwardedByAPeer: caller.isPeer, freeSlot: hasFreeSlot && here, hasManager: managerLink != nil)
        guard first == .askManager, let managerLink else {
            guard here else { throw refusedHere() }
            return try await runHere(mine, connection: caller.connection, via: caller.peer)
        }
        // Forwarded with the user's ticket (from the manager, when it checked the user's token here) and this peer's
        // signature over it and the task. Without a ticket that lasts the wait no forward can follow, and the manager
        // is not asked (a review: it counted a task on the peer it named that never came, for every task).
        let wait = (task.timeout ?? config.defaultTaskSeconds) + 60
        guard TaskRouting.ticketLasts(expires: tickets[user]?.expires, now: Self.nowS(), waitSeconds: wait) else {
            guard here else { throw refusedHere() }
            return try await runHere(mine, connection: caller.connection, via: caller.peer)
        }
        var best: String?
        var theirs: Double?
        var asked = true
        var fresh = false
        let askedAt = Self.uptime()
        if let recent = TaskRouting.reusable(lastBestPeer, now: askedAt, mayRunHere: here) {
            best = recent.best
        } else {
            do {
                if case .bestPeer(let b) = try await managerLink(.getBestPeer(Msg.GetBestPeer(taskId: task.taskId, prefer: selfId))) {
                    best = b.peer.workerId
                    theirs = b.load
                }
                fresh = true
            } catch {
                logger.info("could not ask the manager for a peer; running here", metadata: ["grid.error": "\(error)"])
                asked = false
            }
        }
        // This peer's load now (the manager knows it from the last report); a peer that may not run the task itself
        // (no sandbox, not the owner's) counts as full, so any peer named is better (a review: it refused the task).
        let choice = TaskRouting.afterAsking(
            asked: asked, best: best, selfId: selfId, ticketExpires: tickets[user]?.expires, now: Self.nowS(), waitSeconds: wait, theirs: theirs,
            mine: here ? TaskLoad.busy(jobs: jobsRunning, tasks: taskLoad(), slots: config.slots) : .infinity)
        if fresh {
            lastBestPeer = TaskRouting.remember(lastBestPeer, choice: choice, askedAt: askedAt, answeredAt: Self.uptime(), mayRunHere: here)
        }
        guard case .forward(let target) = choice, let ticket = tickets[user] else {
            guard here else { throw refusedHere() }
            return try await runHere(mine, connection: caller.connection, via: caller.peer)
        }
        var forwarded = mine
        forwarded.confidential = false
        forwarded.user = nil
        forwarded.ticket = ticket
        forwarded.signature = signer.sign(PeerTrust.requestBytes(ticket: ticket, requestJSON: try GridJSON.encode(forwarded)))
        do {
            guard case .cpuResult(let r) = try await ask(target, .cpuTask(forwarded), timeout: wait).message else {
                throw GridError(.internal, "peer \(target) gave an unexpected answer")
            }
            return r
        } catch let e as GridError where TaskRouting.runsHereAfterForwardFailed(e.code) {
            logger.info(
                "the best peer could not take the task (unreachable, distrusting or full); running here", metadata: ["grid.worker.id": "\(target)", "grid.error": "\(TerminalText.field(e.message, maxCharacters: 300))"])
            guard here else { throw refusedHere() }
            return try await runHere(mine, connection: caller.connection, via: caller.peer)
        }
    }

    /// `lines` parsed, once per distinct set (`parsedRequirements`); throws as `PythonRequirements(lines:)` does.
    private func requirements(_ lines: [String]) throws -> PythonRequirements {
        if let known = parsedRequirements[lines] { return known }
        let parsed = try PythonRequirements(lines: lines)
        if parsedRequirements.count >= Self.parsedRequirementsLimit { parsedRequirements.removeAll(keepingCapacity: true) }
        parsedRequirements[lines] = parsed
        return parsed
    }

    /// The priorities a task may ask for.
    static let priorities = -10...10

    /// Runs a task here, in the request's own task: at once when nothing waits and there is room, else once the
    /// scheduler (`FairQueue`) gives it its turn. The queue is bounded, per user and in all (`PeerConfig`): a user who
    /// sent tasks, closed the connection and sent more piled up unbounded work and memory. `connection`: the one the
    /// task came on; when it closes its queued tasks are dropped (`connectionClosed`).
    /// `via`: the peer that forwarded the task, if one did: it runs in interpreters of the user's that serve only
    /// tasks forwarded by that peer, never in those of the user's own tasks (a peer holding the user's ticket could
    /// otherwise read what the user's earlier tasks left in an interpreter, or leave code that answers their later ones).
    func runHere(_ task: Msg.CPUTask, connection: Int? = nil, via: String? = nil) async throws -> Msg.CPUResult {
        let user = task.user ?? "?"
        // Its turn and its share of the queue: the user's own, or (forwarded) the user's through that peer, so a peer
        // holding the user's ticket cannot fill the user's own share and have their tasks refused.
        let turn = TaskShare.key(user: user, via: via)
        let runsNow = queue.isEmpty && !stopping && running < config.slots + pool.lookahead
        guard runsNow || (queue.count(of: turn) < config.maxQueuedTasksPerUser && queue.count < config.maxQueuedTasks) else {
            throw GridError(
                .rateLimited,
                "this peer has \(queue.count(of: turn)) of your tasks and \(queue.count) in all waiting, the most it queues; send more as they finish")
        }
        nextTaskSerial += 1
        let serial = nextTaskSerial
        let secret = task.confidential == true
        let order: Int?
        if runsNow {
            if secret { confidentialSerials.insert(serial) }
            order = admit(serial, user: user, confidential: secret)
            if !secret { onLoadChange?() }
        } else {
            if secret { confidentialWaiting[user, default: 0] += 1 }
            order = await withCheckedContinuation { (c: CheckedContinuation<Int?, Never>) in
                queue.enqueue(QueuedTask(id: serial, task: task, connection: connection, admit: c), user: turn, priority: task.priority ?? 0)
                pump(visibleChange: !secret)
            }
        }
        guard let order else {
            return Msg.CPUResult(
                taskId: task.taskId, ok: false, error: "crashed", message: "the peer stopped before the task started", peer: selfId ?? "?",
                runtimeMs: 0)
        }
        let result = await execute(task, order: order, via: via)
        finished(serial)
        return result
    }

    /// Connection `id` closed: its tasks still waiting are dropped (nobody would read their results).
    public func connectionClosed(_ id: Int) {
        for dropped in queue.remove(where: { $0.connection == id }) {
            leftQueue(dropped.task, serial: dropped.id, started: false)
            dropped.admit.resume(returning: nil)
        }
    }

    /// Counts task `serial` as handed to the pool; returns its start order among tasks that are not confidential (0
    /// for a confidential one: the orders others see have no gaps where one started).
    private func admit(_ serial: Int, user: String, confidential: Bool) -> Int {
        running += 1
        handedOver[serial] = user
        guard !confidential else { return 0 }
        startedCount += 1
        return startedCount
    }

    /// Gives waiting tasks their turn while there is room (the pool's slots and its lookahead); when stopping, ends
    /// every waiting task instead.
    /// `visibleChange`: the load the manager is told changed (a task that is not confidential came or went), so it is
    /// told now; otherwise only when a task that is not confidential starts.
    private func pump(visibleChange: Bool = true) {
        if stopping {
            while let next = queue.next() {
                leftQueue(next.item.task, serial: next.item.id, started: false)
                next.item.admit.resume(returning: nil)
            }
            return
        }
        var told = visibleChange
        while running < config.slots + pool.lookahead, let next = queue.next() {
            if next.item.task.confidential != true { told = true }
            leftQueue(next.item.task, serial: next.item.id, started: true)
            next.item.admit.resume(returning: admit(next.item.id, user: next.user, confidential: next.item.task.confidential == true))
        }
        if told { onLoadChange?() }
    }

    /// A task left the queue, to start (`started`) or dropped: a confidential one's count moves with it, at once.
    private func leftQueue(_ task: Msg.CPUTask, serial: Int, started: Bool) {
        guard task.confidential == true else { return }
        let user = task.user ?? "?"
        let n = confidentialWaiting[user] ?? 0
        confidentialWaiting[user] = n > 1 ? n - 1 : nil
        if started { confidentialSerials.insert(serial) }
    }

    /// The builder of Python environments for tasks with `requirements` (the worker's, shared with its jobs).
    public func setEnvironments(_ builder: EnvBuilder) {
        environments = builder
    }

    /// `via`: the peer that forwarded it, whose forwards of the user's run in interpreters of their own.
    private func execute(_ t: Msg.CPUTask, order: Int, via: String?) async -> Msg.CPUResult {
        let begin = ContinuousClock.now
        let request = FunctionPool.Request(
            program: t.program, function: t.function ?? "main", args: t.args, argsLiteral: t.argsLiteral,
            timeout: t.timeout ?? config.defaultTaskSeconds)
        let answer: FunctionPool.Answer
        if let lines = t.requirements, !lines.isEmpty, let environments {
            do {
                // A cached environment is taken without a hop onto the builder's actor; only a build goes there.
                let requirements = try requirements(lines)
                let cached = try environments.cachedEnvironment(for: requirements)
                let ready = if let cached { cached } else { try await environments.prepare(requirements) { _ in } }
                answer = await pool.run(request, user: t.user ?? "?", via: via, environment: (ready.key, ready.sitePath))
                environments.release(ready.key)
            } catch {
                answer = FunctionPool.Answer(ok: false, error: "environment", message: (error as? GridError)?.message ?? "\(error)")
            }
        } else {
            answer = await pool.run(request, user: t.user ?? "?", via: via, environment: nil)
        }
        let elapsed = ContinuousClock.now - begin
        let ms = elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000
        return Msg.CPUResult(taskId: t.taskId, outcome: answer, peer: selfId ?? "?", runtimeMs: ms, startOrder: order > 0 ? order : nil)
    }

    private func finished(_ serial: Int) {
        running -= 1
        handedOver[serial] = nil
        let secret = confidentialSerials.remove(serial) != nil
        if !secret { doneCount += 1 }
        pump(visibleChange: !secret)
        if !secret, queue.isEmpty && running == 0 { onLoadChange?() }
    }
}
