import Foundation
import GridCore
import GridStore
import Hummingbird

/// The GET pages of the dashboard.
extension Dashboard {
    @Sendable func overview(_ request: Request, _ session: WebSession) async throws -> Response {
        try await page(
            "overview", title: "Overview · CampusGrid", session: session, request: request, nav: "overview", live: "/live?view=overview",
            ["stats": try await statsRegion(), "chart": await chartRegion(), "board": try await leaderboardRegion(limit: 10)])
    }

    @Sendable func workersPage(_ request: Request, _ session: WebSession) async throws -> Response {
        try await page(
            "workers", title: "Workers · CampusGrid", session: session, request: request, nav: "workers", live: "/live?view=workers",
            ["workers": try await workersRegion()])
    }

    @Sendable func leaderboardPage(_ request: Request, _ session: WebSession) async throws -> Response {
        try await page(
            "leaderboard", title: "Leaderboard · CampusGrid", session: session, request: request, nav: "leaderboard",
            live: "/live?view=leaderboard", ["board": try await leaderboardRegion(limit: 50)])
    }

    @Sendable func account(_ request: Request, _ session: WebSession) async throws -> Response {
        let user = try requireUser(session, request)
        return try await accountPage(user, request: request, session: session)
    }

    func accountPage(_ user: UserRecord, request: Request, session: WebSession, newToken: String? = nil) async throws -> Response {
        let tokens = try await db.tokens(of: user.id, kind: .worker).map { t -> [String: Any] in
            ["hash": t.hash, "short": String(t.hash.prefix(10)), "created": Self.time(t.createdAt)]
        }
        // Logins too (a `campusgrid login`, or a browser's session: the store keeps both as API tokens): revoking one
        // logs it out, and its certificates at peers with it (`PeerTrust.Standing`), e.g. for a laptop that was stolen.
        let current = session.token.map(Tokens.hash)
        let logins = try await db.tokens(of: user.id, kind: .api) + db.tokens(of: user.id, kind: .session)
        let apiTokens = logins.sorted { $0.createdAt > $1.createdAt }.map { t -> [String: Any] in
            ["hash": t.hash, "short": String(t.hash.prefix(10)), "created": Self.time(t.createdAt), "current": t.hash == current]
        }
        var values: [String: Any] = [
            "summary": try await accountRegion(user), "tokens": tokens, "has_tokens": !tokens.isEmpty, "api_tokens": apiTokens,
            "has_api_tokens": !apiTokens.isEmpty, "manager": Self.hostOnly(request.head.authority),
        ]
        if let newToken { values["new_token"] = newToken }
        return try await page(
            "account", title: "Account · CampusGrid", session: session, request: request, nav: "account", live: "/live?view=account",
            values)
    }

    @Sendable func jobList(_ request: Request, _ session: WebSession, mine: Bool) async throws -> Response {
        let user = try requireUser(session, request)
        let q = request.uri.queryParameters
        let (state, page) = try Self.listQuery(state: q["state"], page: q["page"])
        let region = try await jobsRegion(user: user, mine: mine, state: state, page: page)
        let base = mine ? "/my-jobs" : "/jobs"
        let filters: [[String: Any]] =
            [["label": "all", "href": base, "selected": state == nil]]
            + JobState.allCases.filter { $0 != .submitted }.map { s -> [String: Any] in
                ["label": s.rawValue.replacingOccurrences(of: "_", with: " "), "href": "\(base)?state=\(s.rawValue)", "selected": state == s]
            }
        var live = "/live?view=jobs&page=\(page)"
        if mine { live += "&mine=1" }
        if let state { live += "&state=\(state.rawValue)" }
        return try await self.page(
            "jobs", title: (mine ? "My jobs" : "All jobs") + " · CampusGrid", session: session, request: request, nav: mine ? "mine" : "jobs",
            live: live, ["heading": mine ? "My jobs" : "All jobs", "filters": filters, "list": region])
    }

    /// `state` and `page` of a job list's query; a bad state is a 400.
    static func listQuery(state s: Substring?, page p: Substring?) throws -> (JobState?, Int) {
        var state: JobState?
        if let s, !s.isEmpty {
            guard let parsed = JobState(rawValue: String(s)) else { throw GridError(.badRequest, "there is no job state called \(s)") }
            state = parsed
        }
        let page = min(max(Int(p ?? "1") ?? 1, 1), 100_000)
        return (state, page)
    }

