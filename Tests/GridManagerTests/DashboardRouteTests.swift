import Foundation
import GridCore
import GridStore
import Hummingbird
import HummingbirdTesting
import Logging
import NIOHTTP1
import Testing

@testable import GridManager

/// The dashboard's HTTP behaviour, in process: the real router, store and core, an in-memory database, no sockets.
@Suite struct DashboardRouteTests {
    /// A router over a fresh in-memory grid; cheap bcrypt.
    static func app(
        streamSeconds: Double = 1, db: GridDatabase? = nil, configure: (inout ManagerConfig) -> Void = { _ in }
    ) async throws -> some ApplicationProtocol {
        Application(router: try await router(streamSeconds: streamSeconds, db: db, configure: configure))
    }

    /// The manager's whole router over a fresh in-memory grid (or `db`), for tests that also read its route list.
    static func router(
        streamSeconds: Double = 1, db: GridDatabase? = nil, configure: (inout ManagerConfig) -> Void = { _ in }
    ) async throws -> Router<APIContext> {
        var config = ManagerConfig(dataDirectory: NSTemporaryDirectory())
        config.bcryptCost = 4
        // A window no loaded test machine outlasts: the limit, not the clock, is under test.
        config.loginWindowSeconds = 3600
        configure(&config)
        let db = try db ?? GridDatabase.inMemory()
        let core = ManagerCore(db: db, config: config, logger: Logger(label: "test"))
        return try await Manager.routes(
            db: db, core: core, config: config, history: UtilisationHistory(capacity: 10), streamSeconds: streamSeconds)
    }

    @Test func everyPublicPageRendersWithTitleAndStylesheet() async throws {
        try await Self.app().test(.router) { client in
            for (path, title) in [("/", "Overview"), ("/workers", "Workers"), ("/leaderboard", "Leaderboard"), ("/login", "Log in"), ("/register", "Register")] {
                try await client.execute(uri: path, method: .get) { r in
                    #expect(r.status == .ok, "\(path)")
                    let html = String(buffer: r.body)
                    #expect(html.contains("<title>\(title) · CampusGrid</title>"), "\(path)")
                    #expect(html.contains("/static/app.css") && html.contains("/static/app.js"))
                    #expect(!html.contains("{{"), "unrendered mustache tag on \(path)")
                }
            }
            try await client.execute(uri: "/static/app.js", method: .get) { r in
                #expect(r.headers[.contentType]?.hasPrefix("text/javascript") == true)
                #expect(String(buffer: r.body).contains("EventSource"))
            }
        }
    }

    @Test func pagesThatNeedAnAccountRedirectToLogin() async throws {
        try await Self.app().test(.router) { client in
            for path in ["/submit", "/jobs", "/my-jobs", "/account", "/jobs/1"] {
                try await client.execute(uri: path, method: .get) { r in
                    #expect(r.status == .seeOther, "\(path)")
                    #expect(r.headers[.location]?.hasPrefix("/login?next=") == true)
                }
            }
        }
    }

    /// A dashboard session (its cookie's `cgs_` token) mints no API or worker token over the API: one would outlive the
    /// session's 7 days and its logout. The session still reads the API as its person.
    @Test func aDashboardSessionCreatesNoTokensOverTheAPI() async throws {
        try await Self.app().test(.router) { client in
            let browser = Browser(client)
            try await browser.register("alice")
            let session = try #require(browser.cookies[WebSession.cookieName])
            #expect(session.hasPrefix("cgs_"))
            for kind in ["api", "worker"] {
                try await client.execute(uri: "/api/v1/tokens?kind=\(kind)", method: .post, headers: [.authorization: "Bearer \(session)"]) { r in
                    #expect(r.status == .unauthorized, "kind \(kind): \(r.status) \(String(buffer: r.body))")
                    #expect(String(buffer: r.body).contains("a dashboard session creates no tokens"))
                }
            }
            try await client.execute(uri: "/api/v1/me", method: .get, headers: [.authorization: "Bearer \(session)"]) { r in
                #expect(r.status == .ok)
            }
        }
    }

    @Test func aFormPostWithoutTheCSRFTokenIsRefused() async throws {
        try await Self.app().test(.router) { client in
            let browser = Browser(client)
            try await browser.get("/register")
            // No token at all, and a token from some other session: both 403, no account made.
            for token in ["", WebSession.csrf(for: "someone-else")] {
                let r = try await browser.post("/register", ["csrf": token, "username": "mallory", "password": "long enough pw", "password2": "long enough pw"])
                #expect(r.status == .forbidden)
                #expect(r.body.contains("security token"))
            }
            let r = try await browser.post("/login", ["csrf": "", "username": "mallory", "password": "long enough pw"])
            #expect(r.status == .forbidden)
            // With the page's token it works.
            try await browser.register("alice")
            #expect(browser.cookies[WebSession.cookieName] != nil)
            // Logged in, a logout without the token does nothing.
            let out = try await browser.post("/logout", ["csrf": "nope"])
            #expect(out.status == .forbidden)
            try await browser.get("/account")
            #expect(browser.last.status == .ok)
        }
    }

