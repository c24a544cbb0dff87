import Foundation
import GridCore
import GridProtocol
import GridScheduler
import GridStore
import Hummingbird
import Logging
import ServiceLifecycle
import Synchronization

extension Manager {
    /// A change of this manager's role, for the ready output (`--json`: `{"event":"leading",…}`).
    public enum Role: Sendable, Equatable {
        case leading(epoch: Int64)
        /// Following; the leader's API URL when one is known.
        case following(leader: String?)
    }
}

/// The leadership shell (issue 16): ticks the pure `Leadership` machine against the lease row in the shared store and
/// carries out what it decides. While this manager leads, a term runs: a fresh `ManagerCore` on the store fenced by
/// the term's epoch (recovered as a restarted manager would be), its scheduler and lease loops, the worker protocol and
/// the API's writes. When the term ends the core is dropped with every worker session of it, and the HTTP listener
/// goes back to the follower's router (reads from the store, writes refused naming the leader).
struct LeadershipService: Service {
    let db: GridDatabase
    let config: ManagerConfig
    let logger: Logger
    let authority: PeerTrust.Signer
    let history: UtilisationHistory
    let state: LeaderState
    let responder: SwitchingResponder
    let followerResponder: RouterResponder<APIContext>
    let ports: AsyncStream<Manager.Ports>
    let scheme: String
    let onRole: @Sendable (Manager.Role) -> Void
    /// Called once: when this manager first leads, or first sees another manager renew the lease (it is alive).
    let onReady: @Sendable (Manager.Ports) -> Void
    private let stopping = StopFlag()
    /// Rung at a graceful shutdown: ends the pause between two steps at once.
    private let stopBell = Doorbell()

    init(
        db: GridDatabase, config: ManagerConfig, logger: Logger, authority: PeerTrust.Signer, history: UtilisationHistory, state: LeaderState,
        responder: SwitchingResponder, followerResponder: RouterResponder<APIContext>, ports: AsyncStream<Manager.Ports>, scheme: String,
        onRole: @escaping @Sendable (Manager.Role) -> Void, onReady: @escaping @Sendable (Manager.Ports) -> Void
    ) {
        self.db = db
        self.config = config
        self.logger = logger
        self.authority = authority
        self.history = history
        self.state = state
        self.responder = responder
        self.followerResponder = followerResponder
        self.ports = ports
        self.scheme = scheme
        self.onRole = onRole
        self.onReady = onReady
    }

    /// The name others reach this manager at.
    static func advertisedHost(_ config: ManagerConfig) -> String {
        if let a = config.advertiseHost, !a.isEmpty { return a }
        if config.host == "0.0.0.0" || config.host == "::" { return ProcessInfo.processInfo.hostName }
        return config.host
    }

    func run() async throws {
        // Graceful shutdown is a flag, not a cancellation: a leader then ends its term and releases the row (an
        // expired lease) so that another manager, or this one restarted, takes over at once.
        await withGracefulShutdownHandler {
            await lead()
        } onGracefulShutdown: { [stopping, stopBell] in
            stopping.set()
            stopBell.ring()
        }
    }

    private var stopped: Bool { Task.isCancelled || stopping.isSet }

    private func lead() async {
        var ports = self.ports.makeAsyncIterator()
        guard let bound = await ports.next() else { return }
        let host = Self.advertisedHost(config)
        let shown = host.contains(":") ? "[\(host)]" : host
        let me = Leadership.Me(id: UUID().uuidString, workerAddress: "\(shown):\(bound.grid)", apiURL: "\(scheme)://\(shown):\(bound.http)")
        state.set(me: me)
        var machine = Leadership(me: me, ttl: config.leaderLeaseSeconds)
        let interval = Duration.milliseconds(Int(max(0.05, machine.ttl / 3) * 1000))
        var shownLeader: String?? = .none
        // Readiness: a live leader is one seen renewing (a row seen once may be a dead manager's, expiring).
        var ready = false
        var firstSeen: LeaderLease?
        let announce: @Sendable () -> Void = { [onReady] in onReady(bound) }
        while !stopped {
            let action = await step(&machine)
            state.set(leader: machine.leader)
            if case .startLeading(let epoch) = action {
                let first: (@Sendable () -> Void)? = ready ? nil : announce
                await term(epoch, &machine, interval: interval, ready: first)
                ready = true
                shownLeader = .none
                continue
            }
            if !ready, let seen = machine.leader {
                if let first = firstSeen, seen.epoch != first.epoch || seen.expiresAt > first.expiresAt {
                    ready = true
                    announce()
                } else if firstSeen == nil {
                    firstSeen = seen
                }
            }
            if shownLeader != .some(machine.leader?.apiURL) {
                shownLeader = .some(machine.leader?.apiURL)
                logger.notice("following", metadata: ["grid.leader": "\(machine.leader?.apiURL ?? "none known")"])
                onRole(.following(leader: machine.leader?.apiURL))
            }
            await pause(interval)
        }
    }

    /// Sleeps `interval`, or less: a graceful shutdown or a cancellation ends it at once.
    private func pause(_ interval: Duration) async {
        guard !stopped else { return }
        _ = await stopBell.wait(upTo: Double(interval.components.seconds) + Double(interval.components.attoseconds) / 1e18)
    }