    @Sendable func jobDetail(_ request: Request, _ session: WebSession) async throws -> Response {
        let user = try requireUser(session, request)
        let job = try await ownJob(request, user: user)
        let (data, _) = try await db.log(of: job.id, from: 0)
        let regions = try await jobRegions(job, user: user, csrf: session.csrf)
        var values = regions
        values["id"] = job.id
        values["name"] = job.spec.name
        values["log"] = String(decoding: data, as: UTF8.self)
        values["log_offset"] = data.count
        return try await page(
            "job", title: "Job \(job.id): \(job.spec.name) · CampusGrid", session: session, request: request, nav: "mine",
            live: "/live?view=job&id=\(job.id)", values)
    }

    /// The job named in the path, if `user` owns it; anyone else's is "not found", as if it did not exist.
    func ownJob(_ request: Request, user: UserRecord) async throws -> JobRecord {
        let raw = request.uri.path.split(separator: "/").dropFirst().first.map(String.init) ?? ""
        guard let id = JobID(raw), let job = try await db.job(id: id), job.readable(by: user.id) else {
            throw GridError(.notFound, "there is no job \(raw) of yours")
        }
        return job
    }

    @Sendable func download(_ request: Request, _ session: WebSession) async throws -> Response {
        let user = try requireUser(session, request)
        let job = try await ownJob(request, user: user)
        // Everything after `/outputs/`: an output may sit in a folder (`results/a.csv`).
        let path = request.uri.path
        let rest = path.range(of: "/outputs/").map { String(path[$0.upperBound...]) } ?? ""
        let name = rest.removingPercentEncoding ?? rest
        guard let data = try await db.output(of: job.id, name: name) else {
            throw GridError(.notFound, "job \(job.id) has no output named \(name)")
        }
        var headers = HTTPFields()
        headers[.contentType] = "application/octet-stream"
        let safe = name.unicodeScalars.filter { $0.isASCII && $0.value >= 32 && $0 != "\"" && $0 != "\\" }
        headers[.contentDisposition] = "attachment; filename=\"\(String(String.UnicodeScalarView(safe)))\""
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    // MARK: - Accounts

    @Sendable func loginForm(_ request: Request, _ session: WebSession) async throws -> Response {
        let next = Self.safeNext(request.uri.queryParameters["next"].map(String.init))
        return try await page("login", title: "Log in · CampusGrid", session: session, request: request, nav: "login", ["next": next])
    }

    @Sendable func registerForm(_ request: Request, _ session: WebSession) async throws -> Response {
        try await page("register", title: "Register · CampusGrid", session: session, request: request, nav: "register")
    }

    /// The host part of `Host` (the dashboard's port is not the grid port workers use).
    static func hostOnly(_ authority: String?) -> String {
        guard let authority, !authority.isEmpty else { return "MANAGER-HOST" }
        if authority.hasPrefix("["), let end = authority.firstIndex(of: "]") { return String(authority[...end]) }
        return String(authority.split(separator: ":").first ?? "")
    }

    /// Only paths on this site may follow a login.
    static func safeNext(_ next: String?) -> String {
        guard let next = next?.removingPercentEncoding ?? next, isSameSitePath(next) else { return "/" }
        return next
    }

    /// Whether `path` (already percent-decoded) is a path on this site and nothing a browser could read as another
    /// host: it starts with one `/`, and has no backslash (`/\\evil` is `//evil` to browsers), no control characters
    /// or whitespace (browsers drop tabs and newlines, so `/<TAB>/evil` becomes `//evil`), no `//` at the start.
    static func isSameSitePath(_ path: String) -> Bool {
        // On bytes, and ASCII only: "/" + a combining mark is one Swift character, so a check on characters let
        // "//\u{FE0F}evil.example" through, which a browser reads as another host.
        guard path.utf8.first == UInt8(ascii: "/"), !path.utf8.starts(with: "//".utf8), path.utf8.count < 500 else { return false }
        return path.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7f && $0 != UInt8(ascii: "\\") }
    }
}