    @Test func theSessionCookieIsHttpOnlyAndSameSiteAndSecureUnderTLS() async throws {
        try await Self.app().test(.router) { client in
            let plain = Browser(client)
            let r = try await plain.register("bob")
            let cookie = r.setCookies.first { $0.hasPrefix(WebSession.cookieName + "=") } ?? ""
            #expect(cookie.contains("HttpOnly"))
            #expect(cookie.contains("SameSite=Lax"))
            #expect(!cookie.contains("Secure"))
            let tls = Browser(client, extraHeaders: [.init("X-Forwarded-Proto")!: "https"])
            let r2 = try await tls.register("carol")
            // Under TLS its name is `__Host-`: no other host of the site can set one beside it.
            let secure = r2.setCookies.first { $0.hasPrefix(WebSession.hostPrefix + WebSession.cookieName + "=") } ?? ""
            #expect(secure.contains("Secure") && secure.contains("HttpOnly") && secure.contains("SameSite=Lax") && secure.contains("Path=/"), "\(r2.setCookies)")
            #expect(!r2.setCookies.contains { $0.hasPrefix(WebSession.cookieName + "=") })
        }
    }

    /// On a lab's shared machine a week-long cookie left the next student signed in as the last: a session cookie is
    /// the browser's (forgotten when it closes) unless "keep me signed in" was ticked, at sign-up or login alike.
    @Test func aSessionCookieLastsTheBrowsersSessionUnlessKept() async throws {
        try await Self.app().test(.router) { client in
            func sessionCookie(_ page: Browser.Page) -> String {
                page.setCookies.first { $0.hasPrefix(WebSession.cookieName + "=") } ?? ""
            }
            let shared = Browser(client)
            let registered = try await shared.register("lab-user")
            #expect(!sessionCookie(registered).isEmpty && !sessionCookie(registered).contains("Max-Age"), "\(registered.setCookies)")
            let other = Browser(client)
            try await other.get("/login")
            let plain = try await other.post("/login", ["username": "lab-user", "password": "correct horse battery"])
            #expect(plain.status == .seeOther)
            #expect(!sessionCookie(plain).isEmpty && !sessionCookie(plain).contains("Max-Age"), "\(plain.setCookies)")
            let own = Browser(client)
            try await own.get("/login")
            let kept = try await own.post("/login", ["username": "lab-user", "password": "correct horse battery", "keep": "1"])
            #expect(kept.status == .seeOther)
            #expect(sessionCookie(kept).contains("Max-Age=\(WebSession.maxAge)"), "\(kept.setCookies)")
            try await own.get("/register")
            let keptAtSignUp = try await own.post(
                "/register", ["username": "own-laptop", "password": "correct horse battery", "password2": "correct horse battery", "keep": "1"])
            #expect(sessionCookie(keptAtSignUp).contains("Max-Age=\(WebSession.maxAge)"), "\(keptAtSignUp.setCookies)")
        }
    }

    /// Another host of the same site (a student's page on `*.uni.edu`) plants Mallory's own session token as a cookie
    /// for the grid's domain on a longer path, so that the browser sends it first: the victim's account page was
    /// rendered as Mallory's, and a join token made there earned for her. Under TLS a cookie without the `__Host-`
    /// prefix is not read at all; in plain HTTP a session cookie sent twice signs nobody in, and is cleared. An API
    /// token as the cookie signs nobody in either.
    @Test func aSessionCookiePlantedByAnotherHostOfTheSiteSignsNobodyIn() async throws {
        let db = try GridDatabase.inMemory()
        try await Self.app(db: db).test(.router) { client in
            let https: HTTPFields = [.init("X-Forwarded-Proto")!: "https"]
            let mallory = Browser(client, extraHeaders: https)
            try await mallory.register("mallory")
            let carol = Browser(client, extraHeaders: https)
            try await carol.register("carol")
            let hers = try #require(mallory.cookies[WebSession.hostPrefix + WebSession.cookieName])
            let victims = try #require(carol.cookies[WebSession.hostPrefix + WebSession.cookieName])
            func account(_ cookie: String, tls: Bool) async throws -> (status: HTTPResponse.Status, body: String, cleared: Bool) {
                var headers: HTTPFields = tls ? https : [:]
                headers[.cookie] = cookie
                return try await client.execute(uri: "/account", method: .get, headers: headers) { r in
                    (r.status, String(buffer: r.body), r.headers[values: .setCookie].contains { $0.contains("cg_session=;") && $0.contains("Max-Age=0") })
                }
            }
            // Under TLS: the planted, unprefixed cookie first; the page is Carol's.
            let planted = try await account("\(WebSession.cookieName)=\(hers); \(WebSession.hostPrefix)\(WebSession.cookieName)=\(victims)", tls: true)
            #expect(planted.status == .ok && planted.body.contains("carol") && !planted.body.contains("mallory"), "\(planted.status)")
            // In plain HTTP (no prefix to rely on): sent twice, nobody is signed in, and the cookie is cleared.
            let twice = try await account("\(WebSession.cookieName)=\(hers); \(WebSession.cookieName)=\(victims)", tls: false)
            #expect(twice.status == .seeOther && twice.cleared, "\(twice.status)")
            let once = try await account("\(WebSession.cookieName)=\(victims)", tls: false)
            #expect(once.status == .ok && once.body.contains("carol"))
            // A pre-session cookie sent twice (a login CSRF's planted anchor) is not taken either.
            let pre = try await account("\(WebSession.preCookieName)=p_planted_anchor_0000; \(WebSession.preCookieName)=p_theirs_0000000000", tls: false)
            #expect(pre.status == .seeOther && pre.cleared)
            // An API token of Carol's (long-lived) as the cookie: not a session.
            let user = try #require(try await db.user(named: "carol"))
            let api = "cg_\(UUID().uuidString)"
            try await db.addToken(hash: Tokens.hash(api), userId: user.id, kind: .api, now: Date().timeIntervalSince1970)
            #expect(try await account("\(WebSession.cookieName)=\(api)", tls: false).status == .seeOther)
        }
    }

