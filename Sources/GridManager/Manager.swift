import Foundation
import GridCore
import GridProtocol
import GridStore
import Hummingbird
import Logging
import ServiceLifecycle

/// Builds the manager (store, core, grid listener, HTTP API) and runs it until SIGINT/SIGTERM.
public enum Manager {
    /// Where the manager listens, once both listeners are bound.
    public struct Ports: Sendable, Hashable, Codable {
        public var grid: Int
        public var http: Int
    }

    public static func run(config: ManagerConfig, logger: Logger, onReady: @escaping @Sendable (Ports) -> Void) async throws {
        try FileManager.default.createDirectory(atPath: config.dataDirectory, withIntermediateDirectories: true)
        let db = try GridDatabase.open(path: (config.dataDirectory as NSString).appendingPathComponent("grid.sqlite"))
        let core = ManagerCore(db: db, config: config, logger: logger)
        try await core.recover()

        let router = Router(context: APIContext.self)
        let api = APIController(db: db, core: core, config: config, loginLimiter: RateLimiter())
        api.addRoutes(to: router)
        StatusPage(db: db, api: api).addRoutes(to: router)
        MetricsEndpoint(db: db, core: core).addRoutes(to: router)

        let gate = PortGate(onReady)
        let grid = GridServer(
            core: core, host: config.host, port: config.gridPort,
            limits: FrameLimits(maxLineBytes: config.maxLineBytes, maxBulkBytes: config.maxBulkBytes), logger: logger,
            onBound: { await gate.set(grid: $0) })
        let app = Application(
            router: router,
            configuration: .init(address: .hostname(config.host, port: config.httpPort), serverName: "campusgrid"),
            services: [grid, CoreLoops(core: core)],
            onServerRunning: { channel in await gate.set(http: channel.localAddress?.port ?? config.httpPort) },
            logger: logger)
        try await app.runService()
    }
}

/// The core's scheduling and lease loops as a service.
struct CoreLoops: Service {
    let core: ManagerCore
    func run() async throws {
        await cancelWhenGracefulShutdown { await core.runLoops() }
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

/// A plain status page at `/` until the dashboard arrives: workers online, jobs by state, the leaderboard.
struct StatusPage: Sendable {
    let db: GridDatabase
    let api: APIController

    func addRoutes(to router: Router<APIContext>) {
        router.get("/") { _, _ -> Response in
            let counts = try await db.jobCounts()
            let workers = try await api.workerInfos()
            let board = try await db.leaderboard(limit: 10)
            var html = """
                <!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
                <title>CampusGrid</title></head><body><h1>CampusGrid</h1>
                <p>Workers online: \(workers.filter(\.online).count)</p><h2>Jobs</h2><ul>
                """
            for state in JobState.allCases { html += "<li>\(state.rawValue): \(counts[state] ?? 0)</li>" }
            html += "</ul><h2>Workers</h2><ul>"
            for w in workers {
                html += "<li>\(escape(w.name)) (\(escape(w.owner))) — \(w.online ? "online" : "offline"), \(w.resources.cpus) CPUs, \(w.tierLabel)</li>"
            }
            html += "</ul><h2>Leaderboard</h2><ol>"
            for row in board { html += "<li>\(escape(row.username)): \(row.creditsEarned) credits</li>" }
            html += "</ol><p>API: <code>/api/v1</code></p></body></html>"
            var headers = HTTPFields()
            headers[.contentType] = "text/html; charset=utf-8"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: html)))
        }
    }

    func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
            .replacingOccurrences(of: "\"", with: "&quot;").replacingOccurrences(of: "'", with: "&#39;")
    }
}
