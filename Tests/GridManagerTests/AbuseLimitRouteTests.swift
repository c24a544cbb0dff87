import Foundation
import GridCore
import GridStore
import Hummingbird
import HummingbirdTesting
import Logging
import Testing

@testable import GridManager

/// Sign-up flood limits, admin-only routes and `/metrics`, through the real router in process.
@Suite struct AbuseLimitRouteTests {
    static func register(_ client: some TestClientProtocol, _ name: String) async throws -> (status: HTTPResponse.Status, token: String?, retryAfter: String?, body: String) {
        try await client.execute(
            uri: "/api/v1/register", method: .post, headers: [.contentType: "application/json"],
            body: ByteBuffer(string: #"{"username":"\#(name)","password":"long enough pw"}"#)
        ) { r in
            let body = String(buffer: r.body)
            let token = (try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any])?["token"] as? String
            return (r.status, token, r.headers[.retryAfter], body)
        }
    }

    @Test func aRegistrationFloodFromOneAddressGets429WithRetryAfterOnTheAPIAndTheForm() async throws {
        let app = try await DashboardRouteTests.app { config in
            config.registrationBurst = 3
            // No refill within the test, however slowly a loaded machine runs it.
            config.registrationsPerMinute = 0.01
        }
        try await app.test(.router) { client in
            var statuses: [Int] = []
            var last: (status: HTTPResponse.Status, token: String?, retryAfter: String?, body: String)?
            for i in 0..<5 {
                last = try await Self.register(client, "flood\(i)")
                statuses.append(last!.status.code)
            }
            #expect(statuses == [201, 201, 201, 429, 429])
            let wait = try #require(last?.retryAfter.flatMap { Int($0) }, "429 without Retry-After")
            #expect(wait >= 1, "Retry-After \(wait) s")
            #expect(last?.body.contains("\"rate_limited\"") == true)
            #expect(last?.body.contains("too many new accounts") == true)
            // The dashboard's sign-up form counts against the same limit.
            let browser = Browser(client)
            try await browser.get("/register")
            let form = try await browser.post("/register", ["username": "flood9", "password": "long enough pw", "password2": "long enough pw"])
            #expect(form.status == .tooManyRequests)
            #expect(form.body.contains("too many new accounts"))
            #expect(browser.cookies[WebSession.cookieName] == nil, "no session for a refused sign-up")
        }
    }

    static let tableReadBurst = 120

    /// A router whose table-read allowance never refills within a test, however slowly a loaded machine runs it (at
    /// 600 a minute, a slow loop never ran out).
    static func tableReadApp() async throws -> some ApplicationProtocol {
        try await DashboardRouteTests.app {
            $0.tableReadBurst = tableReadBurst
            $0.tableReadsPerMinute = 0.01
        }
    }

    /// Sends `request(i)` until one is refused (at most the allowance and 40): the allowance is served, then 429.
    static func floodUntilRefused(
        _ client: some TestClientProtocol, sourceLocation: SourceLocation = #_sourceLocation, _ request: (Int) -> (String, HTTPFields)
    ) async throws {
        var statuses: [Int] = []
        for i in 0..<(tableReadBurst + 40) {
            let (uri, headers) = request(i)
            let status = try await client.execute(uri: uri, method: .get, headers: headers) { $0.status.code }
            statuses.append(status)
            if status == 429 { break }
        }
        #expect(statuses.prefix(tableReadBurst).allSatisfy { $0 == 200 }, "the allowance is served: \(statuses.prefix(tableReadBurst))", sourceLocation: sourceLocation)
        #expect(statuses.last == 429, "\(statuses.count) requests, none refused", sourceLocation: sourceLocation)
    }