    @Test func userTextIsEscapedEverywhere() async throws {
        try await Self.app().test(.router) { client in
            let browser = Browser(client)
            try await browser.register("dave")
            // A username with markup is refused, and the refusal shows it as text.
            let other = Browser(client)
            try await other.get("/register")
            let refused = try await other.post(
                "/register", ["username": "<script>alert(1)</script>", "password": "long enough pw", "password2": "long enough pw"])
            #expect(refused.status == .badRequest)
            #expect(!refused.body.contains("<script>alert(1)</script>"))
            #expect(refused.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"))
            // A job whose name and script carry markup.
            let submitted = try await browser.post(
                "/submit",
                ["name": "<script>alert('name')</script>", "script": "print('<script>alert(2)</script>')", "cpus": "1", "ram_gb": "1", "gpus": "0", "minutes": "2", "priority": "0"],
                multipart: true)
            #expect(submitted.status == .seeOther)
            let jobPath = submitted.location ?? ""
            #expect(jobPath.hasPrefix("/jobs/"))
            for path in [jobPath, "/jobs", "/my-jobs"] {
                let page = try await browser.get(path)
                #expect(page.status == .ok, "\(path)")
                #expect(!page.body.contains("<script>alert"), "raw markup on \(path)")
                #expect(page.body.contains("&lt;script&gt;alert(&#39;name&#39;)&lt;/script&gt;"), "\(path)")
            }
            // A `<` joined to a prepended mark, and a `>` to a combining mark, make one `Character` each: the
            // library's escaper (by `Character`) let them through as markup.
            let joined = "\u{D4E}<meta http-equiv=refresh content=0>\u{301}"
            let sneaky = try await browser.post(
                "/submit", ["name": joined, "script": "print(1)", "cpus": "1", "ram_gb": "1", "gpus": "0", "minutes": "2", "priority": "0"],
                multipart: true)
            #expect(sneaky.status == .seeOther)
            for path in [sneaky.location ?? "/jobs", "/jobs", "/my-jobs"] {
                let page = try await browser.get(path)
                // Compared by bytes: `String.contains` compares `Character`s, and would not see the joined `<` either.
                let bytes = Array(page.body.utf8)
                #expect(bytes.firstRange(of: Array("<meta http-equiv=refresh".utf8)) == nil, "raw markup on \(path)")
                #expect(bytes.firstRange(of: Array("&lt;meta http-equiv=refresh content=0&gt;".utf8)) != nil, "\(path)")
            }
        }
    }

