import Foundation
@testable import GridStore
import GridCore
import Testing

@Suite("GridDatabase accounts")
struct GridDatabaseAccountsTests {
    @Test(arguments: StoreBackend.allCases) func createUserMintsTheStartingCreditsThroughTheLedger(_ backend: StoreBackend) async throws {
        let db = try await backend.open()
        let ada = try await db.createUser(username: "ada", passwordHash: "h", startingCredits: 100, now: 10)
        #expect(ada.username == "ada")
        #expect(ada.createdAt == 10)
        #expect(try await db.balance(of: .user(ada.id)) == 100)
        #expect(try await db.balance(of: .mint) == -100)
        let rows = try await db.ledger(of: ada.id)
        #expect(rows.count == 1)
        #expect(rows.first?.debit == "mint")
        #expect(rows.first?.credit == "user:\(ada.id)")
        #expect(rows.first?.amount == 100)
        #expect(rows.first?.reason == "signup")
        let check = try await db.checkLedger()
        #expect(check.minted == 100)
        #expect(check.held == 100)
        #expect(check.negativeAccounts.isEmpty)
        #expect(check.ok)
    }

    @Test(arguments: StoreBackend.allCases) func mintedCreditsAddUpOverEveryUser(_ backend: StoreBackend) async throws {
        let db = try await backend.open()
        _ = try await db.createUser(username: "ada", passwordHash: "h", startingCredits: 100, now: 0)
        _ = try await db.createUser(username: "bob", passwordHash: "h", startingCredits: 250, now: 0)
        let check = try await db.checkLedger()
        #expect(check.minted == 350)
        #expect(check.held == 350)
        #expect(check.ok)
    }

    @Test(arguments: StoreBackend.allCases) func zeroStartingCreditsWritesNoLedgerRow(_ backend: StoreBackend) async throws {
        let db = try await backend.open()
        let ada = try await db.createUser(username: "ada", passwordHash: "h", startingCredits: 0, now: 0)
        #expect(try await db.balance(of: .user(ada.id)) == 0)
        #expect(try await db.ledger(of: ada.id).isEmpty)
        #expect(try await db.checkLedger().ok)
    }

    @Test(arguments: StoreBackend.allCases) func aDuplicateUsernameIsAConflict(_ backend: StoreBackend) async throws {
        let db = try await backend.open()
        _ = try await db.createUser(username: "ada", passwordHash: "h", startingCredits: 100, now: 0)
        let error = await #expect(throws: GridError.self) {
            try await db.createUser(username: "ada", passwordHash: "other", startingCredits: 100, now: 1)
        }
        #expect(error?.code == .conflict)
        #expect(error?.message.contains("ada") == true)
        let check = try await db.checkLedger()
        #expect(check.minted == 100)
        #expect(check.ok)
    }

    @Test(arguments: StoreBackend.allCases) func usernamesDifferingOnlyInCaseAreAConflict(_ backend: StoreBackend) async throws {
        let db = try await backend.open()
        _ = try await db.createUser(username: "ada", passwordHash: "h", startingCredits: 100, now: 0)
        let error = await #expect(throws: GridError.self) {
            try await db.createUser(username: "ADA", passwordHash: "h", startingCredits: 100, now: 1)
        }
        #expect(error?.code == .conflict)
        #expect(try await db.checkLedger().ok)
    }

    @Test(arguments: StoreBackend.allCases) func usersAreFoundByNameAndById(_ backend: StoreBackend) async throws {
        let db = try await backend.open()
        let ada = try await db.createUser(username: "ada", passwordHash: "h", startingCredits: 100, now: 0)
        #expect(try await db.user(named: "ada") == ada)
        #expect(try await db.user(id: ada.id) == ada)
        #expect(try await db.user(named: "nobody") == nil)
        #expect(try await db.user(id: ada.id + 100) == nil)
        #expect(try await db.checkLedger().ok)
    }

    @Test(arguments: StoreBackend.allCases) func aTokenIsFoundByItsHashUntilDeleted(_ backend: StoreBackend) async throws {
        let db = try await backend.open()
        let ada = try await db.createUser(username: "ada", passwordHash: "h", startingCredits: 100, now: 0)
        try await db.addToken(hash: "abc", userId: ada.id, kind: .worker, now: 0)
        let found = try #require(try await db.tokenOwner(hash: "abc"))
        #expect(found.user == ada)
        #expect(found.kind == .worker)
        #expect(try await db.tokenOwner(hash: "other") == nil)
        try await db.deleteToken(hash: "abc")
        #expect(try await db.tokenOwner(hash: "abc") == nil)
        #expect(try await db.checkLedger().ok)
    }
}

@Suite("Ledger check")
struct LedgerCheckTests {
    /// A user holds at most `keep` tokens of a kind: logins past that drop the oldest API token (the newest still
    /// work); a worker token past it is refused, and the ones held keep working.
    @Test(arguments: StoreBackend.allCases) func aUserHoldsAtMostKeepTokensOfAKind(_ backend: StoreBackend) async throws {
        let db = try await backend.open()
        let ada = try await db.createUser(username: "ada", passwordHash: "h", startingCredits: 0, now: 0)
        let bob = try await db.createUser(username: "bob", passwordHash: "h", startingCredits: 0, now: 0)
        try await db.addToken(hash: "bob-api", userId: bob.id, kind: .api, now: 0, keep: 3)
        for i in 0..<5 { try await db.addToken(hash: "api-\(i)", userId: ada.id, kind: .api, now: Double(i), keep: 3) }
        for i in 0..<2 { #expect(try await db.tokenOwner(hash: "api-\(i)") == nil, "api-\(i) was kept") }
        for i in 2..<5 { #expect(try await db.tokenOwner(hash: "api-\(i)")?.user.id == ada.id, "api-\(i) was dropped") }
        #expect(try await db.tokenOwner(hash: "bob-api")?.user.id == bob.id, "another user's token is not touched")

        for i in 0..<3 { try await db.addToken(hash: "w-\(i)", userId: ada.id, kind: .worker, now: Double(i), keep: 3) }
        await #expect(throws: GridError.self) { try await db.addToken(hash: "w-3", userId: ada.id, kind: .worker, now: 3, keep: 3) }
        for i in 0..<3 { #expect(try await db.tokenOwner(hash: "w-\(i)")?.kind == .worker) }
        #expect(try await db.tokenOwner(hash: "w-3") == nil)
    }

    @Test(arguments: StoreBackend.allCases) func creditsLeftOnTheHoldOfAnEndedJobAreReported(_ backend: StoreBackend) async throws {
        let db = try await backend.open()
        let ada = try await db.createUser(username: "ada", passwordHash: "h", startingCredits: 100, now: 0)
        let job = try await db.submitJob(
            owner: ada.id, spec: JobSpec(name: "j"), script: StoredFile(name: "main.py", data: Data("print(1)".utf8)), inputs: [], now: 1)
        #expect(try await db.checkLedger().ok)
        // End the job without settling its hold, as a bug would.
        try await db.write { db in
            try db.execute(sql: "UPDATE jobs SET state = 'completed' WHERE id = ?", arguments: [job.id])
        }
        let check = try await db.checkLedger()
        #expect(!check.ok)
        #expect(check.stuckHolds == ["hold:\(job.id)"])
    }
}
