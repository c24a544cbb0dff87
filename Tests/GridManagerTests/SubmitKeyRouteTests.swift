import Foundation
import GridCore
import GridProtocol
import GridStore
import Hummingbird
import HummingbirdTesting
import NIOFoundationCompat
import Testing

@testable import GridManager

/// `Idempotency-Key` on `POST /api/v1/jobs`, through the real router: a retry gets the first job back (200, replayed,
/// nothing more held), a different submission under a used key is refused (409), a malformed key is refused (400)
/// before anything is held, and a resent dashboard form makes no second job.
@Suite struct SubmitKeyRouteTests {
    static func body(_ script: String = "print(1)\n", minutes: Int = 1) throws -> ByteBuffer {
        ByteBuffer(
            bytes: try GridJSON.encode(
                API.SubmitRequest(
                    spec: JobSpec(name: "j", minutes: minutes),
                    script: API.FileUpload(name: "main.py", contentBase64: Data(script.utf8).base64EncodedString()), inputs: [])))
    }

    static func user(_ db: GridDatabase, _ name: String) async throws -> (UserRecord, String) {
        let now = Date().timeIntervalSince1970
        let user = try await db.createUser(username: name, passwordHash: "x", startingCredits: 100, now: now)
        let token = "cga_\(UUID().uuidString)"
        try await db.addToken(hash: Tokens.hash(token), userId: user.id, kind: .api, now: now)
        return (user, token)
    }

    /// A job's input files are named in one line to its worker, which reads to 1 MiB: more than 256 are refused at
    /// submission, with the reason, before anything is held (1,100 empty ones with long names cut every worker off).
    @Test func aJobWithMoreInputFilesThanALineCarriesIsRefused() async throws {
        let db = try GridDatabase.inMemory()
        let (ann, token) = try await Self.user(db, "ann")
        @Sendable func body(_ count: Int) throws -> ByteBuffer {
            let long = (0..<3).map { _ in String(repeating: "d", count: 250) }.joined(separator: "/")
            return ByteBuffer(
                bytes: try GridJSON.encode(
                    API.SubmitRequest(
                        spec: JobSpec(name: "many", minutes: 1), script: API.FileUpload(name: "main.py", contentBase64: Data("print(1)".utf8).base64EncodedString()),
                        inputs: (0..<count).map { API.FileUpload(name: "\(long)/\($0)", contentBase64: "") })))
        }
        try await DashboardRouteTests.app(db: db).test(.router) { client in
            let headers: HTTPFields = [.authorization: "Bearer \(token)", .contentType: "application/json"]
            let refused = try await client.execute(uri: "/api/v1/jobs", method: .post, headers: headers, body: try body(1_100)) { r in (r.status, String(buffer: r.body)) }
            #expect(refused.0 == .badRequest && refused.1.contains("at most 256 input files"), "\(refused)")
            #expect(try await db.balance(of: .user(ann.id)) == 100, "nothing held")
            let fits = try await client.execute(uri: "/api/v1/jobs", method: .post, headers: headers, body: try body(256)) { r in r.status }
            #expect(fits == .created)
        }
    }

