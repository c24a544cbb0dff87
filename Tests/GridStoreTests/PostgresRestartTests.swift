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
        let url = try await onThread { try TestPostgres.run(["start", dir, "grid"]) }.trimmingCharacters(in: .whitespacesAndNewlines)
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