    /// One tick: read the row, decide, try the swap it asks for and feed the answer back. Returns the last action.
    private func step(_ machine: inout Leadership) async -> Leadership.Action {
        // Each store call is bounded by the lease: a store that does not answer within it counts as unreachable (a
        // leader that cannot renew steps down) instead of holding this loop, and the leader's role, indefinitely.
        // Its calls also run on a store thread of their own (`StoreLane.lease`), never queued behind the term's.
        await StoreLane.$lease.withValue(true) {
            await StoreDeadline.$seconds.withValue(max(0.5, machine.ttl)) { await stepBounded(&machine) }
        }
    }

    private func stepBounded(_ machine: inout Leadership) async -> Leadership.Action {
        var action: Leadership.Action
        do {
            let row = try await db.leaderLease()
            action = machine.handle(.tick(now: Date().timeIntervalSince1970, observed: row))
        } catch {
            logger.warning("could not read the leader lease", metadata: ["grid.error": "\(error)"])
            return machine.handle(.unreachable(now: Date().timeIntervalSince1970))
        }
        if case .trySwap(let expecting, let lease) = action {
            do {
                action = machine.handle(.swapped(try await db.swapLeaderLease(expecting: expecting, to: lease)))
            } catch {
                logger.warning("could not write the leader lease", metadata: ["grid.error": "\(error)"])
                action = machine.handle(.unreachable(now: Date().timeIntervalSince1970))
            }
        }
        return action
    }

    /// Reads the row once, bounded as a step is, and names the leader it holds; a failed read names none.
    private func learnLeader(_ machine: inout Leadership) async {
        let bound = max(0.5, machine.ttl)
        let row: LeaderLease?? = await StoreLane.$lease.withValue(true) {
            await StoreDeadline.$seconds.withValue(bound) { try? await db.leaderLease() }
        }
        guard let row else { return }
        _ = machine.handle(.learned(now: Date().timeIntervalSince1970, observed: row))
    }

    /// One leadership term, from winning the row to stepping down (or shutting down).
    private func term(_ epoch: Int64, _ machine: inout Leadership, interval: Duration, ready: (@Sendable () -> Void)?) async {
        let fenced = db.fenced(epoch: epoch)
        let core = ManagerCore(db: fenced, config: config, logger: logger, authority: authority)
        let router: RouterResponder<APIContext>
        do {
            try await core.recover()
            router = try await Manager.routes(db: fenced, core: core, config: config, history: history, leadership: state).buildResponder()
        } catch {
            logger.error("could not start leading", metadata: ["grid.epoch": "\(epoch)", "grid.error": "\(error)"])
            _ = machine.handle(.deposed(current: nil))
            return
        }
        let term = ManagerTerm(epoch: epoch, core: core)
        state.set(term: term)
        responder.set(router)
        logger.notice("leading the grid", metadata: ["grid.epoch": "\(epoch)"])
        ready?()
        onRole(.leading(epoch: epoch))
        var endedAt = ContinuousClock.now
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await core.runLoops() }
            group.addTask { [history] in try? await UtilisationSampler(core: core, history: history, interval: 5).run() }
            while !stopped {
                await pause(interval)
                if stopped { break }
                if case .stepDown = await step(&machine) { break }
            }
            // Deposed without reading who leads (a refused renewal: the row was read before another manager took it
            // over; or a store that did not answer): read the row once more, so the follower names the leader.
            if !machine.isLeading, machine.leader == nil { await learnLeader(&machine) }
            // Answer as a follower at once, naming who leads now as the step that deposed us read it (never a stale
            // leader), and let the workers go: the term's own tasks may take a while to end (a store call in flight),
            // and every write of theirs is fenced by the epoch, so nothing waits for them.
            state.set(leader: machine.leader)
            state.set(term: nil)
            term.drop()
            responder.set(followerResponder)
            // Said when it happens: the term's tasks may take a while to end after this (a store call in flight), and a
            // deposed manager that answers as a follower has stepped down whether or not they have.
            if !machine.isLeading { logger.notice("stepped down", metadata: ["grid.epoch": "\(epoch)"]) }
            endedAt = ContinuousClock.now
            group.cancelAll()
        }
        let ended = ContinuousClock.now - endedAt
        if ended > .seconds(1) {
            logger.warning("the term's tasks took \(ended) to end after it was over", metadata: ["grid.epoch": "\(epoch)"])
        }
        if machine.isLeading {
            // Shutting down: hand the row over at once (expired) instead of making followers wait a whole lease.
            var released = LeaderLease(holder: machine.me.id, epoch: epoch, expiresAt: 0, workerAddress: machine.me.workerAddress, apiURL: machine.me.apiURL)
            released.expiresAt = 0
            _ = try? await db.swapLeaderLease(expecting: epoch, to: released)
            logger.notice("released the leadership", metadata: ["grid.epoch": "\(epoch)"])
        }
    }
}

/// Set once, on graceful shutdown.
final class StopFlag: Sendable {
    private let flag = Mutex(false)
    func set() { flag.withLock { $0 = true } }
    var isSet: Bool { flag.withLock { $0 } }
}

extension LeadershipService: CustomStringConvertible {
    /// What ServiceLifecycle logs for this service: its name, not its fields (the config holds the store's URL).
    var description: String { "LeadershipService" }
}