    /// Another user's job shows in the queue under the name its owner gave it, never the script's file name that stands
    /// in when none was given, and without what its run did (CPU time, log size).
    @Test func othersSeeNoScriptNameAndNoFiguresOfARun() async throws {
        let db = try GridDatabase.inMemory()
        let (_, token) = try await Self.user(db, "ann")
        let (_, bobToken) = try await Self.user(db, "bob")
        func body(name: String) throws -> ByteBuffer {
            ByteBuffer(
                bytes: try GridJSON.encode(
                    API.SubmitRequest(
                        spec: JobSpec(name: name, minutes: 1),
                        script: API.FileUpload(name: "ann-thesis-draft.py", contentBase64: Data("print(1)".utf8).base64EncodedString()), inputs: [])))
        }
        let (unnamed, named) = (try body(name: ""), try body(name: "sweep 3"))
        try await DashboardRouteTests.app(db: db).test(.router) { client in
            let ann: HTTPFields = [.authorization: "Bearer \(token)", .contentType: "application/json"]
            for b in [unnamed, named] { #expect(try await client.execute(uri: "/api/v1/jobs", method: .post, headers: ann, body: b) { $0.status } == .created) }
            let mine = try await client.execute(uri: "/api/v1/jobs", method: .get, headers: ann) { try GridJSON.decode(API.JobList.self, from: Data(buffer: $0.body)) }
            #expect(Set(mine.jobs.map(\.name)) == ["ann-thesis-draft.py", "sweep 3"], "the owner sees the names as they are")
            let theirs = try await client.execute(uri: "/api/v1/jobs", method: .get, headers: [.authorization: "Bearer \(bobToken)"]) { r in
                (String(buffer: r.body), try GridJSON.decode(API.JobList.self, from: Data(buffer: r.body)))
            }
            #expect(!theirs.0.contains("thesis"), "\(theirs.0)")
            let unnamedJob = try #require(mine.jobs.first { $0.name == "ann-thesis-draft.py" })
            #expect(Set(theirs.1.jobs.map(\.name)) == ["job \(unnamedJob.id)", "sweep 3"])
            #expect(theirs.1.jobs.allSatisfy { $0.script.isEmpty && $0.spec.name == $0.name && $0.progress.cpuSeconds == nil })
        }
    }

    /// A submitter cannot pick the seed its runs (and its check runs) get: the manager sets it, whatever was sent.
    @Test func aSeedTheSubmitterSendsIsNotKept() async throws {
        let db = try GridDatabase.inMemory()
        let (_, token) = try await Self.user(db, "ann")
        var spec = JobSpec(name: "seeded", minutes: 1)
        spec.seed = 7
        let body = ByteBuffer(
            bytes: try GridJSON.encode(
                API.SubmitRequest(spec: spec, script: API.FileUpload(name: "main.py", contentBase64: Data("print(1)".utf8).base64EncodedString()), inputs: [])))
        try await DashboardRouteTests.app(db: db).test(.router) { client in
            let headers: HTTPFields = [.authorization: "Bearer \(token)", .contentType: "application/json"]
            let answer = try await client.execute(uri: "/api/v1/jobs", method: .post, headers: headers, body: body) { r in
                try GridJSON.decode(API.SubmitResponse.self, from: Data(buffer: r.body))
            }
            let stored = try #require(try await db.job(id: answer.job.id))
            #expect(stored.spec.seed == nil && answer.job.spec.seed == nil, "the submitter's seed was kept: \(String(describing: stored.spec.seed))")
        }
    }

    @Test func aRetriedSubmissionGetsTheFirstJobBackAndIsHeldOnce() async throws {
        let db = try GridDatabase.inMemory()
        let (ann, token) = try await Self.user(db, "ann")
        let (bob, bobToken) = try await Self.user(db, "bob")
        try await DashboardRouteTests.app(db: db).test(.router) { client in
            func post(_ token: String, key: String?, body: ByteBuffer) async throws -> (HTTPResponse.Status, API.SubmitResponse?, String) {
                var headers: HTTPFields = [.authorization: "Bearer \(token)", .contentType: "application/json"]
                if let key { headers[SubmitKeyRouteTests.keyField] = key }
                return try await client.execute(uri: "/api/v1/jobs", method: .post, headers: headers, body: body) { r in
                    (r.status, try? GridJSON.decode(API.SubmitResponse.self, from: Data(buffer: r.body)), String(buffer: r.body))
                }
            }
            let (s1, first, _) = try await post(token, key: "retry-1", body: try Self.body())
            #expect(s1 == .created)
            let job = try #require(first).job
            #expect(first?.replayed == nil)
            let (s2, again, _) = try await post(token, key: "retry-1", body: try Self.body())
            #expect(s2 == .ok)
            #expect(again?.replayed == true && again?.job.id == job.id)
            #expect(again?.balance == first?.balance, "nothing more held")
            // Another user's identical key is their own submission.
            let (s3, bobs, _) = try await post(bobToken, key: "retry-1", body: try Self.body())
            #expect(s3 == .created && bobs?.job.id != job.id && bobs?.job.owner == "bob")
            // A different script under ann's used key: refused, nothing held.
            let (s4, _, text4) = try await post(token, key: "retry-1", body: try Self.body("print(2)\n"))
            #expect(s4 == .conflict, "\(text4)")
            #expect(text4.contains("job \(job.id)"))
            // Malformed keys: refused with the reason before anything is held.
            for bad in ["", String(repeating: "k", count: 129), "a b", "x/y"] {
                let (s, _, text) = try await post(token, key: bad, body: try Self.body())
                #expect(s == .badRequest, "key \(bad.debugDescription): \(s) \(text)")
                #expect(text.contains("Idempotency-Key"))
            }
        }
        #expect(try await db.jobs(owner: ann.id).count == 1)
        #expect(try await db.jobs(owner: bob.id).count == 1)
        let hold = try #require(try await db.jobs(owner: ann.id).first).hold
        #expect(try await db.balance(of: .user(ann.id)) == 100 - hold)
        #expect(try await db.checkLedger().ok)
    }

    static let keyField = HTTPFields.Element.Name("Idempotency-Key")!

    @Test func aResentSubmitFormMakesNoSecondJob() async throws {
        let db = try GridDatabase.inMemory()
        try await DashboardRouteTests.app(db: db).test(.router) { client in
            let browser = Browser(client)
            try await browser.register("uma")
            let form = try await browser.get("/submit")
            let key = try #require(
                form.body.firstMatch(of: /name="submit_key" value="([A-Za-z0-9._:-]+)"/).map { String($0.output.1) },
                "the form carries its submission key")
            let fields = ["script": "print(1)", "minutes": "1", "submit_key": key]
            let first = try #require(try await browser.post("/submit", fields, multipart: true).location)
            // The same form sent again (a double click, a browser resend): the same job.
            let second = try #require(try await browser.post("/submit", fields, multipart: true).location)
            #expect(first == second)
            // The form shown again has a new key: the next submission is a new job.
            let next = try await browser.get("/submit")
            #expect(!next.body.contains("value=\"\(key)\""))
            // A forged key is refused on the page, not stored.
            let forged = try await browser.post("/submit", ["script": "print(1)", "minutes": "1", "submit_key": "<b>x</b>"], multipart: true)
            #expect(forged.status == .badRequest)
            #expect(!forged.body.contains("<b>x</b>"))
        }
        let uma = try #require(try await db.user(named: "uma"))
        #expect(try await db.jobs(owner: uma.id).count == 1)
    }
}

