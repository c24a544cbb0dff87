import Foundation
import GridCore
import GridProtocol
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle

/// The peer's web status page (seed 003's peer web UI) on `--web-port`: `/` as HTML, `/status` as JSON. It shows the
/// peer's state, resources, sandbox tier and recent public tasks; confidential tasks appear only as a count. Read-only,
/// no login: it shows nothing a task's owner would not want seen.
public struct PeerStatusPage: Service {
    public typealias Listener = NIOAsyncChannel<NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>, Never>

    let listener: Listener
    let service: PeerService
    let tier: String
    let resources: Resources
    let logger: Logger

    public static func bind(host: String, port: Int) async throws -> Listener {
        try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    return try NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>(wrappingChannelSynchronously: channel)
                }
            }
    }

    public init(listener: Listener, service: PeerService, tier: String, resources: Resources, logger: Logger) {
        self.listener = listener
        self.service = service
        self.tier = tier
        self.resources = resources
        self.logger = logger
    }

    public func run() async throws {
        try await cancelWhenGracefulShutdown {
            try await withThrowingDiscardingTaskGroup { group in
                try await listener.executeThenClose { inbound in
                    for try await connection in inbound {
                        group.addTask { await self.serve(connection) }
                    }
                }
            }
        }
    }

    private func serve(_ channel: NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>) async {
        do {
            try await channel.executeThenClose { inbound, outbound in
                var path = "/"
                for try await part in inbound {
                    switch part {
                    case .head(let head): path = head.uri
                    case .body: break
                    case .end:
                        let (type, body, status) = await page(path)
                        var headers = HTTPHeaders()
                        headers.add(name: "Content-Type", value: type)
                        headers.add(name: "Content-Length", value: "\(body.utf8.count)")
                        headers.add(name: "Connection", value: "close")
                        try await outbound.write(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers)))
                        try await outbound.write(.body(.byteBuffer(ByteBuffer(string: body))))
                        try await outbound.write(.end(nil))
                        return
                    }
                }
            }
        } catch {
            logger.debug("status page connection ended", metadata: ["grid.error": "\(error)"])
        }
    }

    private func page(_ path: String) async -> (String, String, HTTPResponseStatus) {
        let view = await service.publicView()
        switch path {
        case "/status":
            let body = (try? GridJSON.encode(StatusJSON(view: view, tier: tier, resources: resources))).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
            return ("application/json", body, .ok)
        case "/", "/index.html":
            var html = """
                <!doctype html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="5">
                <title>CampusGrid peer \(esc(view.status.name))</title></head><body>
                <h1>Peer \(esc(view.status.name))</h1>
                <p>Worker id \(esc(view.status.workerId)); sandbox \(esc(tier)); \(resources.cpus) CPUs, \(resources.ramGb) GB RAM, \(resources.gpus) GPUs.</p>
                <p>Slots \(view.status.slots), running \(view.status.running), queued \(view.status.queued.values.reduce(0, +)),
                done \(view.status.tasksDone) (\(view.confidentialDone) confidential, not listed).</p>
                <p>Memory keys held: \(view.status.memKeys); file chunks held: \(view.status.chunks).</p>
                <h2>Peers online</h2><ul>
                """
            for p in view.status.peers { html += "<li>\(esc(p.name)) (\(esc(p.workerId))) at \(esc(p.host)):\(p.port)</li>" }
            html += "</ul><h2>Recent tasks</h2><table><tr><th>task</th><th>user</th><th>result</th><th>ms</th></tr>"
            for t in view.history.reversed() {
                html += "<tr><td>\(esc(t.taskId))</td><td>\(esc(t.user))</td><td>\(t.ok ? "ok" : esc(t.error ?? "failed"))</td><td>\(t.runtimeMs)</td></tr>"
            }
            html += "</table></body></html>"
            return ("text/html; charset=utf-8", html, .ok)
        default:
            return ("text/plain", "not found\n", .notFound)
        }
    }

    private func esc(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
            .replacingOccurrences(of: "\"", with: "&quot;")
    }

    struct StatusJSON: Encodable {
        var view: PeerService.PublicView
        var tier: String
        var resources: Resources
    }
}
