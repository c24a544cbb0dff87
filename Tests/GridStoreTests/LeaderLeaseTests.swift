import Foundation
import GridCore
import GridStore
import Testing

/// The store's leadership contract (issue 16), on a real SQLite file two handles share: the compare-and-set on the
/// lease row, and the fence a deposed leader's writes meet. Written against the contract only, so it holds for the
/// SQLite stand-in and for the store branch's implementation alike.
@Suite("Leader lease and fencing")
struct LeaderLeaseTests {
    private func lease(_ holder: String, _ epoch: Int64, expires: Double = 100) -> LeaderLease {
        LeaderLease(holder: holder, epoch: epoch, expiresAt: expires, workerAddress: "127.0.0.1:1", apiURL: "http://127.0.0.1:2")
    }

    private func file() throws -> String {
        let dir = NSTemporaryDirectory() + "campusgrid-lease-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir + "/grid.sqlite"
    }

    /// A write refused by the fence: the contract's `GridStoreError.deposed`, or (SQLite stand-in) the abort that says so.
    private func isDeposed(_ error: any Error) -> Bool { error is GridStoreError || "\(error)".contains("deposed") }

    @Test func theRowIsACompareAndSet() async throws {
        let path = try file()
        let a = try GridDatabase.open(path: path)
        let b = try GridDatabase.open(path: path)
        #expect(try await a.leaderLease() == nil)
        #expect(try await a.swapLeaderLease(expecting: 3, to: lease("a", 1)) == false, "no row: only `expecting nil` writes")
        #expect(try await a.swapLeaderLease(expecting: nil, to: lease("a", 1)))
        #expect(try await b.swapLeaderLease(expecting: nil, to: lease("b", 1)) == false, "the row exists now")
        #expect(try await b.leaderLease() == lease("a", 1))
        #expect(try await b.swapLeaderLease(expecting: 1, to: lease("b", 2)))
        #expect(try await a.swapLeaderLease(expecting: 1, to: lease("a", 1, expires: 200)) == false, "a's renewal meets b's epoch")
        #expect(try await a.leaderLease()?.holder == "b")
    }

    @Test func boundaryValuesSurviveTheRow() async throws {
        let db = try GridDatabase.open(path: try file())
        #expect(try await db.swapLeaderLease(expecting: nil, to: lease("a", .max, expires: .infinity)))
        #expect(try await db.leaderLease()?.epoch == .max)
        #expect(try await db.leaderLease()?.expiresAt == .infinity)
        #expect(try await db.swapLeaderLease(expecting: .max, to: lease("a", .min, expires: -.infinity)))
        #expect(try await db.leaderLease()?.epoch == .min)
    }

    @Test func aDeposedLeadersWriteCommitsNothing() async throws {
        let path = try file()
        let db = try GridDatabase.open(path: path)
        #expect(try await db.swapLeaderLease(expecting: nil, to: lease("old", 1)))
        let old = db.fenced(epoch: 1)
        _ = try await old.createUser(username: "before", passwordHash: "h", startingCredits: 100, now: 1)
        // Another manager takes the row over.
        let other = try GridDatabase.open(path: path)
        #expect(try await other.swapLeaderLease(expecting: 1, to: lease("new", 2)))
        do {
            _ = try await old.createUser(username: "late", passwordHash: "h", startingCredits: 100, now: 2)
            Issue.record("a deposed leader's write went through")
        } catch {
            #expect(isDeposed(error), "\(error)")
        }
        #expect(try await other.user(named: "late") == nil)
        #expect(try await other.user(named: "before") != nil)
        // The new leader's own fenced handle writes.
        _ = try await other.fenced(epoch: 2).createUser(username: "new", passwordHash: "h", startingCredits: 100, now: 3)
        #expect(try await db.user(named: "new") != nil)
        // Reads of the old handle are not fenced.
        #expect(try await old.user(named: "new") != nil)
    }
}
