import Foundation
import GridCore
import GridProtocol
import GridStore
import Hummingbird
import ServiceLifecycle

/// `/live`: a Server-Sent Events stream for one page.
///
/// Events: `region` (`{"id", "html"}`: replace the element's content), `log` (`{"next", "text", "done"}`: append to
/// the job's log), `gone` (the session ended). The stream ends by itself after `streamSeconds` or when the manager
/// shuts down; the page's script reconnects with backoff and its log offset, so a manager restart loses nothing.
extension Dashboard {
    /// What one page watches.
    struct LiveQuery: Sendable {
        enum View: String, Sendable { case overview, workers, leaderboard, account, jobs, job }
        var view: View
        var jobId: JobID?
        var logOffset: Int64 = 0
        var mine = false
        var state: JobState?
        var page = 1
    }

    struct RegionEvent: Encodable {
        var id: String
        var html: String
    }

    struct LogEvent: Encodable {
        var next: Int64
        var text: String
        var done: Bool
    }

    @Sendable func live(_ request: Request, _ session: WebSession) async throws -> Response {
        let q = request.uri.queryParameters
        guard let view = LiveQuery.View(rawValue: String(q["view"] ?? "")) else {
            throw GridError(.badRequest, "view is one of overview, workers, leaderboard, account, jobs, job")
        }
        var query = LiveQuery(view: view)
        switch view {
        case .job:
            guard let user = session.user else { throw GridError(.notAuthenticated, "log in to follow a job") }
            guard let id = q["id"].flatMap({ JobID(String($0)) }), let job = try await db.job(id: id), job.readable(by: user.id) else {
                throw GridError(.notFound, "there is no such job of yours")
            }
            query.jobId = id
            query.logOffset = max(0, q["log"].flatMap { Int64(String($0)) } ?? 0)
        case .account, .jobs:
            guard session.user != nil else { throw GridError(.notAuthenticated, "log in to follow this page") }
            (query.state, query.page) = try Self.listQuery(state: q["state"], page: q["page"])
            query.mine = q["mine"] == "1"
        case .overview, .workers, .leaderboard:
            break
        }
        var headers = HTTPFields()
        headers[.contentType] = "text/event-stream; charset=utf-8"
        headers[.cacheControl] = "no-store"
        headers[.init("X-Accel-Buffering")!] = "no"
        let token = session.token
        // A person's streams are counted as theirs, a stranger's by host (an IPv6 /64 as one); a quarter of the slots
        // are kept for people signed in (one account still holds at most its 32, and one host's accounts 128).
        let client = session.user.map { "user \($0.id)" } ?? ClientAddress.key(session.client)
        let signedIn = session.user != nil
        // Not for the manager's own machine: a reverse proxy there makes every person one address (as for logins).
        let address = signedIn && !ClientAddress.isLoopback(session.client) ? ClientAddress.key(session.client) : nil
        let body = ResponseBody { [self, query] writer in
            // The slot is taken where it is given back, in the body: a response never sent takes none.
            guard liveStreams.admit(client, address: address, signedIn: signedIn) else {
                // Too many open from this address (or in all): the page's script tries again in a minute.
                try await writer.write(ByteBuffer(string: "retry: 60000\n\nevent: busy\ndata: {}\n\n"))
                try await writer.finish(nil)
                return
            }
            defer { liveStreams.release(client, address: address, signedIn: signedIn) }
            try await stream(query, token: token, to: &writer)
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: headers, body: body)
    }

    /// Sends changed regions and new log bytes every tick, until the stream's time is up, the client goes, or shutdown.
    func stream(_ initial: LiveQuery, token: String?, to writer: inout any ResponseBodyWriter) async throws {
        var query = initial
        var sent: [String: String] = [:]
        let ticks = max(1, Int(streamSeconds * 1000) / max(1, tickMilliseconds))
        try await writer.write(ByteBuffer(string: "retry: 1500\n\n"))
        for tick in 0..<ticks {
            if Task.isCancelled || Task.isShuttingDownGracefully { break }
            var user: UserRecord?
            if let token { user = try await api.person(presenting: token, asSession: true) }
            if token != nil && user == nil {
                try await writer.write(ByteBuffer(string: "event: gone\ndata: {}\n\n"))
                return
            }
            var out = ""
            for (id, html) in try await regions(query, user: user, csrf: token.map(WebSession.csrf(for:)) ?? "") where sent[id] != html {
                sent[id] = html
                out += "event: region\ndata: " + String(decoding: try GridJSON.encode(RegionEvent(id: id, html: html)), as: UTF8.self) + "\n\n"
            }
            if query.view == .job, let id = query.jobId, let job = try await db.job(id: id) {
                // At most 4 MB of log per tick, in 1 MB pieces.
                for _ in 0..<4 {
                    var (data, total) = try await db.log(of: id, from: query.logOffset)
                    // A character the piece ends inside waits for the next tick (each half would show as U+FFFD).
                    data = data.prefix(UTF8Cut.sendable(data, jobEnded: job.state.isFinal, reachesEnd: query.logOffset + Int64(data.count) >= total))
                    let next = query.logOffset + Int64(data.count)
                    let done = job.state.isFinal && next >= total
                    if data.isEmpty && !(done && sent["log-done"] == nil) { break }
                    if done { sent["log-done"] = "1" }
                    out += "event: log\ndata: "
                        + String(decoding: try GridJSON.encode(LogEvent(next: next, text: String(decoding: data, as: UTF8.self), done: done)), as: UTF8.self)
                        + "\n\n"
                    query.logOffset = next
                    if data.isEmpty { break }
                }
            }
            if out.isEmpty && tick % 30 == 0 { out = ": keep-alive\n\n" }
            if !out.isEmpty { try await writer.write(ByteBuffer(string: out)) }
            try await Task.sleep(for: .milliseconds(tickMilliseconds))
        }
    }

    /// The rendered regions of a view, by element id.
    func regions(_ q: LiveQuery, user: UserRecord?, csrf: String) async throws -> [(String, String)] {
        var out: [(String, String)] = []
        if let user {
            out.append(("nav-balance", "\(try await db.balance(of: .user(user.id)))"))
        }
        switch q.view {
        case .overview:
            out.append(("stats", fragment("stats", try await statsRegion())))
            out.append(("chart", fragment("chart", await chartRegion())))
            out.append(("board", fragment("board", try await leaderboardRegion(limit: 10))))
        case .workers:
            out.append(("workers", fragment("workers_table", try await workersRegion())))
        case .leaderboard:
            out.append(("board", fragment("board", try await leaderboardRegion(limit: 50))))
        case .account:
            if let user { out.append(("summary", fragment("account_summary", try await accountRegion(user)))) }
        case .jobs:
            if let user { out.append(("list", fragment("jobs_table", try await jobsRegion(user: user, mine: q.mine, state: q.state, page: q.page)))) }
        case .job:
            if let user, let id = q.jobId, let job = try await db.job(id: id), job.readable(by: user.id) {
                let r = try await jobRegions(job, user: user, csrf: csrf)
                out.append(("summary", fragment("job_summary", r["summary"] as! [String: Any])))
                out.append(("timeline", fragment("job_timeline", r["timeline"] as! [String: Any])))
                out.append(("outputs", fragment("job_outputs", r["outputs"] as! [String: Any])))
            }
        }
        return out
    }
}
