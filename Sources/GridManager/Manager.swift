import Foundation
import GridCore
import GridHTTP
public import GridProtocol
import GridStore
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
public import Logging
import NIOSSL
import ServiceLifecycle

/// Builds the manager (store, core, grid listener, HTTP API) and runs it until SIGINT/SIGTERM.
public enum Manager {
    /// Where the manager listens, once both listeners are bound.
    public struct Ports: Sendable, Hashable, Codable {
        public var grid: Int
        public var http: Int
    }

    /// `gridTransport`: tests (issue 14) serve the grid protocol on an in-memory transport instead of the grid port
    /// (reported as 0); the HTTP API still listens on `config.httpPort`.
    public static func run(
        config: ManagerConfig, logger: Logger, gridTransport: MemoryGridTransport? = nil, onRole: @escaping @Sendable (Role) -> Void = { _ in },
        onReady: @escaping @Sendable (Ports) -> Void
    ) async throws {
        var config = config
        // The manager's keys live here: a folder it makes is its owner's alone (`PrivateFile`).
        try PrivateFile.makeFolder(config.dataDirectory)
        // TLS on both ports unless plain text was chosen (loopback, or --insecure-plaintext): see `TransportChoice`.
        let transport = config.transport
        var tls: ManagerTLS?
        var peerCA: ManagerCA?
        if transport.isTLS {
            let material = try ManagerTLS.load(config: config)
            tls = material
            config.caFingerprint = material.caFingerprint
            config.caPEM = material.caPEM
            peerCA = try ManagerCA.loadOrCreatePeerCA(directory: config.dataDirectory)
            config.peerCAPEM = peerCA?.certificatePEM
            logger.info("TLS on the grid and HTTP ports", metadata: ["grid.ca.fingerprint": "\(material.caFingerprint)"])
        } else if let notice = transport.notice("the manager") {
            if transport == .plaintextInsecure { logger.warning("\(notice)") } else { logger.notice("\(notice)") }
        }
        // The store (issue 16): `--database` (a PostgreSQL URL or a SQLite file several managers share), else the data
        // folder's grid.sqlite. Managers of one grid point at one store and share one identity (the data folder's keys).
        let db: GridDatabase
        if let database = config.database {
            db = try await GridDatabase.open(url: database)
            logger.info("store opened", metadata: ["store.backend": "\(db.backendName)"])
        } else {
            db = try GridDatabase.open(path: (config.dataDirectory as NSString).appendingPathComponent("grid.sqlite"))
        }
        let authority = try ManagerKey.loadOrCreate(directory: config.dataDirectory)
        let history = UtilisationHistory(capacity: 720)

        // Issue 16: every manager starts as a follower (reads from the store, writes refused naming the leader) and
        // leads while it holds the lease row; `LeadershipService` swaps the HTTP router and the worker protocol's core
        // at each change of role.
        let leadership = LeaderState()
        let followerCore = ManagerCore(db: db, config: config, logger: logger, authority: authority)
        let followerRouter = try await routes(db: db, core: followerCore, config: config, history: history, leadership: leadership, follower: true)
            .buildResponder()
        let responder = SwitchingResponder(followerRouter)
        let (boundPorts, portsKnown) = AsyncStream<Ports>.makeStream(bufferingPolicy: .bufferingNewest(1))

        // Ready once both ports are bound AND leadership is settled (this manager leads, or another live one does): a
        // lone manager says it is ready when it can take writes, as before issue 16.
        let gate = PortGate { ports in portsKnown.yield(ports) }
        var grid = GridServer(
            leadership: leadership, host: config.host, port: config.gridPort,
            limits: FrameLimits(maxLineBytes: config.maxLineBytes, maxBulkBytes: config.maxBulkBytes, maxStrangerLineBytes: config.strangers.maxLineBytes),
            strangers: StrangerGuard(limits: config.strangers), tls: try tls?.serverContext(),
            // Peer ports are TLS whenever the grid port is, with certificates from the manager's peer CA: never the CA
            // that vouches for the manager itself (also when the operator gave its certificate with --tls-cert).
            peerCertificates: peerCA.map { PeerCertificates(ca: $0) }, logger: logger,
            onBound: { await gate.set(grid: $0) })
        grid.memory = gridTransport
        let leader = LeadershipService(
            db: db, config: config, logger: logger, authority: authority, history: history, state: leadership, responder: responder,
            followerResponder: followerRouter, ports: boundPorts, scheme: transport.isTLS ? "https" : "http", onRole: onRole,
            onReady: onReady)
        let server: HTTPServerBuilder
        let httpCap = HTTPConnectionCap(limits: config.httpConnections, idleSeconds: config.httpIdleSeconds)
        if let tls {
            var c = TLSConfiguration.makeServerConfiguration(certificateChain: tls.chain.map { .certificate($0) }, privateKey: .privateKey(tls.key))
            c.minimumTLSVersion = .tlsv13
            server = try .tlsAnsweringPlainHTTP(tlsConfiguration: c, cap: httpCap)
        } else {
            server = .cappedHTTP1(cap: httpCap)
        }
        let app = Application(
            router: SwitchingRouter(responder: responder),
            server: server,
            configuration: .init(address: .hostname(config.host, port: config.httpPort), serverName: "campusgrid"),
            services: [grid, leader],
            onServerRunning: { [httpPort = config.httpPort] channel in await gate.set(http: channel.localAddress?.port ?? httpPort) },
            logger: logger)
        try await app.runService()
    }
}

