import Foundation
import GridCore
import GridStore
import GridTestSupport
import Testing

/// A PostgreSQL store outlives its server's restarts (issue 16): connections the server closed are replaced, and a
/// write while it is down fails cleanly, naming no password. PostgreSQL only: SQLite has no server.
@Suite("PostgreSQL server restarts")
struct PostgresRestartTests {
    @Test func theStoreWorksAgainAfterItsServerRestartsAndFailsCleanlyWhileItIsDown() async throws {
        // A cluster of its own: stopping the tests' shared one would fail every other test.
        let dir = NSTemporaryDirectory() + "campusgrid-pg-restart-\(UUID().uuidString)"
        defer {
            _ = try? TestPostgres.run(["stop", dir])
            try? FileManager.default.removeItem(atPath: dir)
            try? FileManager.default.removeItem(atPath: dir + ".lock")
        }
        // The first start, with a descriptor of the caller's open: the server keeps none of them. (Foundation's
        // Process hears of its child's exit through a socket it hands the child; a server that kept it hid the script's
        // exit for the server's whole life, and `bench` and `up --postgres` waited for ever on a fresh cluster.)
        let marker = dir + "-caller-descriptor"
        defer { try? FileManager.default.removeItem(atPath: marker) }
        let url = try await onThread { try TestPostgres.run(["start", dir, "grid"], holding: marker) }.trimmingCharacters(in: .whitespacesAndNewlines)
        let server = try #require(
            (try? String(contentsOfFile: dir + "/data/postmaster.pid", encoding: .utf8))?.split(separator: "\n").first.flatMap { Int32($0) })
        let held = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(server)/fd")) ?? []).compactMap {
            try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(server)/fd/\($0)")
        }
        #expect(!held.isEmpty, "cannot read the server's descriptors")
        #expect(!held.contains(marker), "the server kept its caller's descriptor: \(held)")
        let password = try #require(URLComponents(string: url)?.password)
        let db = try await GridDatabase.open(url: url)
        let ada = try await db.createUser(username: "ada", passwordHash: "h", startingCredits: 100, now: 0)

        try await onThread { try TestPostgres.run(["stop", dir]) }
        do {
            _ = try await db.createUser(username: "bob", passwordHash: "h", startingCredits: 100, now: 1)
            Issue.record("a write succeeded with the server down")
        } catch {
            #expect("\(error)".contains("PostgreSQL"), "\(error)")
            #expect(!"\(error)".contains(password))
        }
        await #expect(throws: (any Error).self) { try await db.user(id: ada.id) }

        // Restarted, the cluster keeps its port, so the same URL reaches it.
        let again = try await onThread { try TestPostgres.run(["start", dir, "grid"]) }.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(again == url)
        #expect(try await db.user(id: ada.id)?.username == "ada")
        let bob = try await db.createUser(username: "bob", passwordHash: "h", startingCredits: 100, now: 2)
        #expect(try await db.balance(of: .user(bob.id)) == 100)
        let check = try await db.checkLedger()
        #expect(check.ok && check.minted == 200, "\(check)")
    }
}