    /// Pages that read whole tables, asked for by nobody signed in, are counted per address: a loop of them from one
    /// stranger kept the store busy for everyone. Past the allowance: 429 with Retry-After, on the API's leaderboard and
    /// the dashboard's pages alike (a made-up token counts as none); signing in still works, and a signed-in person is
    /// counted on their own allowance, not the address's.
    @Test func anonymousPageFloodFromOneAddressGets429AndSignedInPeopleDoNot() async throws {
        try await Self.tableReadApp().test(.router) { client in
            // A made-up bearer on every other one: it skips nothing.
            try await Self.floodUntilRefused(client) { i in
                ("/api/v1/leaderboard", i.isMultiple(of: 2) ? [:] : [.authorization: "Bearer cgu_madeup"])
            }
            let page = try await client.execute(uri: "/workers", method: .get) { ($0.status, $0.headers[.retryAfter], String(buffer: $0.body)) }
            #expect(page.0 == .tooManyRequests)
            #expect(page.1.flatMap { Int($0) }.map { $0 >= 1 } == true, "Retry-After")
            #expect(page.2.contains("without signing in"))
            // Signing in is never held up, and then the address's count is not theirs.
            let (_, token, _, _) = try await Self.register(client, "reader")
            let bearer = try #require(token)
            for _ in 0..<5 {
                let status = try await client.execute(uri: "/api/v1/leaderboard", method: .get, headers: [.authorization: "Bearer \(bearer)"]) { $0.status }
                #expect(status == .ok)
            }
            let browser = Browser(client)
            try await browser.get("/login")
            let login = try await browser.post("/login", ["username": "reader", "password": "long enough pw"])
            #expect(login.status.code < 400, "\(login.status)")
            #expect(try await browser.get("/workers").status == .ok)
            #expect(try await browser.get("/").status == .ok)
        }
    }

    /// A person signed in reading whole tables in a loop (pages, `GET /api/v1/workers`, the leaderboard) kept the store
    /// busy for everyone, unlimited (an account is cheap). They are counted per person, over the API and the dashboard
    /// together, with the anonymous allowance; another person is not held up.
    @Test func aSignedInPageFloodIsLimitedPerPerson() async throws {
        try await Self.tableReadApp().test(.router) { client in
            let (_, token, _, _) = try await Self.register(client, "looper")
            let bearer = try #require(token)
            try await Self.floodUntilRefused(client) { i in
                (i.isMultiple(of: 2) ? "/api/v1/workers" : "/api/v1/leaderboard", [.authorization: "Bearer \(bearer)"])
            }
            // The same person's dashboard session shares the count.
            let browser = Browser(client)
            try await browser.get("/login")
            #expect(try await browser.post("/login", ["username": "looper", "password": "long enough pw"]).status.code < 400)
            let page = try await browser.get("/workers")
            #expect(page.status == .tooManyRequests && page.body.contains("from your account"), "\(page.status)")
            // Another person, from the same address, is served.
            let (_, other, _, _) = try await Self.register(client, "neighbour")
            let status = try await client.execute(uri: "/api/v1/workers", method: .get, headers: [.authorization: "Bearer \(try #require(other))"]) { $0.status }
            #expect(status == .ok)
        }
    }

    /// Sign-ups are counted per host as logins are: every address of an IPv6 /64 is one.
    @Test func signUpsFromOneSlash64CountAsOneAddress() {
        #expect(APIController.registrationKey(client: "2001:db8:1:2::1") == APIController.registrationKey(client: "2001:db8:1:2:ffff:1:2:3"))
        #expect(APIController.registrationKey(client: "2001:db8:1:2::1") != APIController.registrationKey(client: "2001:db8:1:3::1"))
        #expect(APIController.registrationKey(client: "10.0.0.1") != APIController.registrationKey(client: "10.0.0.2"))
    }

    @Test func theFormShowsRetryAfterToo() async throws {
        let app = try await DashboardRouteTests.app {
            $0.registrationBurst = 1
            // No refill within the test, however slowly a loaded machine runs it.
            $0.registrationsPerMinute = 0.01
        }
        try await app.test(.router) { client in
            #expect(try await Self.register(client, "first").status == .created)
            let browser = Browser(client)
            try await browser.get("/register")
            var headers = HTTPFields()
            headers[.cookie] = browser.cookies.map { "\($0.key)=\($0.value)" }.joined(separator: "; ")
            headers[.contentType] = "application/x-www-form-urlencoded"
            let retryAfter = try await client.execute(
                uri: "/register", method: .post, headers: headers,
                body: ByteBuffer(string: "csrf=\(browser.csrf)&username=second&password=long+enough+pw&password2=long+enough+pw")
            ) { r in
                #expect(r.status == .tooManyRequests)
                return r.headers[.retryAfter]
            }
            #expect(retryAfter.flatMap { Int($0) }.map { $0 >= 1 } == true)
        }
    }

    @Test func theDefaultLimitLetsAClassSignUpFromOneAddress() async throws {
        try await DashboardRouteTests.app().test(.router) { client in
            for i in 0..<10 {
                let status = try await Self.register(client, "student\(i)").status
                #expect(status == .created, "student\(i)")
            }
        }
    }

