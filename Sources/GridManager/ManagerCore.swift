import Foundation
import GridCore
public import GridProtocol
import GridScheduler
public import GridStore
public import Logging
import NIOCore

/// The manager's live state and its rules: connected workers, leases, scheduling, job events from workers.
///
/// One actor owns everything that changes; the database holds everything that must survive a crash. The pure parts
/// (placement, leases, the session machine) decide; this actor carries their decisions out.
public actor ManagerCore {
    /// A way to send frames to one connected worker.
    typealias Outbox = GridOutbox

    struct LiveWorker {
        var identity: WorkerSession.Identity
        var registration: Msg.Register
        var load: Double
        var connection: Int
        /// What the manager sends it on its own, written by its connection's task (`WorkerSendQueue`).
        var queue: WorkerSendQueue
        /// Closes its connection, both ways (a revoked join token, a replaced or silent connection).
        var close: @Sendable () -> Void
        /// Whether a frame of its is on its way in or waits to be handled (`BusySpells`); nil: not known.
        var flow: InboundFlow?
        var lastHeartbeat: Double
        var lastLoadWrite: Double
        /// Function tasks queued or running on the peer (peer services).
        var tasks = 0
        /// Tasks sent its way by `GET_BEST_PEER` answers since its last load report, and when their window began
        /// (monotonic): `PeerChoice.reserved`.
        var reserved = 0
        var reservedAt = 0.0
        /// Tasks of its own it had counted on other peers in its current window, and when that began
        /// (`PeerChoice.mayCount`).
        var spent = 0
        var spentAt = 0.0
        /// It said it is stopping: no new job goes to it.
        var stopping = false
        /// Its disk is under the free space it keeps: no new job goes to it while it says so.
        var diskFull = false
        /// The environments it has cached (`REGISTER`, `LOAD_UPDATE`; the first `WorkerClaims.envsKept`), as a set once,
        /// not on every scheduling pass (100,000 from each of an owner's 256 workers were made into sets on each).
        var envs: Set<String> = []
        /// Breaks placement ties: the manager's pick, not the worker's (see `Placement.Worker.tieBreak`).
        var tieBreak = UInt64.random(in: 0...UInt64.max)
    }

    let db: GridDatabase
    let config: ManagerConfig
    let logger: Logger
    private var leases: LeaseTable
    /// Which workers' connections are busy with a frame, and since when (`expireLeases`).
    private var busySpells: BusySpells
    /// When the submitter cancelled each running job (wall clock): its run is billed no later than a lease period after
    /// (`CreditRules.billedUntil`).
    private var cancelledAt: [JobID: Double] = [:]
    private var live: [WorkerID: LiveWorker] = [:]
    /// Join tokens revoked in the last ten minutes, and when (`joinTokenRevoked`, `register`).
    private var revokedJoinTokens: [String: Double] = [:]
    /// Requests on running jobs: the spec of each leased job, to compute free resources, and its owner, to count the
    /// others' jobs an owner's workers hold (`windows`).
    private var leased: [JobID: (spec: JobSpec, owner: UserID)] = [:]
    /// Each owner seen since this manager started: how many other users' jobs its workers may hold at once, together,
    /// the owner of each worker, and the failed runs keeping their places (`OthersWindows`, pure): what a worker claims
    /// to have no longer decides how many others' jobs it gets.
    private var windows = OthersWindows()
    /// Workers that could not start a queued job, which it keeps away from for a while (`Rejections`, pure; kept in
    /// memory only).
    private var rejections = Rejections()
    /// Reports of runs that ended, and the rules for them (pure, `RunReports`): one whose log has not all arrived yet is
    /// held, settled once it has, or given up after `settleWaitSeconds`. Its lease is released; its log bytes are still
    /// taken.
    private var reports: RunReports<Pending>
    /// When each worker last lost a run (monotonic), to tell a lone loss from part of an outage.
    private var recentLoss: [WorkerID: Double] = [:]
    /// A worker's reason, as one line: every user's `status` shows it, and a newline in it would forge the next line
    /// ("result: verified by worker …").
    static func oneLine(_ reason: String) -> String { Msg.SavedOutput.oneLine(reason, maxBytes: WorkerClaims.reasonLength.upperBound) }

    /// Workers that could run other owners' check runs, by owner (`checkers()`): those the store remembers when this
    /// manager starts (`recover`: seen within a week, `Verification.remembersChecker`), and those registered since. A probation run is checked while one is known, online
    /// or not.
    private var knownCheckers: [WorkerID: UserID] = [:]
    /// This manager's secret for the draws that place check runs (`Placement.checkSeed`): drawn as it starts, never sent.
    private let checkSecret = UInt64.random(in: .min ... .max)
    /// When the manager saw each run start (`JOB_STARTED`, wall clock): payment never exceeds what it saw since.
    private var runStarted: [JobRef: Double] = [:]
    /// Wall-clock time after which a leased run is past its minutes plus the grace, and the manager stops it.
    private var deadlines: [JobID: (ref: JobRef, at: Double)] = [:]
    /// Workers quarantined by verification: they get only their owners' jobs (kept in the database; cached here).
    private var quarantined: Set<WorkerID> = []
    /// Workers that stopped being peers for cause (join token revoked, quarantined): the credentials given to them
    /// before are refused at every peer (`PeerTrust.Bars`, announced in `PEERS`). Kept in the store too
    /// (`recordPeerBar`), so a restarted manager or the follower that takes over goes on announcing them.
    private var bars = PeerTrust.Bars()

    /// Bars `worker`: every credential given to it until now is refused by the peers. `expires`: the latest expiry of
    /// a credential known to be given to it.
    private func bar(_ worker: WorkerID, expires: Int64? = nil) async {
        let t = Int64(wall())
        // Any credential given until now expires by then (one of an earlier term too, on the same clock).
        let cut = max(expires ?? .min, t + PeerTrust.credentialSeconds)
        bars.bar(worker, before: cut, now: t)
        do {
            try await db.recordPeerBar(worker, before: cut, forgetBefore: t - PeerTrust.Bars.announcedPast)
        } catch {
            logger.error("could not keep a peer bar in the store", metadata: ["grid.worker.id": "\(worker)", "grid.error": "\(error)"])
        }
    }
    /// The pending queue as of the last pass, in scheduling order (pure, `PendingQueue`): each pass reads only what
    /// changed since (the store's change log), not the whole queue. `queuePosition` is how far the log was read (nil:
    /// read the whole queue); the log is cut behind it now and then.
    private var queue = PendingQueue()
    private var queuePosition: Int64?
    private var queueCut: (position: Int64, at: Double) = (0, 0)
    private var queueFullRead = -Double.infinity
    /// When check runs that waited too long were last ended (`expireWaitingChecks`).
    private var checksExpired = -Double.infinity

    /// What is kept of a held report.
    struct Pending: Sendable {
        var who: WorkerSession.Identity
        var done: Msg.JobDone
        var outputs: [StoredFile]
    }
    private let wake: AsyncStream<Void>.Continuation
    private let wakes: AsyncStream<Void>
    private let origin = ContinuousClock.now
    private var nextConnection = 0
    /// The manager's key: signs peer credentials and user tickets (see `PeerTrust`).
    nonisolated let authority: PeerTrust.Signer

    public init(db: GridDatabase, config: ManagerConfig, logger: Logger, authority: PeerTrust.Signer = PeerTrust.Signer()) {
        self.db = db
        self.config = config
        self.logger = logger
        self.authority = authority
        self.leases = LeaseTable(ttl: config.leaseSeconds)
        self.busySpells = BusySpells(most: config.busyHoldSeconds)
        self.reports = RunReports(bound: config.settleWaitSeconds, maxLogBytes: config.maxLogBytes)
        (wakes, wake) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
    }

    /// Seconds on a monotonic scale, for leases.
    func now() -> Double {
        let d = ContinuousClock.now - origin
        return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }

    /// Wall-clock seconds since 1970, for what is stored and shown.
    nonisolated func wall() -> Double { Date().timeIntervalSince1970 }

    func newConnection() -> Int {
        nextConnection += 1
        return nextConnection
    }

    // MARK: - Start-up

    /// Rebuilds live state after a (re)start: no worker is connected; every running job keeps its lease for a grace
    /// period so its worker can reconnect and carry on.
    func recover() async throws {
        try await db.markAllWorkersOffline()
        quarantined = Set(try await db.quarantinedWorkers().keys)
        let started = wall()
        for w in try await db.workers() where Verification.remembersChecker(acceptsOthers: w.acceptsOthers, tier: w.tier, lastSeen: w.lastSeen, now: started) {
            knownCheckers[w.id] = w.ownerId
        }
        // The bars an earlier manager decided (a revoked join token's workers, say) hold until their credentials lapse;
        // a quarantine decided just before this start may have left its worker a credential: barred until it lapses.
        let t = Int64(wall())
        for (worker, before) in try await db.peerBars(refusingAfter: t - PeerTrust.Bars.announcedPast) {
            bars.bar(worker, before: before, now: t)
        }
        for worker in quarantined.sorted() { await bar(worker) }
        let running = try await db.runningJobs()
        let grace = max(config.leaseSeconds * 3, 5)
        for job in running {
            guard let worker = job.workerId else { continue }
            leases.grant(job.ref, to: worker, now: now(), ttl: grace)
            leased[job.id] = (job.spec, job.ownerId)
            // When the run began after building its environment is not in the store: the environment's grace counts, as
            // at the assignment (without it, a run that prepared for minutes was stopped that much short, and charged
            // its whole limit).
            deadlines[job.id] = (job.ref, assignedDeadline(job))
            if job.cancelRequested {
                leases.revoke(job.id, now: now())
                // Billed no later than a lease period after the cancel, as the manager that took it would have.
                cancelledAt[job.id] = job.cancelRequestedAt
            }
        }
        if !running.isEmpty { logger.info("recovered running jobs", metadata: ["grid.jobs": "\(running.count)"]) }
        wake.yield()
    }

    // MARK: - Worker sessions

    /// Checks a worker's token (a worker join token; an API token is refused by name) and picks its id.
    func authenticate(_ hello: Msg.Hello) async -> Result<WorkerSession.Identity, GridError> {
        do {
            let tokenHash = Tokens.hash(hello.token)
            guard let (user, kind) = try await db.tokenOwner(hash: tokenHash) else {
                return .failure(GridError(.unauthorized, "the token is not valid; create one with `campusgrid token create --worker`"))
            }
            if let refusal = kind.refusal(for: .joinWorker) { return .failure(refusal) }
            if let claimed = hello.user, !claimed.isEmpty, claimed.lowercased() != user.username.lowercased() {
                return .failure(GridError(.forbidden, "this token belongs to \(user.username), not \(claimed)"))
            }
            var chosen: WorkerID?
            if let wanted = hello.workerId, !wanted.isEmpty, !WorkerNaming.isWellFormed(id: wanted) {
                return .failure(GridError(.badRequest, "a worker id is 1 to 64 ASCII letters, digits, '.', '_' or '-'"))
            }
            if let wanted = hello.workerId, !wanted.isEmpty {
                // Its own id again (a rejoin), or one this manager gave it moments ago that has not registered yet. An
                // id of no one's that a worker makes up is not taken: peers rank each other by id to place keys
                // (`Rendezvous`), and a chosen id can be found that ranks first for chosen people's keys.
                let owner = try await db.workerOwner(wanted)
                if owner == user.id || (owner == nil && issued(wanted, to: user)) { chosen = wanted }
            }
            if chosen == nil {
                // A new identity is a new row, kept for good: an owner has at most `maxWorkersPerOwner` (a loop of
                // HELLOs without an id made one each).
                let fresh = Tokens.workerId()
                guard try await reserveNewWorker(fresh, of: user) else {
                    return .failure(
                        GridError(
                            .forbidden,
                            "\(user.username) has \(config.maxWorkersPerOwner) workers on record, the most there may be; start this one "
                                + "with the data folder of one of them (it keeps its identity)"))
                }
                chosen = fresh
            }
            let id = chosen ?? Tokens.workerId()
            // Every user's `campusgrid workers` shows the name: a terminal's controls in it are shown, not kept.
            let given = hello.name?.isEmpty == false ? hello.name! : id
            let name = String(TerminalText.shown(String(String.UnicodeScalarView(given.unicodeScalars.prefix(64))), keeping: .none).prefix(64))
            return .success(WorkerSession.Identity(workerId: id, name: name, ownerId: user.id, ownerName: user.username, tokenHash: tokenHash))
        } catch {
            return .failure(GridError(.internal, "could not check the token: \(error)"))
        }
    }

    /// New worker ids given at `HELLO` and not yet registered (no row yet), by owner, with when (monotonic): they
    /// count toward `maxWorkersPerOwner` too, or a burst of HELLOs on parallel connections all passed the count
    /// before any row existed. Forgotten at `REGISTER`, or after two minutes.
    private var newIdentities: [UserID: [WorkerID: Double]] = [:]

    /// Whether `user` may have one more worker, `id`, and if so keeps it counted until it registers. The count and the
    /// keeping are one step on the actor (nothing suspends between them).
    /// Whether this manager gave `id` to `user`'s worker at a `HELLO` in the last two minutes (not registered yet).
    private func issued(_ id: WorkerID, to user: UserRecord) -> Bool {
        guard let at = newIdentities[user.id]?[id] else { return false }
        return now() - at < 120
    }

    private func reserveNewWorker(_ id: WorkerID, of user: UserRecord) async throws -> Bool {
        let stored = try await db.workerCount(owner: user.id)
        let t = now()
        var pending = (newIdentities[user.id] ?? [:]).filter { t - $0.value < 120 }
        guard stored + pending.count < config.maxWorkersPerOwner else {
            newIdentities[user.id] = pending.isEmpty ? nil : pending
            return false
        }
        pending[id] = t
        newIdentities[user.id] = pending
        return true
    }

    /// A worker registered (first time or after a reconnect): record it, keep the jobs it still legitimately runs. Nil
    /// when the join token it said `HELLO` with was revoked since (the connection is then refused and closed).
    func register(
        _ who: WorkerSession.Identity, _ reg: Msg.Register, connection: Int, queue: WorkerSendQueue, flow: InboundFlow? = nil,
        close: @escaping @Sendable () -> Void
    ) async -> Msg.Registered? {
        let heldBefore = Set(leases.jobs(of: who.workerId))
        if let old = live[who.workerId], old.connection != connection {
            logger.info("worker reconnected; dropping its old connection", metadata: ["grid.worker.id": "\(who.workerId)"])
            // Closed both ways: a half-closed one went on reading (a stranger kept 64 MiB frames half sent on each).
            old.queue.close()
            old.close()
        }
        do {
            try await db.registerWorker(
                GridDatabase.WorkerRegistration(
                    id: who.workerId, name: who.name, ownerId: who.ownerId, resources: reg.resources, gpuNames: reg.gpuNames, tier: reg.tier,
                    slots: max(1, reg.slots), host: reg.host, port: reg.port, webPort: reg.webPort,
                    acceptsOthers: reg.sandbox?.acceptsOthers ?? true),
                now: wall())
        } catch {
            logger.error("could not record worker", metadata: ["grid.worker.id": "\(who.workerId)", "grid.error": "\(error)"])
        }
        // Its row is there now: it counts as one of its owner's workers by that.
        if newIdentities[who.ownerId]?.removeValue(forKey: who.workerId) != nil, newIdentities[who.ownerId]?.isEmpty == true {
            newIdentities[who.ownerId] = nil
        }
        // A connection that said HELLO before its join token was revoked, and REGISTER after, is not let in: the store
        // says whether the token is still there (a revocation long before), and `revokedJoinTokens` whether it went
        // while that read was under way (nothing suspends between that check and `live`).
        // A store that fails to answer refuses nobody: HELLO has just checked the token, and a refusal ends the worker.
        if let hash = who.tokenHash {
            let gone: Bool
            do { gone = try await db.tokenOwner(hash: hash) == nil } catch { gone = false }
            if gone || revokedJoinTokens[hash] != nil {
                logger.warning("refused a worker whose join token was revoked", metadata: ["grid.worker.id": "\(who.workerId)"])
                if live[who.workerId] == nil { try? await db.setWorkerOffline(who.workerId, now: wall()) }
                return nil
            }
        }
        // Its owner's window for others' jobs: kept while its workers are away; an owner this manager has not seen starts
        // from its workers' latest check outcomes.
        var recent: [Reputation.Outcome] = []
        if !windows.knows(who.ownerId) {
            recent = (try? await db.recentCheckOutcomes(ofOwner: who.ownerId, limit: config.verification.reputation.window)) ?? []
        }
        windows.registered(who.workerId, owner: who.ownerId, recent: recent)
        let t = now()
        if reg.sandbox?.acceptsOthers ?? true { knownCheckers[who.workerId] = who.ownerId } else { knownCheckers[who.workerId] = nil }
        live[who.workerId] = LiveWorker(
            identity: who, registration: reg, load: 0, connection: connection, queue: queue, close: close, flow: flow, lastHeartbeat: t,
            lastLoadWrite: t,
            diskFull: reg.diskFull == true, envs: Set((reg.envs ?? []).prefix(WorkerClaims.envsKept)))
        // The store first (its reads suspend); then every lease decision in one step against the lease table as it is
        // now, so that a lease expiring meanwhile is never granted again (`Rejoin`).
        // Only claims of runs leased to this worker, or whose report is settling, can be kept (`Rejoin`); the store is
        // read for those alone (a REGISTER listing 20,000 made-up runs cost 20,000 reads, on every reconnect).
        let settling = reports.settling
        let claims = (reg.running + (reg.finished ?? [])).filter {
            leases.holds($0, worker: who.workerId) || settling[$0.jobId] == Rejoin.Settling(ref: $0, worker: who.workerId)
        }
        var stored: [JobID: Rejoin.StoredRun] = [:]
        for id in Set(claims.map(\.jobId)) {
            if let job = try? await db.job(id: id) {
                stored[id] = Rejoin.StoredRun(state: job.state, attempt: job.attempt, cancelRequested: job.cancelRequested)
            }
        }
        let decision = Rejoin.decide(
            worker: who.workerId, running: reg.running, finished: reg.finished ?? [], stored: stored, settling: reports.settling,
            heldBefore: heldBefore, leases: &leases, now: now())
        let forgotten = decision.forgotten
        let forgottenAlone = lostAlone(who.workerId, count: forgotten.count, now: now())
        for ref in forgotten { leased[ref.jobId] = nil }
        // Runs that ended while the manager could not be told, and runs kept: say how much of each log is here, so that
        // the worker re-sends the rest (before its JOB_DONE).
        var offsets: [String: Int64] = [:]
        for ref in decision.keep { offsets[String(ref.jobId)] = (try? await db.logOffset(of: ref.jobId)) ?? 0 }
        // A worker back without a run is not kept away from it: that is what a crash looks like (a lab's machines
        // killed over and over must get the job back), and `LossPolicy` bounds it.
        for ref in forgotten {
            await interrupt(
                ref, .init(kind: .workerLost, worker: who.workerId, reason: "worker \(who.name) restarted without the job", alone: forgottenAlone))
        }
        let cancel = decision.cancel
        if !forgotten.isEmpty { recentLoss[who.workerId] = now() }
        logger.info(
            "worker online",
            metadata: [
                "grid.worker.id": "\(who.workerId)", "grid.worker.name": "\(who.name)", "grid.worker.owner": "\(who.ownerName)",
                "grid.worker.tier": "\(reg.tier.rawValue)", "grid.worker.cpus": "\(reg.resources.cpus)",
            ])
        wake.yield()
        return Msg.Registered(cancel: cancel, logOffsets: offsets)
    }

    /// The connection of a worker ended. Its leases stay until they expire, so a quick reconnect loses nothing.
    func disconnected(_ who: WorkerSession.Identity, connection: Int) async {
        guard let w = live[who.workerId], w.connection == connection else { return }
        live[who.workerId] = nil
        try? await db.setWorkerOffline(who.workerId, now: wall())
        logger.info("worker offline", metadata: ["grid.worker.id": "\(who.workerId)"])
        await announcePeers()
    }

    /// Join token `hash` was revoked (its owner did, on the dashboard: a stolen laptop, a machine given away): the
    /// workers that joined with it are let go at once, not when they next reconnect. Each one's connection is closed
    /// and it goes offline, so nothing it sends counts any more, it renews no peer credential, and the other peers are
    /// told it left and to refuse it until the credential it holds has lapsed (`PEERS {barred}`); its running jobs go back to the
    /// queue when their leases end, as for any worker that vanished. Its `HELLO` with that token is then refused.
    func joinTokenRevoked(hash: String) async {
        // Remembered a while for a connection that said HELLO with it and has yet to REGISTER (`register`).
        let t = now()
        revokedJoinTokens = revokedJoinTokens.filter { t - $0.value < 600 }
        revokedJoinTokens[hash] = t
        // Every worker given a credential under it is barred, online or not (one that left first keeps its credential),
        // whichever manager gave it (the store keeps who holds one).
        let wallNow = Int64(wall())
        var holders: [WorkerID: Int64] = [:]
        do {
            holders = try await db.credentialHolders(tokenHash: hash, expiringAfter: wallNow - PeerTrust.clockSkewSeconds)
        } catch {
            logger.error("could not read whom a revoked join token gave peer credentials", metadata: ["grid.error": "\(error)"])
        }
        for (id, expires) in holders.sorted(by: { $0.key < $1.key }) { await bar(id, expires: expires) }
        let revoked = live.filter { $0.value.identity.tokenHash == hash }
        guard !revoked.isEmpty else {
            if !holders.isEmpty { await announcePeers() }
            return
        }
        for (id, w) in revoked.sorted(by: { $0.key < $1.key }) {
            logger.warning("a worker's join token was revoked; closing its connection", metadata: ["grid.worker.id": "\(id)"])
            live[id] = nil
            w.close()
            await bar(id, expires: holders[id])
            try? await db.setWorkerOffline(id, now: wall())
        }
        await announcePeers()
    }

    /// A message from a registered worker.
    func deliver(_ who: WorkerSession.Identity, _ message: GridMessage, payload: ByteBuffer?, connection: Int) async -> GridMessage? {
        guard live[who.workerId]?.connection == connection else { return nil }
        guard let report = WorkerReport(message) else {
            return .error(Msg.Error(GridError(.badRequest, "\(message.type) is not a message a worker sends")))
        }
        switch report {
        case .loadUpdate(let update):
            let t = now()
            live[who.workerId]?.load = max(0, min(update.load, 64))
            if let tasks = update.tasks {
                live[who.workerId]?.tasks = max(0, tasks)
                live[who.workerId]?.reserved = 0
            }
            if let envs = update.envs { live[who.workerId]?.envs = Set(envs.prefix(WorkerClaims.envsKept)) }
            let full = update.diskFull == true
            if let w = live[who.workerId], w.diskFull != full {
                live[who.workerId]?.diskFull = full
                logger.log(
                    level: full ? .warning : .info, full ? "worker's disk is nearly full: no new job goes to it" : "worker's disk has room again",
                    metadata: ["grid.worker.id": "\(who.workerId)"])
                if !full { wake.yield() }
            }
            if update.stopping == true, live[who.workerId]?.stopping == false {
                live[who.workerId]?.stopping = true
                logger.info("worker stopping: no new job or task goes to it", metadata: ["grid.worker.id": "\(who.workerId)"])
            }
            live[who.workerId]?.lastHeartbeat = t
            let stale = leases.renew(worker: who.workerId, running: update.running, now: t)
            for ref in stale {
                await send(.cancel(Msg.Cancel(job: ref, reason: "this run of the job was given to another worker")), to: who.workerId)
            }
            if let w = live[who.workerId], t - w.lastLoadWrite >= 5 {
                live[who.workerId]?.lastLoadWrite = t
                try? await db.workerHeartbeat(who.workerId, load: update.load, now: wall())
            }
            return nil
        case .jobStarted(let started):
            if leases.holds(started.job, worker: who.workerId), runStarted[started.job] == nil {
                let t = wall()
                runStarted[started.job] = t
                // The time limit counts from the start: time spent preparing the job's environment is neither billed nor counted.
                if let spec = leased[started.job.jobId]?.spec, deadlines[started.job.jobId]?.ref == started.job {
                    deadlines[started.job.jobId] = (started.job, t + Double(spec.minutes) * 60 + config.timeLimitGraceSeconds)
                }
            }
            return nil
        case .jobLog(let log):
            let waiting = reports.awaitsLog(log.job, from: who.workerId)
            guard leases.holds(log.job, worker: who.workerId) || waiting, let payload else { return nil }
            do {
                try await db.appendLog(log.job, offset: log.offset, data: Data(payload.readableBytesView), maxBytes: config.maxLogBytes)
            } catch {
                logger.error("could not store log", metadata: ["grid.job.id": "\(log.job.jobId)", "grid.error": "\(error)"])
            }
            if reports.awaitsLog(log.job, from: who.workerId) { return await recheck(log.job.jobId)?.reply }
            return nil
        case .jobDone(let done):
            return await finished(who, done, payload: payload)
        case .ping:
            return .pong
        case .getBestPeer(let ask):
            return bestPeer(ask, from: who.workerId)
        case .authCheck(let check):
            return await authCheck(check)
        case .credential:
            if quarantined.contains(who.workerId) {
                return .error(
                    Msg.Error(
                        GridError(
                            .forbidden, "this worker is quarantined (verification contradicted its results): it is no peer until an admin lifts that")))
            }
            guard let credential = await credential(for: who.workerId) else {
                return .error(Msg.Error(GridError(.badRequest, "this worker sent no peer key in HELLO or has no peer port")))
            }
            return .credential(Msg.CredentialGrant(credential: credential))
        case .error(let e):
            logger.warning("worker reported an error", metadata: ["grid.worker.id": "\(who.workerId)", "grid.error": "\(e.message)"])
            return nil
        }
    }

    private func finished(_ who: WorkerSession.Identity, _ done: Msg.JobDone, payload: ByteBuffer?) async -> GridMessage? {
        if done.outcome == .rejected {
            guard leases.holds(done.job, worker: who.workerId) else { return .jobDoneAck(Msg.JobDoneAck(job: done.job)) }
            leases.release(done.job.jobId)
            leased[done.job.jobId] = nil
            keepAway(done.job.jobId, from: who)
            let reason = "worker \(who.name) could not start it: \(done.reason.map(Self.oneLine) ?? "unknown reason")"
            do {
                let job = try await db.requeue(
                    done.job, .init(kind: .rejected, worker: who.workerId, reason: reason, alone: true), limits: config.lossLimits, now: wall())
                logger.warning("worker rejected a job", metadata: ["grid.job.id": "\(done.job.jobId)", "grid.job.state": "\(job?.state.rawValue ?? "-")"])
            } catch {
                logger.error("could not requeue job", metadata: ["grid.job.id": "\(done.job.jobId)", "grid.error": "\(error)"])
                return .error(Msg.Error(GridError(.internal, "could not record the result; send it again")))
            }
            wake.yield()
            return .jobDoneAck(Msg.JobDoneAck(job: done.job))
        }
        var outputs: [StoredFile] = []
        var bytes = payload ?? ByteBuffer()
        for file in done.files {
            guard (try? FileName.validate(file.name)) != nil, file.size >= 0, let slice = bytes.readSlice(length: file.size) else {
                return .error(Msg.Error(GridError(.badRequest, "JOB_DONE files do not match its bulk bytes or have bad names")))
            }
            outputs.append(StoredFile(name: file.name, data: Data(slice.readableBytesView)))
        }
        let (current, stored) = await currentRun(done.job.jobId)
        // A report that would wait for its log is held with its outputs: the held reports of one owner's workers are bounded in bytes.
        if (done.logBytes ?? 0) > stored {
            let held = reports.held.values.filter { $0.report.who.ownerId == who.ownerId && $0.ref != done.job }
                .reduce(0) { $0 + $1.report.outputs.reduce(0) { $0 + $1.data.count } }
            let adding = outputs.reduce(0) { $0 + $1.data.count }
            if held + adding > config.maxHeldReportBytes {
                return .error(
                    Msg.Error(
                        GridError(
                            .rateLimited,
                            "the manager holds \(held >> 20) MiB of reports of this owner's workers waiting for their logs; send the log of job \(done.job.jobId) first, then its report")))
            }
        }
        let decision = reports.reported(
            Pending(who: who, done: done, outputs: outputs), ref: done.job, worker: who.workerId, reportedLogBytes: done.logBytes,
            cancelled: done.outcome == .cancelled, current: current.map(Self.currentRun), storedLogBytes: stored, now: now(), wall: wall())
        return await carryOut(decision, Pending(who: who, done: done, outputs: outputs), job: current, fresh: true)
    }

    /// What `RunReports` needs of a job as the store has it.
    private static func currentRun(_ job: JobRecord) -> RunReports<Pending>.CurrentRun {
        .init(state: job.state, attempt: job.attempt, worker: job.workerId, cancelRequested: job.cancelRequested)
    }

    /// The job as the store has it now, and how much of its log it holds.
    private func currentRun(_ id: JobID) async -> (JobRecord?, Int64) {
        guard let job = try? await db.job(id: id) else { return (nil, 0) }
        return (job, (try? await db.logOffset(of: id)) ?? 0)
    }

    /// Decides the held report of job `id` again (more of its log came, or its wait ran out): the worker it came from,
    /// and the answer for it (nil: it waits on).
    private func recheck(_ id: JobID) async -> (worker: WorkerID, reply: GridMessage?)? {
        let (current, stored) = await currentRun(id)
        guard
            let (held, decision) = reports.recheck(id, current: current.map(Self.currentRun), storedLogBytes: stored, now: now())
        else { return nil }
        return (held.worker, await carryOut(decision, held.report, job: current, fresh: false))
    }

    /// Carries out what `RunReports` decided for a report: the answer to send the worker (nil: none yet, it waits).
    /// `fresh`: the report just came (not a held one decided again).
    private func carryOut(_ decision: RunReports<Pending>.Decision, _ pending: Pending, job: JobRecord?, fresh: Bool) async -> GridMessage? {
        let (who, done, outputs) = (pending.who, pending.done, pending.outputs)
        let receivedAt: Double
        switch decision {
        case .stale:
            // Not this worker's current run (any more): nothing to store; the worker may forget it.
            logger.info("ignored a stale JOB_DONE", metadata: ["grid.job.id": "\(done.job.jobId)", "grid.worker.id": "\(who.workerId)"])
            return .jobDoneAck(Msg.JobDoneAck(job: done.job))
        case .wait(let missing):
            logger.log(
                level: fresh ? .info : .debug,
                "run ended; waiting for the rest of its log",
                metadata: ["grid.job.id": "\(done.job.jobId)", "grid.worker.id": "\(who.workerId)", "grid.log.missing": "\(missing)"])
            leases.release(done.job.jobId)
            return nil
        case .giveUp(let why):
            leases.release(done.job.jobId)
            leased[done.job.jobId] = nil
            keepAway(done.job.jobId, from: who)
            await interrupt(done.job, .init(kind: .incompleteReport, worker: who.workerId, reason: "worker \(who.name): \(why)", alone: true))
            return .jobDoneAck(Msg.JobDoneAck(job: done.job))
        case .notCancelled:
            leases.release(done.job.jobId)
            leased[done.job.jobId] = nil
            keepAway(done.job.jobId, from: who)
            await interrupt(
                done.job,
                .init(kind: .stoppedByWorker, worker: who.workerId, reason: "worker \(who.name) stopped the run, though nobody cancelled the job", alone: true))
            return .jobDoneAck(Msg.JobDoneAck(job: done.job))
        case .settle(let at):
            receivedAt = at
        }
        guard let job else { return .jobDoneAck(Msg.JobDoneAck(job: done.job)) }
        let state: JobState =
            switch done.outcome {
            case .completed: .completed
            case .failed: .failed
            case .timedOut: .timedOut
            case .cancelled, .rejected: .cancelled
            }
        // One worker's word that the job's environment could not be built ends the job only as `EnvironmentFailure`
        // rules; otherwise a worker of another owner tries (a check run's refunded run is replaced anyway).
        if done.refund == true, state == .failed, job.checkOf == nil, job.spec.requirements?.isEmpty == false,
            let why = await environmentFailureGoesOn(job, who: who, reason: done.reason)
        {
            // Only its own lease: the store was read meanwhile, and the run may have been given to another worker.
            if leases.holds(done.job, worker: who.workerId) {
                leases.release(done.job.jobId)
                leased[done.job.jobId] = nil
            }
            // The store adds the worker's owner to the job's `avoid_owners` with the interruption, in one transaction:
            // the queue reads both together, so no keep-away of the owner's workers is needed here as well.
            await interrupt(done.job, .init(kind: .environmentFailed, worker: who.workerId, reason: why, alone: true))
            return .jobDoneAck(Msg.JobDoneAck(job: done.job))
        }
        // Paid by the manager's own clock: never more than it saw pass since the run started (JOB_STARTED, else the
        // assignment), nor more than the requested minutes, whatever the worker reports.
        let billedUntil = CreditRules.billedUntil(received: receivedAt, cancelledAt: cancelledAt[done.job.jobId], grace: config.leaseSeconds)
        let observed = CreditRules.observedMilliseconds(from: runStarted[done.job] ?? job.startedAt ?? receivedAt, to: billedUntil)
        let runtime = CreditRules.paidRuntime(job.spec, reportedMilliseconds: done.runtimeMs, observedMilliseconds: observed)
        var result = GridDatabase.RunResult(
            state: state, exitCode: done.exitCode, runtimeMs: runtime, peakMemoryKb: done.peakMemoryKb,
            cpuSeconds: CreditRules.creditedCPUSeconds(job.spec, reported: done.cpuSeconds, paidRuntimeMs: runtime),
            reason: done.reason.map(Self.oneLine))
        // A job whose environment could not be built, or that was cancelled before it started, never ran: the worker
        // waives its pay and the hold goes back whole. Only a failed run of a job that declares packages, or a cancelled
        // one, can be that (a refunded run is never checked: a worker calling its made-up results refunded went
        // unchecked; a cancelled run is never checked anyway).
        result.refund = done.refund == true && (state == .cancelled || (state == .failed && job.spec.requirements?.isEmpty == false))
        // What the worker says became of the outputs it saved in the grid: a line of the job's history, never its log
        // (a check run saves nothing, and verification compares logs).
        // And, as such a line too, which grid inputs were strangers' public files (the submitter stores none of the name).
        let notes = [
            Msg.SavedOutput.note(done.saved, files: done.files, prefix: job.checkOf == nil ? job.spec.saveOutputsAs : nil),
            job.checkOf == nil ? Msg.PublicInput.note(done.publicInputs, declared: job.spec.gridInputs) : nil,
        ].compactMap { $0 }
        result.note = notes.isEmpty ? nil : notes.joined(separator: "; ")
        do {
            if let finished = try await db.finishRun(
                done.job, worker: who.workerId, result: result, outputs: outputs, verification: config.verification,
                checkers: checkers(), now: wall())
            {
                let job = finished.job
                forget(job.id)
                switch job.state {
                case .completed: windows.completed(on: who.workerId, jobOwner: job.ownerId)
                case .failed, .timedOut: cool(on: who.workerId, of: job)
                default: break
                }
                logger.info(
                    "job ended",
                    metadata: [
                        "grid.job.id": "\(job.id)", "grid.job.state": "\(job.state.rawValue)", "grid.worker.id": "\(who.workerId)",
                        "grid.job.paid": "\(job.paid ?? 0)", "grid.job.verification": "\(job.verification?.rawValue ?? "-")",
                        "grid.job.check": "\(finished.checkQueued.map(String.init) ?? "-")",
                    ])
                await noteVerification(finished)
            } else {
                logger.info("ignored a stale JOB_DONE", metadata: ["grid.job.id": "\(done.job.jobId)", "grid.worker.id": "\(who.workerId)"])
            }
            wake.yield()
            return .jobDoneAck(Msg.JobDoneAck(job: done.job))
        } catch {
            logger.error("could not record job end", metadata: ["grid.job.id": "\(done.job.jobId)", "grid.error": "\(error)"])
            return .error(Msg.Error(GridError(.internal, "could not record the result; send it again")))
        }
    }

    /// Whether a worker's word that `job`'s Python environment could not be built leaves the job to a worker of another
    /// owner (`EnvironmentFailure`): why, for the job's history; nil when the report ends the job. A store that cannot
    /// say who reported it before counts nobody: the job goes on rather than ending on one stranger's word.
    private func environmentFailureGoesOn(_ job: JobRecord, who: WorkerSession.Identity, reason: String?) async -> String? {
        let earlier = (try? await db.environmentFailureOwners(of: job.id)) ?? []
        let couldRun = Placement.checkOwners(job.placementJob, workers: placementWorkers())
        guard !EnvironmentFailure.endsJob(reporter: who.ownerId, submitter: job.ownerId, earlier: earlier, couldRun: couldRun) else { return nil }
        return "worker \(who.name) could not prepare its Python environment (\(reason.map(Self.oneLine) ?? "no reason given")); "
            + "a worker of another owner tries it before the job fails"
    }

    // MARK: - Peer services

    /// The online workers that listen for peers, as the `PEERS` message lists them.
    func onlinePeers() -> [Msg.PeerInfo] {
        live.values.compactMap { w in
            guard let port = w.registration.port, port > 0, !quarantined.contains(w.identity.workerId) else { return nil }
            return Msg.PeerInfo(
                workerId: w.identity.workerId, name: w.identity.name, host: w.registration.host ?? "127.0.0.1", port: port,
                webPort: w.registration.webPort)
        }.sorted { $0.workerId < $1.workerId }
    }

    /// Tells every online worker who the peers are (after a join, once `REGISTERED` was sent, or a leave).
    func announcePeers() async {
        let peers = onlinePeers()
        let barred = bars.announced(now: Int64(wall()))
        logger.debug("announcing peers", metadata: ["grid.peers": "\(peers.map(\.workerId))", "grid.peers.barred": "\(barred.map(\.workerId))"])
        // Only workers that offer peer services (a peer port) care.
        for (id, w) in live where (w.registration.port ?? 0) > 0 {
            await send(.peers(Msg.Peers(peers: peers, barred: barred.isEmpty ? nil : barred)), to: id)
        }
    }

    /// `GET_BEST_PEER`: the online peer `PeerChoice` picks (least work per slot, the asker on a tie, then the lowest
    /// load; never one that is stopping).
    /// `sender`: the worker that asked (for itself, or relaying a user's question).
    func bestPeer(_ ask: Msg.GetBestPeer, from sender: WorkerID) -> GridMessage {
        let peers = Dictionary(uniqueKeysWithValues: onlinePeers().map { ($0.workerId, $0) })
        let state = liveState()
        let t = now()
        let candidates = live.values.compactMap { w -> PeerChoice.Candidate? in
            // A peer whose interpreters have no sandbox takes only its owner's tasks (who reach it directly).
            guard peers[w.identity.workerId] != nil, w.registration.sandbox?.tasksAcceptOthers != false else { return nil }
            let sent = PeerChoice.reserved(count: w.reserved, at: w.reservedAt, now: t)
            let (tasks, over) = w.tasks.addingReportingOverflow(sent)
            let busy = PeerChoice.busy(jobs: state[w.identity.workerId]?.running ?? 0, tasks: over ? .max : tasks, slots: w.registration.slots)
            return PeerChoice.Candidate(id: w.identity.workerId, busy: busy, load: w.load, stopping: w.stopping)
        }
        guard let best = PeerChoice.best(candidates, prefer: ask.prefer), let info = peers[best.id] else {
            return .error(Msg.Error(GridError(.notFound, "no peer is online to run the task")))
        }
        // A peer asking for one of its own tasks is sent elsewhere: that task counts there until its next load report,
        // or the end of the window the first such task opened (`PeerChoice.counts`, `reserve`); no more of them in a
        // window than the peer reported holding (`mayCount`): one asking in a loop makes others look busier by its own
        // load at most.
        if PeerChoice.counts(taskId: ask.taskId, prefer: ask.prefer, sender: sender, senderIsPeer: peers[sender] != nil, best: best.id),
            let asker = live[sender], PeerChoice.mayCount(spent: asker.spent, at: asker.spentAt, now: t, reported: asker.tasks),
            let w = live[best.id]
        {
            let next = PeerChoice.reserve(count: w.reserved, at: w.reservedAt, now: t)
            live[best.id]?.reserved = next.count
            live[best.id]?.reservedAt = next.at
            let spent = PeerChoice.reserve(count: asker.spent, at: asker.spentAt, now: t)
            live[sender]?.spent = spent.count
            live[sender]?.spentAt = spent.at
        }
        // Debug, not info: a busy grid asks this for thousands of tasks a second.
        logger.debug(
            "best peer chosen", metadata: ["grid.task.id": "\(ask.taskId ?? "-")", "grid.worker.id": "\(best.id)", "grid.peer.busy": "\(best.busy)"])
        return .bestPeer(Msg.BestPeer(peer: info, load: best.busy))
    }

    /// A fresh peer credential for online worker `id`: its id, the address `PEERS` lists for it, and the key it sent
    /// in `HELLO`, signed by the manager. Nil when it has no key or no peer port, or is quarantined (not a peer).
    /// The store keeps which join token it was given under and until when, for a revocation of that token by this
    /// manager or the next (`joinTokenRevoked`): one that could not be kept is not given.
    func credential(for id: WorkerID) async -> PeerTrust.Credential? {
        guard let w = live[id], let key = w.identity.peerKey, let port = w.registration.port, port > 0, !quarantined.contains(id) else { return nil }
        let c = authority.credential(workerId: id, host: w.registration.host ?? "127.0.0.1", port: port, key: key, now: Int64(wall()))
        do {
            try await db.recordCredential(id, tokenHash: w.identity.tokenHash, expires: c.expires)
        } catch {
            logger.error("could not keep a peer credential in the store; none given", metadata: ["grid.worker.id": "\(id)", "grid.error": "\(error)"])
            return nil
        }
        // The token may have been revoked, or the worker quarantined, while the store was written.
        guard live[id]?.connection == w.connection, !quarantined.contains(id) else { return nil }
        return c
    }

    /// `POST /api/v1/peer-tickets`: person `user`'s certificate for `key`, with a forwarding ticket for `worker` when it
    /// names an online worker that listens for peers (`PeerTrust.Grant`); for any other name, none.
    /// `tokenHash`: the SHA-256 of the API token that asked, named in the certificate so that revoking it reaches the
    /// certificate at peers (`PeerTrust.Standing`).
    func peerGrant(user: String, key: String, worker: WorkerID?, tokenHash: String) -> PeerTrust.Grant {
        let holder = worker.flatMap { id in live[id].flatMap { ($0.registration.port ?? 0) > 0 && !quarantined.contains(id) ? id : nil } }
        return authority.grant(user: user, key: key, holder: holder, now: Int64(wall()), tokenHash: tokenHash)
    }

    /// `AUTH_CHECK {certificate}`: whether the API token a person's certificate was granted under still stands. An
    /// `AUTH_CHECK {token}` (what a peer asked for a client older than `SESSION`, which handed it the person's token) is
    /// refused: a secret never goes to a peer, and a worker holding a stolen token learns nothing of it here, nor gets a
    /// ticket to act for its owner.
    func authCheck(_ check: Msg.AuthCheck) async -> GridMessage {
        guard let certificate = check.certificate else {
            return .error(
                Msg.Error(GridError(.badRequest, "AUTH_CHECK takes a person's certificate; a peer checks no tokens (a secret never goes to a peer)")))
        }
        return await standing(certificate)
    }

    /// `AUTH_CHECK {certificate}`: whether the API token a person's certificate was granted under still stands
    /// (`PeerTrust.Standing` decides).
    private func standing(_ certificate: PeerTrust.UserCertificate) async -> GridMessage {
        if let refusal = PeerTrust.Standing.checkSigned(certificate, managerKey: authority.publicKey, now: Int64(wall())) {
            return .error(Msg.Error(refusal))
        }
        do {
            var holder: (user: UserRecord, kind: TokenKind)?
            if let token = certificate.tokenHash { holder = try await db.tokenOwner(hash: token) }
            if let refusal = PeerTrust.Standing.check(
                certificate, managerKey: authority.publicKey, now: Int64(wall()), holder: holder.map { ($0.user.username, $0.kind.rawValue) })
            {
                return .error(Msg.Error(refusal))
            }
            return .authOk(Msg.AuthOk(user: certificate.user, kind: TokenKind.api.rawValue))
        } catch {
            return .error(Msg.Error(GridError(.internal, "could not check the certificate's token: \(error)")))
        }
    }

    /// Queues `message` for `worker`'s connection (`WorkerSendQueue`): it never waits on the worker's socket. A
    /// worker whose queue is full stopped reading: its connection is closed.
    private func send(_ message: GridMessage, payload: ByteBuffer? = nil, to worker: WorkerID) async {
        enqueue(.frame(GridFrame(message, payload: payload)), to: worker)
    }

    private func enqueue(_ entry: WorkerSendQueue.Entry, to worker: WorkerID) {
        guard let w = live[worker] else { return }
        if !w.queue.enqueue(entry) {
            logger.warning("a worker stopped reading what the manager sends; closing its connection", metadata: ["grid.worker.id": "\(worker)"])
            w.close()
        }
    }

    // MARK: - Requests from the API

    /// Something changed that may let a job start.
    nonisolated func jobsChanged() { wake.yield() }

    /// Cancels a job for its owner: at once when it has not started, through its worker when it runs.
    func cancel(_ id: JobID, by user: UserID) async throws {
        switch try await db.requestCancel(id, by: user, now: wall()) {
        case .cancelled:
            wake.yield()
        case .stopRunning(let ref, let worker):
            // The worker is asked to stop, but not trusted to: its lease is no longer renewed, so the job ends (cancelled,
            // refunded) within one lease period even if it never obeys.
            leases.revoke(id, now: now())
            // The first cancel counts: a second must not move the end of what is billed.
            cancelledAt[id] = cancelledAt[id] ?? wall()
            if live[worker] == nil {
                logger.info("cancel waits for the worker to return or the lease to end", metadata: ["grid.job.id": "\(id)"])
            }
            await send(.cancel(Msg.Cancel(job: ref, reason: "cancelled by its owner")), to: worker)
        }
    }

    /// Live figures of each connected worker: free resources and running jobs.
    func liveState() -> [WorkerID: (free: Resources, running: Int, load: Double)] {
        var out: [WorkerID: (free: Resources, running: Int, load: Double)] = [:]
        let held = leases.jobsByWorker()
        for (id, w) in live {
            let jobs = held[id] ?? []
            let used = jobs.reduce(Resources.zero) { $0 + (leased[$1.jobId]?.spec.resources ?? .zero) }
            out[id] = (w.registration.resources - used, jobs.count, w.load)
        }
        return out
    }

    /// What each online worker said about its sandbox in `REGISTER` (workers that said nothing are left out).
    func sandboxReports() -> [WorkerID: SandboxReport] {
        live.compactMapValues { $0.registration.sandbox }
    }

    /// One utilisation sample: CPUs online, CPUs held by running jobs, workers online, jobs running.
    func utilisation() -> (cpusTotal: Int, cpusUsed: Int, workers: Int, running: Int) {
        var total = 0
        var used = 0
        var running = 0
        let held = leases.jobsByWorker()
        for (id, w) in live {
            let jobs = held[id] ?? []
            total += w.registration.resources.cpus
            used += min(w.registration.resources.cpus, jobs.reduce(0) { $0 + (leased[$1.jobId]?.spec.cpus ?? 0) })
            running += jobs.count
        }
        return (total, used, live.count, running)
    }

    // MARK: - Scheduling and leases

    /// Runs until cancelled: plans whenever something changed (and every second), expires leases four times a second.
    func runLoops() async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.schedulerLoop() }
            group.addTask { await self.leaseLoop() }
            await group.waitForAll()
        }
    }

    private func schedulerLoop() async {
        let ticker = Task { [wake] in
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(1))
                wake.yield()
            }
        }
        defer { ticker.cancel() }
        for await _ in wakes {
            if Task.isCancelled { break }
            do {
                try await schedulePass()
            } catch {
                logger.error("scheduling pass failed", metadata: ["grid.error": "\(error)"])
            }
        }
    }

    /// The online workers as the scheduler sees them now.
    private func placementWorkers() -> [Placement.Worker] {
        let state = liveState()
        let rooms = othersRooms()
        return live.values.map { w in
            let s = state[w.identity.workerId]!
            let disk = Placement.Worker.jobDisk(registered: w.registration.jobDiskBytes)
            var worker = Placement.Worker(
                id: w.identity.workerId, total: w.registration.resources, free: s.free, load: s.load, tier: w.registration.tier,
                freeSlots: w.stopping || w.diskFull ? 0 : max(0, w.registration.slots - s.running), tieBreak: w.tieBreak, owner: w.identity.ownerId,
                acceptsOthers: w.registration.sandbox?.acceptsOthers ?? true, quarantined: quarantined.contains(w.identity.workerId),
                envs: w.envs, python: w.registration.python,
                othersRoom: rooms[w.identity.ownerId] ?? OthersWindow.first,
                maxJobDiskGb: disk.maxJobDiskGb, enforcesJobDisk: disk.enforcesJobDisk)
            worker.draining = w.stopping || w.diskFull
            return worker
        }
    }

    /// One scheduling pass: bring the queue up to date → plan (pure) → commit (one transaction) → send assignments.
    func schedulePass() async throws {
        await expireWaitingChecks()
        try await syncQueue()
        guard !queue.isEmpty else { return }
        for (id, avoid) in rejections.avoidSets(now: now()) { queue.setAvoid(id, avoid) }
        let workers = placementWorkers()
        let usage = try await db.recentUsage(since: wall() - 86_400)
        // Known to no worker, changing every quarter of the check wait: where check runs go (`Placement.checkOwner`).
        let seed = Placement.checkSeed(secret: checkSecret, now: wall(), every: max(60, Verification.checkWaitLimit(config.checkWaitSeconds) / 4))
        let plan = queue.plan(workers: workers, usage: usage, now: now(), checkSeed: seed)
        let started = try await db.apply(plan.assignments, now: wall())
        queue.committed(plan, started: started.map(\.id))
        // Every lease before the first assignment is sent (each send may suspend, and a cancel that ran meanwhile found
        // no lease to revoke). A cancel that came while the store started a job is kept by `revoke`: that job is
        // assigned, then told to stop, and its lease is never renewed.
        for job in started {
            guard let worker = job.workerId else { continue }
            leases.grant(job.ref, to: worker, now: now())
            leased[job.id] = (job.spec, job.ownerId)
            deadlines[job.id] = (job.ref, assignedDeadline(job))
        }
        for job in started {
            guard let worker = job.workerId else { continue }
            await assign(job, to: worker)
            if leases.isRevoked(job.id) { await send(.cancel(Msg.Cancel(job: job.ref, reason: "cancelled by its owner")), to: worker) }
        }
        let changed = queue.changedReasons(plan.pending)
        try await db.setPendingReasons(changed)
        for (id, reason) in changed { queue.recorded(reason: reason, for: id) }
    }

    /// Ends the check runs that waited `config.checkWaitSeconds` for a worker, a few times within that wait (at most
    /// once a minute): their jobs' verification is inconclusive, and the checked runs' escrow released.
    private func expireWaitingChecks() async {
        let every = min(60, max(0.5, config.checkWaitSeconds / 4))
        guard now() - checksExpired >= every else { return }
        checksExpired = now()
        do {
            for job in try await db.expireWaitingChecks(waitSeconds: config.checkWaitSeconds, now: wall()) {
                logger.notice("a check waited too long for a worker: the job's verification is inconclusive", metadata: ["grid.job.id": "\(job)"])
            }
        } catch {
            logger.error("could not end the checks that waited too long", metadata: ["grid.error": "\(error)"])
        }
    }

    /// Brings `queue` up to date with the store: what changed since the last pass, or the whole queue on the first pass,
    /// after the log was cut past this copy's position, and every five minutes (a bound on any copy's drift). Cuts the
    /// log behind it now and then.
    private func syncQueue() async throws {
        if now() - queueFullRead > 300 { queuePosition = nil }
        let sync = try await db.queueSync(after: queuePosition)
        queue.catchUp(with: sync)
        if sync.full { queueFullRead = now() }
        queuePosition = sync.upTo
        if sync.upTo > queueCut.position, sync.upTo - queueCut.position >= 4_096 || now() - queueCut.at > 10 {
            try await db.pruneQueueChanges(through: sync.upTo)
            queueCut = (sync.upTo, now())
        }
    }

    private func assign(_ job: JobRecord, to worker: WorkerID) async {
        do {
            // Names and sizes only: the writer reads the bytes as it sends them (`bundle(of:)`).
            let files = try await db.fileList(of: job.id, outputs: false)
            let owner = try await db.user(id: job.ownerId)?.username
            // Every run of a job, check runs included, gets the same seed: the job's (a check run's is its job's).
            // A check run saves no outputs in the grid (`JobSpec.forCheckRun`): it gets no write ticket.
            var spec = job.checkOf == nil ? job.spec : job.spec.forCheckRun
            spec.seed = spec.seed ?? authority.jobSeed(for: job.checkOf ?? job.id)
            // A job that reads grid files gets the owner's read ticket for this worker: those files, and nothing else.
            let inputs = spec.gridInputs ?? []
            let ticket = owner.flatMap { inputs.isEmpty ? nil : authority.readTicket(user: $0, holder: worker, files: inputs, now: Int64(wall())) }
            // A job that saves its outputs in the grid gets a write ticket for this worker: files under that prefix of the
            // owner's, for the job's time limit and an hour more (setting up its environment, storing the outputs).
            let seconds = Int64(clamping: min(max(spec.minutes, 0), 1 << 20)) * 60 + 3600
            let writeTicket = owner.flatMap { user in
                spec.saveOutputsAs.flatMap { $0.isEmpty ? nil : $0 }.map { authority.writeTicket(user: user, holder: worker, prefix: $0, now: Int64(wall()), seconds: seconds) }
            }
            let message = Msg.JobAssign(
                job: job.ref, spec: spec, script: job.scriptName, files: files.map { FileEntry(name: $0.name, size: $0.size) },
                owner: owner, ticket: ticket, writeTicket: writeTicket)
            // The files themselves are read again as the connection's writer sends them (`WorkerSendQueue`).
            enqueue(.assign(message), to: worker)
            logger.info("job assigned", metadata: ["grid.job.id": "\(job.id)", "grid.worker.id": "\(worker)", "grid.job.attempt": "\(job.attempt)"])
        } catch {
            logger.error("could not load job files", metadata: ["grid.job.id": "\(job.id)", "grid.error": "\(error)"])
        }
    }

    /// The bundle of job `id` as a `JOB_ASSIGN` carries it (its script and inputs, in order); nil when it cannot be
    /// read. For the connections' writers (`WorkerSendQueue.drain`), off the actor.
    nonisolated func bundle(of id: JobID) async -> ByteBuffer? {
        guard let files = try? await db.files(of: id, outputs: false) else { return nil }
        var payload = ByteBuffer()
        for f in files { payload.writeBytes(f.data) }
        return payload
    }

    private func leaseLoop() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(250))
            await expireLeases()
        }
    }

    func expireLeases() async {
        let t = now()
        // A worker whose connection is busy with a frame of its (a run's outputs on a slow link) is heard from, its
        // heartbeats waiting behind the frame; once the frame is in and handled, it is heard from now.
        var busyNow: [WorkerID: UInt64] = [:]
        for (id, w) in live { if let flow = w.flow, flow.busy(quiet: config.leaseSeconds) { busyNow[id] = flow.progress } }
        let spells = busySpells.look(busyNow: busyNow, now: t)
        for id in spells.ended {
            guard let last = live[id]?.lastHeartbeat else { continue }
            live[id]?.lastHeartbeat = max(last, t)
            leases.heard(worker: id, now: t)
        }
        // A worker silent for a whole lease period is offline, even if its socket is still open.
        for (id, w) in live where !spells.busy.contains(id) && t - w.lastHeartbeat > config.leaseSeconds {
            live[id] = nil
            // Its connection is closed too: a worker that was only slow (suspended, starved) sees it end, connects again
            // and registers, instead of talking on into a connection the manager no longer listens to. Both ways: a
            // half-closed one went on reading (a stranger kept 64 MiB frames half sent on each).
            w.queue.close()
            w.close()
            try? await db.setWorkerOffline(id, now: wall())
            logger.warning("worker stopped sending heartbeats", metadata: ["grid.worker.id": "\(id)"])
            await announcePeers()
        }
        let expired = leases.expire(now: t, busy: spells.busy.filter { live[$0] != nil }, revokedHold: busySpells.most)
        let batch = Dictionary(grouping: expired, by: \.worker).mapValues(\.count)
        let alone = Dictionary(uniqueKeysWithValues: batch.map { ($0.key, lostAlone($0.key, count: $0.value, now: t)) })
        // The workers' names, read once for the whole batch (a worker lost with many runs expires them together).
        let names = expired.isEmpty ? [:] : Dictionary(((try? await db.workers()) ?? []).map { ($0.id, $0.name) }, uniquingKeysWith: { a, _ in a })
        for lease in expired {
            leased[lease.job.jobId] = nil
            let name = names[lease.worker] ?? lease.worker
            await interrupt(
                lease.job, .init(kind: .workerLost, worker: lease.worker, reason: "worker \(name) stopped responding", alone: alone[lease.worker] ?? false))
            if live[lease.worker] != nil {
                await send(.cancel(Msg.Cancel(job: lease.job, reason: "the lease on this job expired")), to: lease.worker)
            }
        }
        for worker in batch.keys { recentLoss[worker] = t }
        // Only what is still that run's: the interruptions above awaited the store, and a pass may have given a job that
        // went back to the queue to another worker meanwhile (its new lease is not this one's to drop).
        for lease in expired where leases.holder(of: lease.job.jobId).map({ $0.job == lease.job }) ?? true { forget(lease.job.jobId) }
        await stopOverruns()
        // Reports that waited too long for the rest of their log.
        for id in reports.due(now: t) {
            if let (worker, reply) = await recheck(id), let reply { await send(reply, to: worker) }
        }
    }

    /// For a run that has not reported `JOB_STARTED` yet and declares Python packages: how many online workers have its
    /// environment cached (`status` shows it while the environment is prepared).
    func preparation(of ref: JobRef, spec: JobSpec) -> String? {
        guard spec.requirements?.isEmpty == false, leases.holder(of: ref.jobId)?.job == ref, runStarted[ref] == nil else { return nil }
        let digest = spec.pythonRequirements.digest
        let cached = live.values.filter { $0.envs.contains(digest) }.count
        return "preparing environment (cached on \(cached) of \(live.count) worker\(live.count == 1 ? "" : "s"))"
    }

    /// The manager is done with a job's run: forget its lease and everything kept about it.
    private func forget(_ id: JobID) {
        leases.release(id)
        leased[id] = nil
        rejections.forget(id)
        deadlines[id] = nil
        cancelledAt[id] = nil
        runStarted = runStarted.filter { $0.key.jobId != id }
    }

    /// Runs still leased past their minutes plus the grace: the worker did not stop them, so the manager does. The job
    /// ends `timed_out`, paid its minutes (the work was done for that long), and the worker is told to stop it.
    private func stopOverruns() async {
        let clock = wall()
        // A run its submitter cancelled is not timed out and paid its whole limit: its revoked lease ends it (refunded),
        // or its report is billed to a lease period after the cancel (the review: a worker that kept its connection busy
        // held a cancelled run past its limit and was paid all of it).
        for (id, d) in deadlines where clock > d.at && cancelledAt[id] == nil {
            guard let lease = leases.holder(of: id), lease.job == d.ref, let spec = leased[id]?.spec else {
                deadlines[id] = nil
                continue
            }
            let result = GridDatabase.RunResult(
                state: .timedOut, exitCode: nil, runtimeMs: Int64(spec.minutes) * 60_000, peakMemoryKb: 0, cpuSeconds: 0,
                reason: "time limit reached (\(spec.minutes) min): still running \(Int(config.timeLimitGraceSeconds)) s past it, stopped by the manager")
            do {
                let finished = try await db.finishRun(
                    d.ref, worker: lease.worker, result: result, outputs: [], verification: config.verification,
                    checkers: checkers(), now: clock)
                let job = finished?.job
                if let job { cool(on: lease.worker, of: job) }
                if let finished { await noteVerification(finished) }
                logger.warning("run past its time limit; stopped", metadata: ["grid.job.id": "\(id)", "grid.worker.id": "\(lease.worker)"])
                forget(id)
                if job != nil {
                    await send(.cancel(Msg.Cancel(job: d.ref, reason: "past its time limit")), to: lease.worker)
                }
            } catch {
                logger.error("could not time out job", metadata: ["grid.job.id": "\(id)", "grid.error": "\(error)"])
            }
            wake.yield()
        }
    }

    /// Carries out what a settlement decided about verification: quarantined workers stop getting others' jobs, and
    /// leave the peers (`onlinePeers`): a worker caught forging results holds and serves nobody's memory, files or
    /// function tasks either, and renews no peer credential.
    private func noteVerification(_ finished: GridDatabase.Finished) async {
        for o in finished.outcomes {
            windows.checked(o.outcome, worker: o.worker, owner: o.owner)
        }
        for (worker, reason) in finished.quarantined {
            quarantined.insert(worker)
            await bar(worker)
            logger.warning("worker quarantined", metadata: ["grid.worker.id": "\(worker)", "grid.reason": "\(reason)"])
        }
        if !finished.quarantined.isEmpty { await announcePeers() }
        if finished.checkQueued != nil { wake.yield() }
    }

    /// An admin lifted a worker's quarantine. False when it was not quarantined.
    func liftQuarantine(_ worker: WorkerID) async throws -> Bool {
        let lifted = try await db.liftQuarantine(worker, now: wall())
        quarantined.remove(worker)
        if lifted {
            logger.info("quarantine lifted", metadata: ["grid.worker.id": "\(worker)"])
            wake.yield()
            await announcePeers()
        }
        return lifted
    }

    /// A run of `job` on `worker` failed or timed out: if it is another user's job, it keeps its place in the window of
    /// the worker's owner for the minute it is paid at least (`OthersWindows.ended`).
    private func cool(on worker: WorkerID, of job: JobRecord) {
        let ran = job.startedAt.map { wall() - $0 } ?? 0
        windows.ended(on: worker, jobOwner: job.ownerId, ranSeconds: ran, now: now())
    }

    /// How many more other users' jobs each online owner's workers may be given now (`OthersWindows.rooms`): every
    /// lease counts, the workers' that are away too (a worker that disconnects keeps its runs until their leases end),
    /// and every report waiting for its logs.
    private func othersRooms() -> [UserID: Int] {
        var held: [(worker: WorkerID, jobOwner: UserID)] = []
        for (id, lease) in leases.leases { if let owner = leased[id]?.owner { held.append((lease.worker, owner)) } }
        for h in reports.held.values { if let owner = leased[h.ref.jobId]?.owner { held.append((h.worker, owner)) } }
        return windows.rooms(for: Set(live.values.map(\.identity.ownerId)), held: held, now: now())
    }

    /// When a run assigned at `job.startedAt` is past its time limit, before its `JOB_STARTED` says when it began: its
    /// minutes and the grace, and the environment's grace for a job that declares packages (building them is not
    /// counted). Used at the assignment and when a manager takes over running jobs.
    private func assignedDeadline(_ job: JobRecord) -> Double {
        let preparing = job.spec.requirements?.isEmpty == false ? config.environmentGraceSeconds : 0
        return (job.startedAt ?? wall()) + Double(job.spec.minutes) * 60 + config.timeLimitGraceSeconds + preparing
    }

    /// The owners whose workers could run a check run, now and known (registered since this manager started, or
    /// remembered by the store): workers that take other users' jobs and are not quarantined (`Verification.select`).
    private func checkers() -> Verification.Checkers {
        let online = live.values.filter { $0.registration.sandbox?.acceptsOthers ?? true }.filter { !quarantined.contains($0.identity.workerId) }
        return Verification.Checkers(
            online: Set(online.map(\.identity.ownerId)),
            known: Set(knownCheckers.filter { !quarantined.contains($0.key) }.values))
    }

    /// Whether a worker is quarantined now.
    func isQuarantined(_ worker: WorkerID) -> Bool { quarantined.contains(worker) }

    /// Whether `count` runs lost at once from `worker` were all it lost: one run, while the worker still heartbeats for
    /// its other jobs or held no other, and nothing else lost from it within a lease period (`LossPolicy.Evidence`).
    private func lostAlone(_ worker: WorkerID, count: Int, now t: Double) -> Bool {
        guard count == 1 else { return false }
        if live[worker] == nil, !leases.jobs(of: worker).isEmpty { return false }
        if let last = recentLoss[worker], t - last <= config.leaseSeconds { return false }
        return true
    }

    /// A run was interrupted: the store records it and requeues the job, or gives it up (refunded) as `LossPolicy`
    /// decides, in one transaction.
    /// Keeps `job` away from the worker that refused it or ended its run on its own word (stopped it though nobody
    /// cancelled it, or sent a report short of its log) for a while (`Rejections`); a second of
    /// the same owner's workers doing so keeps it away from all of that owner's. A hostile worker ended a job in a
    /// second this way and was given it straight back, ten times, until it failed (refunded, so resubmitted for free):
    /// now the job goes to another machine. (Once may be that machine's fault, honestly: a crash, a full disk.)
    private func keepAway(_ job: JobID, from who: WorkerSession.Identity) {
        let t = now()
        let ownersWorkers = live.filter { $0.value.identity.ownerId == who.ownerId }.map(\.key)
        let again = !rejections.avoid(job, now: t).isDisjoint(with: ownersWorkers)
        rejections.rejected(job, by: who.workerId, now: t)
        if again { for id in ownersWorkers { rejections.rejected(job, by: id, now: t) } }
    }

    private func interrupt(_ ref: JobRef, _ what: GridDatabase.Interruption) async {
        cancelledAt[ref.jobId] = nil
        do {
            let job = try await db.requeue(ref, what, limits: config.lossLimits, now: wall())
            logger.warning(
                "run interrupted",
                metadata: [
                    "grid.job.id": "\(ref.jobId)", "grid.job.attempt": "\(ref.attempt)", "grid.worker.id": "\(what.worker)",
                    "grid.reason": "\(what.reason)", "grid.job.state": "\(job?.state.rawValue ?? "-")",
                ])
        } catch {
            logger.error("could not requeue job", metadata: ["grid.job.id": "\(ref.jobId)", "grid.error": "\(error)"])
        }
        wake.yield()
    }
}
