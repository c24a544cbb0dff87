import Foundation
public import GridCore
public import GridHTTP
import GridPeer
public import GridProtocol
import Hummingbird
import HummingbirdCore
public import Logging
public import ServiceLifecycle

/// What a worker shows about itself on its `--web-port`.
public struct WorkerStatus: Sendable, Hashable, Codable {
    /// A job this worker runs or ran.
    public struct Task: Sendable, Hashable, Codable {
        public var job: JobID
        public var attempt: Int
        public var name: String
        public var cpus: Int
        public var startedAt: Double
        public var outcome: String?
        public var exitCode: Int32?
        public var runtimeMs: Int64?
    }

    public var name: String
    public var workerId: String?
    public var connected: Bool
    public var resources: Resources
    public var gpuNames: [String]
    public var tier: SandboxTier
    /// Which limits hold, why stronger tiers were skipped, whose jobs it takes.
    public var sandbox: SandboxReport
    public var slots: Int
    public var load: Double
    public var current: [Task]
    public var recent: [Task]
    /// What the grid's shared memory and files take on this machine, against what its owner lent (nil: no peer
    /// services).
    public var storage: Msg.StorageUse?
}

/// The worker's own small status page (the seed's per-peer web UI): `/` as HTML that refreshes itself every few
/// seconds, `/status.json` as JSON. Runs as a service beside the agent, on `--web-port`.
public struct WorkerStatusPage: Service {
    let agent: WorkerAgent
    let host: String
    let port: Int
    let logger: Logger
    let cap: HTTPConnectionCap
    let onBound: @Sendable (Int) -> Void

    /// Connections the page holds open: 8 per address (a browser's few, a refresh every 5 s), 64 in all. Before, it had
    /// no bound: bound beyond loopback (`--web-host`), anyone who could reach it could open connections until the
    /// worker's process ran out of descriptors, and its jobs, peer port and manager link with it.
    public static let connectionLimits = StrangerLimits(maxPendingPerAddress: 8, maxOpenPerAddress: 8, maxPendingInAll: 64)

    public init(
        agent: WorkerAgent, host: String = "127.0.0.1", port: Int, logger: Logger,
        cap: HTTPConnectionCap = HTTPConnectionCap(limits: WorkerStatusPage.connectionLimits),
        onBound: @escaping @Sendable (Int) -> Void = { _ in }
    ) {
        self.agent = agent
        self.host = host
        self.port = port
        self.logger = logger
        self.cap = cap
        self.onBound = onBound
    }