    /// Each template escapes by Unicode scalar: it names that content type first (a template, or a partial, that
    /// does not is escaped by the library's own rule, by `Character`).
    @Test func everyTemplateEscapesByScalar() throws {
        let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../Sources/GridManager/Web/templates")
        let names = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".mustache") }
        #expect(names.count >= 10)
        for name in names {
            let text = try String(contentsOf: folder.appendingPathComponent(name), encoding: .utf8)
            #expect(text.hasPrefix("{{% CONTENT_TYPE: HTML_SCALARS }}"), "\(name) does not escape by scalar")
        }
    }

    /// A logged-in user's huge url-encoded post is refused after 64 KiB, not split field by field (an 80 MB body of
    /// `a&a&…` took the manager a minute of CPU and 2 GB); the same form, multipart, still submits.
    @Test func aHugeURLEncodedFormIsRefusedBeforeItIsParsed() async throws {
        try await Self.app().test(.router) { client in
            let browser = Browser(client)
            try await browser.register("gina")
            var fields = ["script": "print(1)", "minutes": "1"]
            for i in 0..<20_000 { fields["f\(i)"] = "a" }
            let page = try await browser.post("/submit", fields)
            #expect(page.status == .contentTooLarge, "\(page.status) \(page.body.prefix(300))")
            #expect(try await browser.post("/submit", ["script": "print(1)", "minutes": "1"], multipart: true).status == .seeOther)
        }
    }

    /// Every answer carries the security headers, not only the dashboard's pages: an API answer, an API error, a
    /// route no one serves, a body over its limit, a refusal over a rate limit, an asset. A JSON answer or an error
    /// opened as a document runs and loads nothing, and is framed by nobody.
    @Test func everyAnswerCarriesTheSecurityHeaders() async throws {
        @Sendable func check(_ r: TestResponse, _ what: String, page: Bool = false, tls: Bool = false) {
            #expect(r.headers[.init("X-Content-Type-Options")!] == "nosniff", "\(what)")
            #expect(r.headers[.init("X-Frame-Options")!] == "DENY", "\(what)")
            #expect(r.headers[.init("Referrer-Policy")!] == "same-origin", "\(what)")
            let policy = r.headers[.init("Content-Security-Policy")!] ?? ""
            #expect(policy == (page ? SecurityHeaders.pagePolicy : SecurityHeaders.otherPolicy), "\(what): \(policy)")
            #expect(policy.contains("frame-ancestors 'none'") && policy.contains("base-uri 'none'"), "\(what)")
            #expect(!page || policy.contains("object-src 'none'"), "\(what)")
            #expect((r.headers[.init("Strict-Transport-Security")!] != nil) == tls, "\(what)")
        }
        try await Self.app { $0.loginAttemptsPerAddress = 1 }.test(.router) { client in
            try await client.execute(uri: "/workers", method: .get) { check($0, "a page", page: true) }
            try await client.execute(uri: "/login", method: .get) { check($0, "the login page", page: true) }
            try await client.execute(uri: "/static/app.js", method: .get) { check($0, "a script") }
            try await client.execute(uri: "/api/v1/workers", method: .get) { r in check(r, "API JSON: \(r.status)") }
            try await client.execute(uri: "/api/v1/me", method: .get) { r in
                #expect(r.status == .unauthorized)
                check(r, "an API error")
            }
            try await client.execute(uri: "/no/such/page", method: .get) { r in
                #expect(r.status == .notFound)
                check(r, "no such route")
            }
            try await client.execute(
                uri: "/api/v1/login", method: .post, headers: [.contentType: "application/json"],
                body: ByteBuffer(repeating: UInt8(ascii: "a"), count: BodyLimit.anonymousBytes + 1)
            ) { r in
                #expect(r.status == .contentTooLarge)
                check(r, "a body over its limit")
            }
            var statuses: [HTTPResponse.Status] = []
            for _ in 0..<3 {
                statuses.append(try await client.execute(
                    uri: "/api/v1/login", method: .post, headers: [.contentType: "application/json"],
                    body: ByteBuffer(string: #"{"username":"nobody","password":"wrong-password"}"#)
                ) { r in
                    if r.status == .tooManyRequests { check(r, "a rate-limited login") }
                    return r.status
                })
            }
            #expect(statuses.contains(.tooManyRequests), "\(statuses)")
        }
        // Under TLS, the browser is told to come back over TLS only.
        try await Self.app { $0.caFingerprint = String(repeating: "ab", count: 32) }.test(.router) { client in
            try await client.execute(uri: "/", method: .get) { r in
                check(r, "a page under TLS", page: true, tls: true)
                #expect(r.headers[.init("Strict-Transport-Security")!] == SecurityHeaders.transportSecurity)
            }
            try await client.execute(uri: "/api/v1/me", method: .get) { check($0, "an API error under TLS", tls: true) }
        }
    }

    /// A route that fails with an error of no HTTP status (a store's, say) is answered 500 with no detail, and with the
    /// headers too (before, with none: the middleware passed such errors on to Hummingbird).
    @Test func anAnswerToAnUnexpectedErrorCarriesTheSecurityHeaders() async throws {
        struct StoreBroke: Error, CustomStringConvertible { var description: String { "secret detail" } }
        let router = Router()
        router.add(middleware: SecurityHeadersMiddleware(tls: false))
        router.get("/broken") { _, _ -> String in throw StoreBroke() }
        router.get("/garbled") { _, _ -> String in throw HTTPParserError.invalidVersion }
        // A garbled request is still Hummingbird's to answer: 400, as before.
        try await Application(router: router).test(.live) { client in
            try await client.execute(uri: "/garbled", method: .get) { r in #expect(r.status == .badRequest) }
        }
        try await Application(router: router).test(.router) { client in
            try await client.execute(uri: "/broken", method: .get) { r in
                #expect(r.status == .internalServerError)
                #expect(!String(buffer: r.body).contains("secret detail"))
                #expect(r.headers[.init("X-Content-Type-Options")!] == "nosniff")
                #expect(r.headers[.init("X-Frame-Options")!] == "DENY")
                #expect(r.headers[.init("Content-Security-Policy")!] == SecurityHeaders.otherPolicy)
            }
        }
    }

    @Test func anotherUsersJobIsNotFound() async throws {
        try await Self.app().test(.router) { client in
            let owner = Browser(client)
            try await owner.register("erin")
            let submitted = try await owner.post("/submit", ["script": "print(1)", "minutes": "1"], multipart: true)
            let path = try #require(submitted.location)
            #expect(try await owner.get(path).status == .ok)
            let id = path.split(separator: "/").last!
            let stranger = Browser(client)
            try await stranger.register("frank")
            #expect(try await stranger.get(path).status == .notFound)
            #expect(try await stranger.get("/jobs/\(id)/outputs/result.txt").status == .notFound)
            #expect(try await stranger.get("/live?view=job&id=\(id)").status == .notFound)
            #expect(try await stranger.post("/jobs/\(id)/cancel", [:]).status == .notFound)
            // The owner's job is still pending: the stranger's cancel did nothing.
            #expect(try await owner.get(path).body.contains("data-state=\"pending\""))
        }
    }

    @Test func anUploadedScriptAndInputsBecomeTheJobsFiles() async throws {
        try await Self.app().test(.router) { client in
            let browser = Browser(client)
            try await browser.register("uma")
            let r = try await browser.post(
                "/submit", ["script": "", "minutes": "1"], multipart: true,
                files: [("script_file", "train.py", "print('uploaded')"), ("inputs", "data.csv", "a,b\n1,2"), ("inputs", "more.txt", "x")])
            let path = try #require(r.location, "\(r.status) \(r.body.prefix(800))")
            let page = try await browser.get(path)
            #expect(page.body.contains("<code>train.py</code>"))
            #expect(page.body.contains("Job #") && page.body.contains("train.py"))
        }
    }

    @Test func theSubmitFormTakesPythonPackagesAndTheScriptsOwnMetadata() async throws {
        try await Self.app().test(.router) { client in
            let browser = Browser(client)
            try await browser.register("pia")
            let script = "# /// script\n# dependencies = [\"Polars==1.*\"]\n# ///\nimport polars, tqdm\n"
            let r = try await browser.post("/submit", ["script": script, "requirements": "tqdm  # progress\r\n", "minutes": "1"], multipart: true)
            let path = try #require(r.location, "\(r.status) \(r.body.prefix(800))")
            let page = try await browser.get(path)
            #expect(page.body.contains("<code>polars==1.*, tqdm</code>"), "\(page.body)")
            let bad = try await browser.post("/submit", ["script": "print(1)", "requirements": "numpy\n-e .\n", "minutes": "1"], multipart: true)
            #expect(bad.status == .badRequest)
            #expect(bad.body.contains("Python packages line 2"), "\(bad.body)")
        }
    }

    @Test func loginIsRateLimited() async throws {
        try await Self.app().test(.router) { client in
            let user = Browser(client)
            try await user.register("gina")
            let attacker = Browser(client)
            try await attacker.get("/login")
            var statuses: [Int] = []
            for _ in 0..<12 {
                statuses.append(try await attacker.post("/login", ["username": "gina", "password": "wrong password"]).status.code)
            }
            #expect(statuses.prefix(10).allSatisfy { $0 == 401 })
            #expect(statuses.last == 429)
            // Even the right password is refused while the limit holds.
            #expect(try await attacker.post("/login", ["username": "gina", "password": "correct horse battery"]).status == .tooManyRequests)
        }
    }

    /// A dashboard session is a token of its own kind, capped as API tokens are (each login was a row kept for good),
    /// apart from them: evicting the oldest "API token" took the person's long-lived CLI token after a few logins.
    @Test func dashboardLoginsKeepTheNewestSessionsAndNeverEvictTheCLIsToken() async throws {
        let db = try GridDatabase.inMemory()
        try await Self.app(db: db, configure: { $0.maxTokensPerKind = 3 }).test(.router) { client in
            let cli = try #require(try await AbuseLimitRouteTests.register(client, "hana").token)
            for _ in 0..<5 {
                let b = Browser(client)
                try await b.get("/login")
                #expect(try await b.post("/login", ["username": "hana", "password": "long enough pw"]).status == .seeOther)
            }
            #expect(try await client.execute(uri: "/api/v1/me", method: .get, headers: [.authorization: "Bearer \(cli)"]) { $0.status } == .ok)
            // A session's kind is no API token's: none can be made over the API.
            #expect(try await client.execute(uri: "/api/v1/tokens?kind=session", method: .post, headers: [.authorization: "Bearer \(cli)"]) { $0.status } == .badRequest)
        }
        let hana = try #require(try await db.user(named: "hana"))
        #expect(try await db.tokens(of: hana.id, kind: .session).count == 3)
        #expect(try await db.tokens(of: hana.id, kind: .api).count == 1)
    }

    @Test func aGuesserIsLimitedPerAddressSoTheUserIsNotLockedOutElsewhere() {
        let limiter = RateLimiter(limit: 3, window: 3600)
        let attacker = APIController.loginKey(username: "Gina", client: "10.0.0.66")
        let gina = APIController.loginKey(username: "gina", client: "10.0.0.7")
        #expect((0..<4).map { _ in limiter.allow(attacker) } == [true, true, true, false])
        #expect(limiter.allow(gina), "the attacker's failures locked the user out from her own address")
        #expect(APIController.loginKey(username: "GINA", client: "10.0.0.66") == attacker, "case must not dodge the limit")
    }

    @Test func aDashboardSessionExpiresAfterAWeekInTheBrowserAndOnTheAPI() async throws {
        let db = try GridDatabase.inMemory()
        let user = try await db.createUser(username: "ivy", passwordHash: "x", startingCredits: 100, now: 0)
        let now = Date().timeIntervalSince1970
        let fresh = "cgs_fresh_\(UUID().uuidString)"
        let stale = "cgs_stale_\(UUID().uuidString)"
        try await db.addToken(hash: Tokens.hash(fresh), userId: user.id, kind: .api, now: now - 3600)
        try await db.addToken(hash: Tokens.hash(stale), userId: user.id, kind: .api, now: now - Double(WebSession.maxAge) - 60)
        try await Self.app(db: db).test(.router) { client in
            for (token, ok) in [(fresh, true), (stale, false)] {
                var cookie = HTTPFields()
                cookie[.cookie] = "\(WebSession.cookieName)=\(token)"
                try await client.execute(uri: "/account", method: .get, headers: cookie) { r in
                    #expect(ok ? r.status == .ok : r.status == .seeOther, "\(token.prefix(9)): \(r.status)")
                }
                var bearer = HTTPFields()
                bearer[.authorization] = "Bearer \(token)"
                try await client.execute(uri: "/api/v1/me", method: .get, headers: bearer) { r in
                    #expect(ok ? r.status == .ok : r.status == .unauthorized, "\(token.prefix(9)): \(r.status)")
                }
            }
        }
    }

    /// A session not kept ends on the manager 12 hours after login, whatever the browser restores; a kept one lasts
    /// the week.
    @Test func aSessionNotKeptEndsAfterTwelveHoursOnTheManagerToo() async throws {
        let db = try GridDatabase.inMemory()
        let user = try await db.createUser(username: "lab", passwordHash: "x", startingCredits: 100, now: 0)
        let now = Date().timeIntervalSince1970
        let thirteenHours = 13.0 * 3600
        let brief = WebSession.browserSessionPrefix + UUID().uuidString
        let kept = "cgs_" + UUID().uuidString.replacingOccurrences(of: "-", with: "")
        let fresh = WebSession.browserSessionPrefix + "fresh" + UUID().uuidString
        try await db.addToken(hash: Tokens.hash(brief), userId: user.id, kind: .session, now: now - thirteenHours)
        try await db.addToken(hash: Tokens.hash(kept), userId: user.id, kind: .session, now: now - thirteenHours)
        try await db.addToken(hash: Tokens.hash(fresh), userId: user.id, kind: .session, now: now - 3600)
        try await Self.app(db: db).test(.router) { client in
            for (token, ok) in [(brief, false), (kept, true), (fresh, true)] {
                var cookie = HTTPFields()
                cookie[.cookie] = "\(WebSession.cookieName)=\(token)"
                try await client.execute(uri: "/account", method: .get, headers: cookie) { r in
                    #expect(ok ? r.status == .ok : r.status == .seeOther, "\(token.prefix(9)): \(r.status)")
                }
            }
            // Signing in without "keep me signed in" makes such a token; with it, a kept one.
            let browser = Browser(client)
            try await browser.get("/register")
            _ = try await browser.post("/register", ["username": "lab-two", "password": "correct horse battery", "password2": "correct horse battery"])
            #expect(browser.cookies[WebSession.cookieName]?.hasPrefix(WebSession.browserSessionPrefix) == true)
            let keeper = Browser(client)
            try await keeper.get("/login")
            _ = try await keeper.post("/login", ["username": "lab-two", "password": "correct horse battery", "keep": "1"])
            let token = try #require(keeper.cookies[WebSession.cookieName])
            #expect(token.hasPrefix("cgs_") && !token.hasPrefix(WebSession.browserSessionPrefix))
        }
        #expect(WebSession.tokenLifetime(brief) == 12 * 3600 && WebSession.tokenLifetime(kept) == WebSession.maxAge)
    }

    @Test func theCostPreviewUsesTheServersFormula() async throws {
        try await Self.app().test(.router) { client in
            let browser = Browser(client)
            try await browser.register("hank")
            for (cpus, ram, gpus, minutes) in [(1, 1, 0, 5), (4, 8, 1, 30), (2, 0, 0, 1)] {
                let r = try await browser.get("/submit/preview?cpus=\(cpus)&ram_gb=\(ram)&gpus=\(gpus)&minutes=\(minutes)")
                let json = try JSONSerialization.jsonObject(with: Data(r.body.utf8)) as? [String: Any]
                let hold = CreditRules.hold(JobSpec(name: "x", cpus: cpus, ramGb: ram, gpus: gpus, minutes: minutes))
                #expect(json?["hold"] as? Int == hold)
                #expect(json?["after"] as? Int == 100 - hold)
            }
            let bad = try await browser.get("/submit/preview?cpus=99999999999999999&minutes=-1")
            #expect(bad.status == .ok)
            #expect(bad.body.contains("\"error\""))
            // The page shows the same figure before any script runs.
            let page = try await browser.get("/submit")
            #expect(page.body.contains("<output id=\"cost-hold\">\(CreditRules.hold(JobSpec(name: "x")))</output>"))
        }
    }

    @Test func anOutOfRangeSubmitIsShownAgainWithTheProblem() async throws {
        try await Self.app().test(.router) { client in
            let browser = Browser(client)
            try await browser.register("ivy")
            let r = try await browser.post("/submit", ["script": "print(1)", "cpus": "9223372036854775807", "minutes": "5"], multipart: true)
            #expect(r.status == .badRequest)
            #expect(r.body.contains("cpus must be"))
            let poor = try await browser.post("/submit", ["script": "print(1)", "cpus": "40", "minutes": "100"], multipart: true)
            #expect(poor.status.code == 402)
            #expect(poor.body.contains("balance is 100"))
        }
    }

    /// Past its quota an address gets no regions (each open stream renders its page twice a second, and the overview
    /// needs no login): it is told to come back in a minute. A stream that ended gave its slot back.
    @Test func liveStreamsPastTheQuotaGetNoRegionsAndAnEndedOneGivesItsSlotBack() async throws {
        try await Self.app(streamSeconds: 0.2, configure: { $0.liveStreamsPerClient = 0 }).test(.router) { client in
            try await client.execute(uri: "/live?view=overview", method: .get) { r in
                let text = String(buffer: r.body)
                #expect(text.contains("event: busy") && text.contains("retry: 60000") && !text.contains("event: region"), "\(text.prefix(300))")
            }
        }
        try await Self.app(streamSeconds: 0.2, configure: { $0.liveStreamsPerClient = 1 }).test(.router) { client in
            for _ in 0..<3 {
                try await client.execute(uri: "/live?view=overview", method: .get) { r in
                    #expect(String(buffer: r.body).contains("event: region"), "the slot of the stream before was not given back")
                }
            }
        }
    }

    @Test func aStreamQuotaBoundsEachAddressAndTheWhole() {
        var q = StreamQuota(perClient: 2, total: 3)
        let taken = [q.admit("a"), q.admit("a"), q.admit("a"), q.admit("b"), q.admit("c")]
        #expect(taken == [true, true, false, true, false], "a third from one address, a fourth in all: \(taken)")
        q.release("a")
        let again = q.admit("c")
        #expect(again)
        q.release("nobody")
        #expect(q.count == 3 && q.open["nobody"] == nil, "a release with nothing taken changes nothing")
        q.release("b")
        q.release("b")
        #expect(q.count == 2 && q.open["b"] == nil)
    }

    /// Accounts are free: sixteen made from one host took every slot with 32 streams each. A person's streams count
    /// against their address too (four people's worth), and a person elsewhere still gets one.
    @Test func onePersonsAccountsFromOneHostHoldAtMostFourPeoplesStreams() {
        var q = StreamQuota(perClient: 2, total: 100)
        #expect(q.perAddress == 8)
        let taken = (0..<16).flatMap { u in (0..<2).map { _ in q.admit("user \(u)", address: "10.0.0.9", signedIn: true) } }
        #expect(taken.filter { $0 }.count == 8, "\(taken)")
        let elsewhere = q.admit("user 99", address: "10.0.0.10", signedIn: true)
        #expect(elsewhere, "a person elsewhere was refused")
        q.release("user 0", address: "10.0.0.9", signedIn: true)
        #expect(q.fromAddress["10.0.0.9"] == 7)
        let again = q.admit("user 15", address: "10.0.0.9", signedIn: true)
        let over = q.admit("user 14", address: "10.0.0.9", signedIn: true)
        #expect(again && !over)
        // A stranger's client is its address: counted once, as before.
        let stranger = q.admit("10.0.0.9", signedIn: false)
        #expect(stranger && q.fromAddress["10.0.0.9"] == 8)
    }

    /// A quarter of the slots are kept for people signed in: strangers from many addresses cannot take them all.
    @Test func strangersLeaveAQuarterOfTheSlotsToPeopleSignedIn() {
        var q = StreamQuota(perClient: 1, total: 8)
        let strangers = (0..<8).map { q.admit("s\($0)", signedIn: false) }
        #expect(strangers == Array(repeating: true, count: 6) + [false, false])
        let people = [q.admit("alice", signedIn: true), q.admit("bob", signedIn: true), q.admit("carol", signedIn: true)]
        #expect(people == [true, true, false], "the two kept slots, then the whole is full")
        q.release("s0", signedIn: false)
        #expect(q.strangers == 5)
        let back = q.admit("s7", signedIn: false)
        #expect(back, "a stranger's slot given back is a stranger's to take")
        q.release("alice", signedIn: true)
        let more = q.admit("s8", signedIn: false)
        #expect(!more, "strangers hold their share already")
        let carol = q.admit("carol", signedIn: true)
        #expect(carol)
    }

    /// A plain-text grid's peers have no certificates: the peer CA route says so (404), with no login needed.
    @Test func thePeerCARouteOfAPlainTextGridSaysItHasNone() async throws {
        try await Self.app().test(.router) { client in
            try await client.execute(uri: "/api/v1/peer-ca", method: .get) { r in
                #expect(r.status == .notFound)
                #expect(String(buffer: r.body).contains("this grid speaks plain text"), "\(String(buffer: r.body))")
            }
        }
    }

    @Test func theLiveStreamSendsRegionsAsServerSentEvents() async throws {
        try await Self.app(streamSeconds: 1).test(.router) { client in
            try await client.execute(uri: "/live?view=overview", method: .get) { r in
                #expect(r.status == .ok)
                #expect(r.headers[.contentType]?.hasPrefix("text/event-stream") == true)
                let text = String(buffer: r.body)
                #expect(text.hasPrefix("retry: "))
                #expect(text.contains("event: region\ndata: {\"html\":"))
                #expect(text.contains("\"id\":\"stats\""))
                #expect(text.contains("\"id\":\"chart\""))
            }
            try await client.execute(uri: "/live?view=nonsense", method: .get) { r in #expect(r.status == .badRequest) }
        }
    }

    @Test func aJobsLiveStreamCarriesItsLogAndState() async throws {
        try await Self.app(streamSeconds: 1).test(.router) { client in
            let browser = Browser(client)
            try await browser.register("jack")
            let path = try #require(try await browser.post("/submit", ["script": "print(1)", "minutes": "1"], multipart: true).location)
            let id = path.split(separator: "/").last!
            let r = try await browser.get("/live?view=job&id=\(id)&log=0")
            #expect(r.body.contains("\"id\":\"summary\""))
            #expect(r.body.contains("job-state"))
            #expect(r.body.contains("\"id\":\"nav-balance\""))
        }
    }

    @Test func logoutEndsTheSession() async throws {
        try await Self.app().test(.router) { client in
            let browser = Browser(client)
            try await browser.register("kim")
            #expect(try await browser.get("/account").status == .ok)
            let out = try await browser.post("/logout", [:])
            #expect(out.status == .seeOther)
            #expect(try await browser.get("/account").status == .seeOther)
        }
    }

    @Test func apiErrorsKeepTheirShapeForMalformedBodies() async throws {
        try await Self.app().test(.router) { client in
            try await client.execute(
                uri: "/api/v1/register", method: .post, headers: [.contentType: "application/json"], body: ByteBuffer(string: "{\"username\": 5")
            ) { r in
                #expect(r.status == .badRequest)
                let json = try JSONSerialization.jsonObject(with: Data(String(buffer: r.body).utf8)) as? [String: [String: String]]
                #expect(json?["error"]?["code"] == "bad_request")
            }
            try await client.execute(uri: "/openapi.json", method: .get) { r in
                let doc = try JSONSerialization.jsonObject(with: Data(String(buffer: r.body).utf8)) as? [String: Any]
                #expect((doc?["openapi"] as? String)?.hasPrefix("3.") == true)
                let paths = (doc?["paths"] as? [String: Any])?.keys.sorted() ?? []
                #expect(paths.contains("/api/v1/jobs/{id}/logs"))
            }
        }
    }
}
