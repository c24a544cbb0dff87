import Foundation
import GridCore
import GridStore
import Hummingbird
import HummingbirdTesting
import Testing

@testable import GridManager

/// Limits for those who have not logged in, and the bundle limit of the dashboard's form, through the real router in
/// process; and the `next=` rule.
@Suite struct StrangerRouteTests {
    @Test(arguments: ["/api/v1/register", "/api/v1/login", "/api/v1/logout", "/register", "/login", "/logout", "/api/v1/register/"])
    func routesThatNeedNoLoginTakeASmallBody(path: String) {
        #expect(BodyLimit.bytes(path: path, uploadBytes: 96 << 20) == BodyLimit.anonymousBytes)
    }

    @Test(arguments: ["/api/v1/jobs", "/submit", "/api/v1/tokens"])
    func routesThatNeedALoginTakeTheUploadLimit(path: String) {
        #expect(BodyLimit.bytes(path: path, uploadBytes: 96 << 20) == 96 << 20)
    }

    /// Another site's page may have a visitor's browser POST a form or `text/plain` anywhere, unasked: a sign-up with a
    /// password that page chose (counted against the visitor's address), or a login guess. Such a body, or one the
    /// browser marks cross-site, is refused and creates nothing; JSON from the CLI goes through.
    @Test func aSignUpOrLoginAnotherSitesPageCouldSendIsRefused() async throws {
        let db = try GridDatabase.inMemory()
        try await DashboardRouteTests.app(db: db).test(.router) { client in
            let body = #"{"username":"planted","password":"chosen by them"}"#
            for (path, headers) in [
                ("/api/v1/register", [.contentType: "text/plain"]),
                ("/api/v1/register", [.contentType: "application/x-www-form-urlencoded"]),
                ("/api/v1/register", [:]),
                ("/api/v1/register", [.contentType: "application/json", .init("Sec-Fetch-Site")!: "cross-site"]),
                ("/api/v1/login", [.contentType: "text/plain;charset=UTF-8"]),
            ] as [(String, HTTPFields)] {
                let status = try await client.execute(uri: path, method: .post, headers: headers, body: ByteBuffer(string: body)) { $0.status }
                #expect(status == .badRequest || status == .forbidden, "\(path) \(headers): \(status)")
            }
            #expect(try await db.user(named: "planted") == nil, "an account was made")
            let ok = try await client.execute(
                uri: "/api/v1/register", method: .post, headers: [.contentType: "application/json; charset=utf-8", .init("Sec-Fetch-Site")!: "same-origin"],
                body: ByteBuffer(string: body)) { $0.status }
            #expect(ok == .created)
        }
    }

    @Test func aLargeRegisterBodyGets413FromItsLengthWithTheAPIErrorShape() async throws {
        let app = try await DashboardRouteTests.app()
        try await app.test(.router) { client in
            let body = ByteBuffer(repeating: UInt8(ascii: " "), count: BodyLimit.anonymousBytes + 1)
            let (status, text) = try await client.execute(
                uri: "/api/v1/register", method: .post, headers: [.contentType: "application/json"], body: body
            ) { r in (r.status, String(buffer: r.body)) }
            #expect(status == .contentTooLarge)
            #expect(text.contains("accepts at most \(BodyLimit.anonymousBytes)"), "\(text)")
        }
    }

    /// The router skips empty segments, so these are the login and sign-up routes: they get the small limit too, not
    /// the upload limit a path not listed gets (a stranger could make the manager read 96 MB per connection).
    @Test(arguments: ["/api/v1//login", "//api/v1/login", "/api//v1/register", "/api/v1/login//", "//login"])
    func aLargeAnonymousBodyGets413WhateverEmptySegmentsThePathHas(path: String) async throws {
        let app = try await DashboardRouteTests.app()
        try await app.test(.router) { client in
            let body = ByteBuffer(repeating: UInt8(ascii: " "), count: BodyLimit.anonymousBytes + 1)
            let status = try await client.execute(uri: path, method: .post, headers: [.contentType: "application/json"], body: body) { $0.status }
            #expect(status == .contentTooLarge, "\(path)")
        }
    }

