import Foundation
import GridCore
import GridStore
import Hummingbird
import HummingbirdTesting
import Testing

@testable import GridManager

/// The two kinds of token on the HTTP side, in process: a worker join token is refused on every route that takes a
/// credential, however it is presented. The route list is the router's own, so a route added later is covered too.
@Suite struct IdentityRouteTests {
    /// Routes that take no credential at all: static files, the API's description, health and `/metrics` (which
    /// answers only this machine). Every other route must refuse a join token.
    static let credentialFree: Set<String> = ["GET /static/app.js", "GET /static/app.css", "GET /openapi.json", "GET /healthz", "GET /metrics"]

    /// A grid with ann, her worker join token and one job of hers (so that `{id}` routes name something real).
    static func grid() async throws -> (db: GridDatabase, ann: UserRecord, join: String, job: JobID) {
        let db = try GridDatabase.inMemory()
        let now = Date().timeIntervalSince1970
        let ann = try await db.createUser(username: "ann", passwordHash: "x", startingCredits: 100, now: now)
        let join = "cgw_\(UUID().uuidString)"
        try await db.addToken(hash: Tokens.hash(join), userId: ann.id, kind: .worker, now: now)
        let job = try await db.submitJob(
            owner: ann.id, spec: JobSpec(name: "j"), script: StoredFile(name: "main.py", data: Data("print(1)\n".utf8)), inputs: [], now: now)
        return (db, ann, join, job.id)
    }

    static func uri(_ path: String, job: JobID) -> String {
        path.replacingOccurrences(of: "{id}", with: "\(job)").replacingOccurrences(of: "{name}", with: "out.txt")
            .replacingOccurrences(of: "**", with: "out.txt")
    }

    @Test func aWorkerJoinTokenGets401OnEveryRouteThatTakesACredential() async throws {
        let (db, ann, join, job) = try await Self.grid()
        let router = try await DashboardRouteTests.router(db: db)
        let routes = router.routes.map { (method: $0.method, path: $0.path.description) }
        #expect(routes.count >= 30, "the router's own route list: \(routes.map { "\($0.method) \($0.path)" })")
        let checked = try await Application(router: router).test(.router) { client -> Int in
            var checked = 0
            for route in routes where !Self.credentialFree.contains("\(route.method) \(route.path)") {
                // The API takes bearer tokens; the dashboard takes its session cookie (and must not be fooled by a bearer).
                var ways: [(String, HTTPFields)] = [("bearer", [.authorization: "Bearer \(join)", .contentType: "application/json"])]
                if !route.path.hasPrefix("/api/") { ways.append(("session cookie", [.cookie: "\(WebSession.cookieName)=\(join)"])) }
                for (way, headers) in ways {
                    let (status, body) = try await client.execute(
                        uri: Self.uri(route.path, job: job), method: route.method, headers: headers,
                        body: ByteBuffer(string: #"{"username":"mallory","password":"long enough pw"}"#)
                    ) { r in (r.status, String(buffer: r.body)) }
                    #expect(status == .unauthorized, "\(route.method) \(route.path) with a join token as \(way): \(status) \(body.prefix(300))")
                    #expect(body.contains("this is a worker join token; it only joins workers"), "\(route.method) \(route.path) (\(way))")
                    checked += 1
                }
            }
            return checked
        }
        #expect(checked >= 40)
        // Nothing happened on ann's account: no API token minted, no job cancelled, no credits moved, no account made.
        #expect(try await db.tokens(of: ann.id, kind: .api).isEmpty)
        #expect(try await db.job(id: job)?.state == .pending)
        #expect(try await db.balance(of: .user(ann.id)) == 100 - (try await db.job(id: job)?.hold ?? 0))
        #expect(try await db.user(named: "mallory") == nil)
    }

    @Test func aRefusedSessionCookieIsClearedSoTheBrowserCanLogInAgain() async throws {
        let (db, _, join, _) = try await Self.grid()
        try await DashboardRouteTests.app(db: db).test(.router) { client in
            try await client.execute(uri: "/", method: .get, headers: [.cookie: "\(WebSession.cookieName)=\(join)"]) { r in
                #expect(r.status == .unauthorized)
                let cleared = r.headers[values: .setCookie].first { $0.hasPrefix(WebSession.cookieName + "=") } ?? ""
                #expect(cleared.hasPrefix(WebSession.cookieName + "=;") && cleared.contains("Max-Age=0"), "\(cleared)")
                #expect(r.headers[.contentType]?.hasPrefix("text/html") == true, "the dashboard answers with its error page")
            }
        }
    }

    @Test func anAPITokenStillActsAsItsPersonOnTheAPIAndAJoinTokenMintsNothing() async throws {
        let (db, _, join, _) = try await Self.grid()
        try await DashboardRouteTests.app(db: db).test(.router) { client in
            // The account of a join token cannot mint itself an API token.
            try await client.execute(uri: "/api/v1/tokens?kind=api", method: .post, headers: [.authorization: "Bearer \(join)"]) { r in
                #expect(r.status == .unauthorized)
                #expect(r.headers[.wwwAuthenticate] == "Bearer")
            }
            try await client.execute(
                uri: "/api/v1/login", method: .post, headers: [.contentType: "application/json"],
                body: ByteBuffer(string: #"{"username":"bea","password":"long enough pw"}"#)
            ) { r in #expect(r.status == .unauthorized) }
            let token = try await client.execute(
                uri: "/api/v1/register", method: .post, headers: [.contentType: "application/json"],
                body: ByteBuffer(string: #"{"username":"bea","password":"long enough pw"}"#)
            ) { r -> String in
                #expect(r.status == .created)
                return (try JSONSerialization.jsonObject(with: Data(String(buffer: r.body).utf8)) as? [String: Any])?["token"] as? String ?? ""
            }
            try await client.execute(uri: "/api/v1/me", method: .get, headers: [.authorization: "Bearer \(token)"]) { r in
                #expect(r.status == .ok)
                #expect(String(buffer: r.body).contains("\"bea\""))
            }
        }
    }

    @Test func theAccountPageStartsWorkersWithATokenFileNeverTheTokenOnTheCommandLine() async throws {
        try await DashboardRouteTests.app().test(.router) { client in
            let browser = Browser(client)
            try await browser.register("olga")
            try await browser.get("/account")
            let page = try await browser.post("/account/tokens", [:])
            #expect(page.status == .ok)
            let token = try #require(page.body.range(of: #"<code id="new-token" class="token">"#).map { page.body[$0.upperBound...].prefix(while: { $0 != "<" }) })
            #expect(token.hasPrefix("cgw_"))
            #expect(page.body.contains("--token-file"))
            #expect(!page.body.contains("--token \(token)") && !page.body.contains("--token cgw_"), "the hint puts the token on a command line")
        }
    }
}