/// The queue is public, its owners' files are not: in `GET /api/v1/jobs` another user's job shows its name and what it
/// asks of a worker, not the names of its owner's files, its packages or its seed; the owner sees all of it.
@Suite struct JobListPrivacyRouteTests {
    @Test func anotherUsersJobInTheListShowsNoFileNamesPackagesOrSeed() async throws {
        let db = try GridDatabase.inMemory()
        let (ann, annToken) = try await SubmitKeyRouteTests.user(db, "ann")
        let (_, bobToken) = try await SubmitKeyRouteTests.user(db, "bob")
        var spec = JobSpec(name: "thesis-run", cpus: 2, ramGb: 1, minutes: 3, outputs: ["secret-results.csv"])
        spec.gridInputs = ["ann-private-dataset.npz"]
        spec.saveOutputsAs = "ann-private-prefix"
        spec.requirements = ["numpy==2.0.0"]
        spec.seed = 1234
        _ = try await db.submitJob(
            owner: ann.id, spec: spec, script: StoredFile(name: "ann-private-script.py", data: Data("print(1)".utf8)), inputs: [],
            now: Date().timeIntervalSince1970)
        try await DashboardRouteTests.app(db: db).test(.router) { client in
            func list(_ token: String) async throws -> (API.JobStatus?, String) {
                try await client.execute(uri: "/api/v1/jobs", method: .get, headers: [.authorization: "Bearer \(token)"]) { r in
                    (try? GridJSON.decode(API.JobList.self, from: Data(buffer: r.body)))?.jobs.first { $0.name == "thesis-run" }.map { ($0, String(buffer: r.body)) }
                        ?? (nil, String(buffer: r.body))
                }
            }
            let (seen, text) = try await list(bobToken)
            let job = try #require(seen, "bob does not see ann's job in the queue: \(text.prefix(500))")
            #expect(job.spec.cpus == 2 && job.spec.minutes == 3 && job.owner == "ann")
            for secret in ["secret-results.csv", "ann-private-dataset", "ann-private-prefix", "numpy", "1234", "ann-private-script"] {
                #expect(!text.contains(secret), "bob sees \(secret)")
            }
            let (own, _) = try await list(annToken)
            #expect(own?.spec.gridInputs == ["ann-private-dataset.npz"] && own?.spec.saveOutputsAs == "ann-private-prefix")
            #expect(own?.spec.outputs == ["secret-results.csv"] && own?.spec.seed == 1234)
        }
    }
}