    @Test func aLargeDashboardLoginFormGets413() async throws {
        let app = try await DashboardRouteTests.app()
        try await app.test(.router) { client in
            let browser = Browser(client)
            try await browser.get("/login")
            let page = try await browser.post("/login", ["username": "x", "password": String(repeating: "p", count: 70_000)])
            #expect(page.status == .contentTooLarge)
        }
    }

    @Test func aDashboardUploadOverTheBundleLimitGetsAClearErrorAndNoJob() async throws {
        let db = try GridDatabase.inMemory()
        // A 64 KiB bulk limit: the bundle limit is 48 KiB, as the API enforces it.
        let app = try await DashboardRouteTests.app(db: db) { $0.maxBulkBytes = 64 << 10 }
        try await app.test(.router) { client in
            let browser = Browser(client)
            try await browser.register("bigupload")
            let page = try await browser.post(
                "/submit", ["script": "print(1)", "minutes": "1"], multipart: true,
                files: [(field: "inputs", name: "big.bin", content: String(repeating: "x", count: 70 << 10))])
            #expect(page.status == .badRequest)
            #expect(page.body.contains("the script and inputs are 71 KB; the limit is 48 KB per job"), "\(page.body.prefix(2000))")
            #expect(try await db.jobs(limit: 10).isEmpty, "no job, so no JOB_ASSIGN")
        }
    }

    /// The API measures a submission's bundle before it reads the script's PEP 723 block: a script of millions of
    /// lines was split into an array of them all first (gigabytes for a 72 MB body), and only then refused for its size.
    @Test func anAPISubmissionOverTheBundleLimitIsRefusedBeforeItsScriptIsRead() async throws {
        let db = try GridDatabase.inMemory()
        let app = try await DashboardRouteTests.app(db: db) { $0.maxBulkBytes = 64 << 10 }
        try await app.test(.router) { client in
            let token = try #require(try await AbuseLimitRouteTests.register(client, "bigscript").token)
            // An unclosed script block, then 70,000 empty lines: read first, it is refused for the block.
            let script = "# /// script\n" + String(repeating: "\n", count: 70_000)
            let body = #"{"spec":{"name":"big","cpus":1,"ram_gb":1,"gpus":0,"minutes":1,"priority":0,"outputs":[],"min_tier":"bwrap"},"script":{"name":"main.py","content_base64":"\#(Data(script.utf8).base64EncodedString())"},"inputs":[]}"#
            try await client.execute(
                uri: "/api/v1/jobs", method: .post, headers: [.contentType: "application/json", .authorization: "Bearer \(token)"],
                body: ByteBuffer(string: body)
            ) { r in
                #expect(r.status == .badRequest)
                #expect(String(buffer: r.body).contains("the limit is 48 KB per job"), "\(String(buffer: r.body).prefix(500))")
            }
            #expect(try await db.jobs(limit: 10).isEmpty)
        }
    }

    @Test(arguments: [
        ("/jobs/3", true), ("/", true), ("/jobs?mine=1", true),
        ("//evil.example", false), ("/\\evil.example", false), ("\\\\evil.example", false), ("/\t/evil.example", false),
        ("/\n/evil.example", false), ("https://evil.example", false), ("evil", false), ("/ /evil", false), ("", false),
        // "/" + a combining mark is one Swift character: a check on characters saw no "//".
        ("//\u{FE0F}evil.example", false), ("//\u{34F}evil.example", false), ("/\u{301}/evil.example", false), ("/caf\u{E9}", false),
    ])
    func nextAcceptsOnlySameSitePaths(path: String, ok: Bool) {
        #expect(Dashboard.isSameSitePath(path) == ok)
    }

    @Test func nextIsDecodedBeforeItIsChecked() {
        #expect(Dashboard.safeNext("/%09/evil.example") == "/")
        #expect(Dashboard.safeNext("%2F%2Fevil.example") == "/")
        #expect(Dashboard.safeNext("/%5Cevil.example") == "/")
        #expect(Dashboard.safeNext("/jobs/4") == "/jobs/4")
    }
}