extension Manager {
    /// Everything the HTTP listener serves: the REST API under `/api/v1`, the dashboard, `/openapi.json`.
    /// With `leadership` (issue 16) it also answers `GET /api/v1/leader`; a `follower`'s router refuses every write
    /// naming the leader, and its dashboard says it is served by a follower.
    static func routes(
        db: GridDatabase, core: ManagerCore, config: ManagerConfig, history: UtilisationHistory, streamSeconds: Double = 300,
        leadership: LeaderState? = nil, follower: Bool = false
    ) async throws -> Router<APIContext> {
        let router = Router(context: APIContext.self)
        router.add(middleware: SecurityHeadersMiddleware(tls: config.caFingerprint != nil))
        router.add(middleware: APIErrorMiddleware())
        if let leadership {
            LeaderEndpoint(state: leadership).addRoutes(to: router)
            if follower { router.add(middleware: FollowerGate { leadership.leader?.apiURL }) }
        }
        router.add(middleware: BodyLimitMiddleware(uploadBytes: APIContext.uploadBytes))
        var api = APIController(
            db: db, core: core, config: config, loginLimiter: RateLimiter(limit: config.loginAttempts, window: config.loginWindowSeconds),
            loginAddressLimiter: RateLimiter(limit: config.loginAttemptsPerAddress, window: config.loginWindowSeconds),
            loginFailureLimiter: RateLimiter(limit: config.loginFailuresPerAccount, window: 3600),
            registrationLimiter: RateLimiter(burst: config.registrationBurst, perMinute: config.registrationsPerMinute),
            admins: Admins(named: config.admins))
        api.anonymousReadLimiter = RateLimiter(burst: config.tableReadBurst, perMinute: config.tableReadsPerMinute)
        api.signedInReadLimiter = RateLimiter(burst: config.tableReadBurst, perMinute: config.tableReadsPerMinute)
        api.addRoutes(to: router)
        var dashboard = Dashboard(
            db: db, core: core, api: api, history: history, assets: try await Dashboard.Assets.load(),
            liveStreams: LiveStreams(perClient: config.liveStreamsPerClient, total: config.liveStreamsTotal))
        dashboard.streamSeconds = streamSeconds
        if follower, let leadership { dashboard.followerOf = { leadership.leader?.apiURL } }
        dashboard.addRoutes(to: router)
        MetricsEndpoint(db: db, core: core).addRoutes(to: router)
        return router
    }
}

/// Calls back once both ports are known.
actor PortGate {
    private var grid: Int?
    private var http: Int?
    private let onReady: @Sendable (Manager.Ports) -> Void

    init(_ onReady: @escaping @Sendable (Manager.Ports) -> Void) { self.onReady = onReady }

    func set(grid: Int) { self.grid = grid; fire() }
    func set(http: Int) { self.http = http; fire() }

    private func fire() {
        if let grid, let http {
            onReady(Manager.Ports(grid: grid, http: http))
            self.grid = nil
            self.http = nil
        }
    }
}