    /// Logins that succeed count against the limit too: each costs a bcrypt and makes a token.
    @Test func aLoopOfSuccessfulLoginsIsLimitedToo() async throws {
        let app = try await DashboardRouteTests.app { $0.loginAttempts = 3 }
        try await app.test(.router) { client in
            _ = try await Self.register(client, "hana")
            var statuses: [HTTPResponse.Status] = []
            for _ in 0..<4 {
                statuses.append(
                    try await client.execute(
                        uri: "/api/v1/login", method: .post, headers: [.contentType: "application/json"],
                        body: ByteBuffer(string: #"{"username":"hana","password":"long enough pw"}"#)
                    ) { $0.status })
            }
            #expect(statuses == [.ok, .ok, .ok, .tooManyRequests], "\(statuses)")
        }
    }

    /// One address tried ten passwords a minute on every account there is: now the address has a limit of its own,
    /// whatever the usernames; and an account's failures from anywhere have one too (its tokens go on working).
    static func login(_ client: some TestClientProtocol, _ name: String, _ password: String) async throws -> (HTTPResponse.Status, String) {
        try await client.execute(
            uri: "/api/v1/login", method: .post, headers: [.contentType: "application/json"],
            body: ByteBuffer(string: #"{"username":"\#(name)","password":"\#(password)"}"#)
        ) { ($0.status, String(buffer: $0.body)) }
    }

    @Test func sprayingFromOneAddressAndGuessingOneAccountAreLimited() async throws {
        try await DashboardRouteTests.app { $0.loginAttemptsPerAddress = 5 }.test(.router) { client in
            var statuses: [HTTPResponse.Status] = []
            for i in 0..<6 { statuses.append(try await Self.login(client, "victim\(i)", "password\(i)").0) }
            #expect(statuses == Array(repeating: .unauthorized, count: 5) + [.tooManyRequests], "\(statuses)")
            #expect(try await Self.login(client, "victim9", "x").1.contains("from this address"))
        }
        try await DashboardRouteTests.app { $0.loginFailuresPerAccount = 3 }.test(.router) { client in
            let token = try #require(try await Self.register(client, "ivy").token)
            for guess in ["a wrong one", "another one", "a third one"] { #expect(try await Self.login(client, "ivy", guess).0 == .unauthorized) }
            let (status, body) = try await Self.login(client, "IVY", "long enough pw")
            #expect(status == .tooManyRequests && body.contains("failed logins"), "\(status) \(body)")
            // The account's token still works; another account is not held up.
            #expect(try await client.execute(uri: "/api/v1/me", method: .get, headers: [.authorization: "Bearer \(token)"]) { $0.status } == .ok)
            _ = try await Self.register(client, "jay")
            #expect(try await Self.login(client, "jay", "long enough pw").0 == .ok)
            // From where jay logged in lately, failures count against that place's own allowance, capped the same.
            for guess in ["a wrong one", "another one", "a third one"] { #expect(try await Self.login(client, "jay", guess).0 == .unauthorized) }
            #expect(try await Self.login(client, "jay", "a fourth one").0 == .tooManyRequests)
        }
    }

    /// A place an account logged in from is no way around its failure cap (a campus Wi-Fi's /64, or a NAT its owner
    /// had used, guessed without one), and guessing from elsewhere still cannot lock the owner out of that place.
    @Test func aPlaceAnAccountLoggedInFromHasAFailureCapOfItsOwn() async throws {
        var config = ManagerConfig(dataDirectory: NSTemporaryDirectory())
        config.bcryptCost = 4
        let db = try GridDatabase.inMemory()
        let api = APIController(
            db: db, core: ManagerCore(db: db, config: config, logger: Logger(label: "test")), config: config,
            loginLimiter: RateLimiter(limit: 1_000, window: 3600), loginAddressLimiter: RateLimiter(limit: 1_000, window: 3600),
            loginFailureLimiter: RateLimiter(limit: 3, window: 3600), registrationLimiter: RateLimiter(burst: 10, perMinute: 10),
            admins: Admins(named: []))
        func attempt(_ name: String, _ password: String, from client: String) async -> String {
            do {
                _ = try await api.checkLogin(username: name, password: password, client: client)
                return "ok"
            } catch is TooManyRequests { return "429" } catch { return "401" }
        }
        for name in ["kim", "lee"] { _ = try await api.createAccount(username: name, password: "long enough pw", client: "10.0.0.1") }
        // Kim signs in on the campus Wi-Fi; Mallory shares its /64, each guess from another address in it.
        #expect(await attempt("kim", "long enough pw", from: "2001:db8:1:2::5") == "ok")
        var guesses: [String] = []
        for i in 0..<5 { guesses.append(await attempt("kim", "guess \(i)", from: "2001:db8:1:2::\(100 + i)")) }
        #expect(guesses == ["401", "401", "401", "429", "429"], "\(guesses)")
        // Lee signs in from home; failures from elsewhere use up the account's allowance, not home's.
        #expect(await attempt("lee", "long enough pw", from: "192.0.2.7") == "ok")
        for i in 0..<3 { _ = await attempt("lee", "guess \(i)", from: "198.51.100.\(i)") }
        #expect(await attempt("lee", "guess 9", from: "198.51.100.9") == "429")
        #expect(await attempt("lee", "long enough pw", from: "192.0.2.7") == "ok")
        // Pure: which allowance a failure counts against.
        #expect(APIController.failureKey(account: "kim", address: "a", known: false) == "kim")
        #expect(APIController.failureKey(account: "kim", address: "a", known: true) != APIController.failureKey(account: "kim", address: "b", known: true))
        // A username's attempts are counted by the address as every limit takes it: a /64 is one.
        #expect(APIController.loginKey(username: "Kim", client: "2001:db8:1:2::5") == APIController.loginKey(username: "kim", client: "2001:db8:1:2::77"))
    }

    @Test func loginRefusalsCarryRetryAfter() async throws {
        let app = try await DashboardRouteTests.app { $0.loginAttempts = 2 }
        try await app.test(.router) { client in
            _ = try await Self.register(client, "gina")
            var last: String?
            for _ in 0..<3 {
                last = try await client.execute(
                    uri: "/api/v1/login", method: .post, headers: [.contentType: "application/json"],
                    body: ByteBuffer(string: #"{"username":"gina","password":"wrong password"}"#)
                ) { r in r.status == .tooManyRequests ? r.headers[.retryAfter] : nil }
            }
            #expect(last.flatMap { Int($0) }.map { $0 >= 1 } == true)
        }
    }

    @Test func onlyAdminsReachTheAdminRoutes() async throws {
        let router = try await DashboardRouteTests.router { $0.admins = ["Carol"] }
        let adminRoutes = router.routes.filter { $0.path.description.hasPrefix("/api/v1/admin/") }.map { (path: $0.path.description, method: $0.method) }
        #expect(adminRoutes.map(\.path).contains("/api/v1/admin/ledger-check"))
        try await Application(router: router).test(.router) { client in
            let first = try #require(try await Self.register(client, "first").token)
            let bob = try #require(try await Self.register(client, "bob").token)
            let carol = try #require(try await Self.register(client, "carol").token)
            for route in adminRoutes {
                for (who, token, expected) in [("first", first, HTTPResponse.Status.ok), ("bob", bob, .forbidden), ("carol", carol, .ok)] {
                    let (status, body) = try await client.execute(
                        uri: route.path, method: route.method, headers: [.authorization: "Bearer \(token)"]
                    ) { r in (r.status, String(buffer: r.body)) }
                    if expected == .ok, route.path.contains(":") || route.path.contains("{") {
                        // A route about one thing (`:id`): past the admin gate, a made-up id is not found.
                        #expect(status == .notFound, "\(who) on \(route.path): \(status) \(body.prefix(200))")
                    } else {
                        #expect(status == expected, "\(who) on \(route.path): \(status) \(body.prefix(200))")
                    }
                    if expected == .forbidden {
                        #expect(body.contains("\"forbidden\"") && body.contains("bob is not an admin"))
                    }
                }
                let anonymous = try await client.execute(uri: route.path, method: route.method) { $0.status }
                #expect(anonymous == .unauthorized)
            }
        }
    }

    @Test func metricsAnswerOnlyLoopbackAddresses() {
        for address in ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"] {
            #expect(MetricsEndpoint.allows(clientAddress: address), "\(address)")
        }
        for address in ["10.0.0.5", "192.168.1.20", "::ffff:10.0.0.5", "fe80::1", "?", "", "127.0.0", "127.0.0.1.5", "1127.0.0.1", "127.0.0.x"] {
            #expect(!MetricsEndpoint.allows(clientAddress: address), "\(address)")
        }
    }

    @Test func metricsRefuseARequestFromAnUnknownAddress() async throws {
        // In process there is no socket, so the address is unknown: refused. (From 127.0.0.1 the integration tests read it.)
        try await DashboardRouteTests.app().test(.router) { client in
            try await client.execute(uri: "/metrics", method: .get) { r in
                #expect(r.status == .forbidden)
                #expect(String(buffer: r.body).contains("only requests from the manager's own machine"))
            }
        }
    }
}