    public func run() async throws {
        let router = Router()
        let agent = self.agent
        router.get("/") { _, _ -> Response in
            var headers = HTTPFields()
            headers[.contentType] = "text/html; charset=utf-8"
            headers[.cacheControl] = "no-store"
            headers[.init("Content-Security-Policy")!] = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"
            headers[.init("X-Frame-Options")!] = "DENY"
            headers[.init("X-Content-Type-Options")!] = "nosniff"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: Self.html(await agent.status()))))
        }
        router.get("/status.json") { _, _ -> Response in
            let e = JSONEncoder()
            e.keyEncodingStrategy = .convertToSnakeCase
            e.outputFormatting = [.sortedKeys]
            var headers = HTTPFields()
            headers[.contentType] = "application/json; charset=utf-8"
            headers[.init("X-Content-Type-Options")!] = "nosniff"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: try e.encode(await agent.status()))))
        }
        let onBound = self.onBound
        // A connection with no request byte for 30 s (one that never ends its request head included) is closed, and one
        // past the cap at once: the page may be bound beyond loopback.
        let app = Application(
            router: router, server: .cappedHTTP1(cap: cap),
            configuration: .init(address: .hostname(host, port: port), serverName: "campusgrid-worker"),
            onServerRunning: { onBound($0.localAddress?.port ?? 0) }, logger: logger)
        try await app.run()
    }

    /// The page; every string that came from elsewhere goes through `escape`.
    static func html(_ s: WorkerStatus) -> String {
        func row(_ t: WorkerStatus.Task, current: Bool) -> String {
            let started = t.startedAt > 0 ? Date(timeIntervalSince1970: t.startedAt).formatted(.iso8601) : "—"
            let end =
                current
                ? "<td>running</td><td>—</td>"
                : "<td>\(escape(t.outcome ?? "?"))</td><td>\(t.runtimeMs.map { String(format: "%.1f s", Double($0) / 1000) } ?? "—")</td>"
            return "<tr><td>#\(t.job)</td><td>\(escape(t.name))</td><td>\(t.cpus)</td><td>\(started)</td>\(end)</tr>"
        }
        let head = "<tr><th>Job</th><th>Name</th><th>CPUs</th><th>Started</th><th>State</th><th>Runtime</th></tr>"
        let gpus = s.gpuNames.isEmpty ? "no GPU" : "\(s.resources.gpus) GPU: " + s.gpuNames.map(escape).joined(separator: ", ")
        return """
            <!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
            <meta http-equiv="refresh" content="5"><title>Worker \(escape(s.name)) · CampusGrid</title>
            <style>body{font-family:system-ui,sans-serif;margin:0;background:#f4f6fb;color:#1c2333}header{background:#151b2e;color:#fff;padding:.7rem 1rem}
            main{max-width:900px;margin:auto;padding:1rem}section{background:#fff;border:1px solid #dfe3ec;border-radius:10px;padding:1rem;margin-bottom:1rem}
            table{width:100%;border-collapse:collapse}td,th{text-align:left;padding:.35rem;border-bottom:1px solid #dfe3ec}dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem}
            dt{color:#5b6478}dd{margin:0}</style></head><body><header><strong>CampusGrid worker</strong> · \(escape(s.name))</header><main>
            <section><h1>\(escape(s.name))</h1><dl>
            <dt>Worker id</dt><dd id="worker-id">\(escape(s.workerId ?? "not registered yet"))</dd>
            <dt>Manager link</dt><dd id="link">\(s.connected ? "connected" : "reconnecting")</dd>
            <dt>Resources</dt><dd id="resources">\(s.resources.cpus) CPUs · \(s.resources.ramGb) GB RAM · \(gpus)</dd>
            <dt>Load</dt><dd id="load">\(String(format: "%.2f", s.load))</dd>
            <dt>Sandbox tier</dt><dd id="tier">\(escape(s.sandbox.label))\(s.sandbox.unsandboxed ? " — <strong>no real sandbox</strong>: a job can read this user's files and reach the network" : "")</dd>
            <dt>Jobs taken</dt><dd id="accepts">\(s.sandbox.acceptsOthers ? "everyone's" : "only its owner's (start with --allow-unsandboxed to take others')")</dd>
            \(s.sandbox.skipped.isEmpty ? "" : "<dt>Stronger tiers skipped</dt><dd id=\"skipped\"><ul>" + s.sandbox.skipped.map { "<li>\(escape($0))</li>" }.joined() + "</ul></dd>")
            \(s.sandbox.notes.isEmpty ? "" : "<dt>Limits</dt><dd id=\"notes\"><ul>" + s.sandbox.notes.map { "<li>\(escape($0))</li>" }.joined() + "</ul></dd>")
            <dt>Slots</dt><dd>\(s.current.count) of \(s.slots) busy</dd>
            \(s.storage.map { "<dt>Shared storage</dt><dd id=\"storage\">memory \(StorageBudget.describe($0.memoryBytes)) of \(StorageBudget.describe($0.memoryLimit)) lent · disk \(StorageBudget.describe($0.diskBytes)) of \(StorageBudget.describe($0.diskLimit)) lent</dd>" } ?? "")</dl></section>
            <section><h2>Current tasks</h2>\(s.current.isEmpty ? "<p>None.</p>" : "<table>\(head)\(s.current.map { row($0, current: true) }.joined())</table>")</section>
            <section><h2>Recent tasks</h2>\(s.recent.isEmpty ? "<p>None yet.</p>" : "<table>\(head)\(s.recent.map { row($0, current: false) }.joined())</table>")</section>
            </main></body></html>
            """
    }

    /// A stranger's text (a job's name, a reason) in the page: escaped by Unicode scalar (`HTMLText`).
    static func escape(_ s: String) -> String { HTMLText.escape(s) }
}
