import Foundation
import GridCore
import GridStore
import Testing

/// Idempotent submission in the store (issue 16's lost-answer retry), on both backends: the same keyed submission
/// makes one job and one hold however often and however concurrently it is sent; a key is its owner's alone; a used
/// key with another submission is refused and charges nothing.
@Suite struct SubmitKeyStoreTests {
    static let spec = JobSpec(name: "fit", cpus: 2, ramGb: 4, gpus: 0, minutes: 10)
    static let script = StoredFile(name: "main.py", data: Data("print(1)".utf8))

    struct Users {
        let db: GridDatabase
        let ada: UserRecord
        let bob: UserRecord
        init(_ backend: StoreBackend) async throws {
            db = try await backend.open()
            ada = try await db.createUser(username: "ada", passwordHash: "h", startingCredits: 100, now: 0)
            bob = try await db.createUser(username: "bob", passwordHash: "h", startingCredits: 100, now: 0)
        }
        func submit(
            _ user: UserRecord, key: String?, spec: JobSpec = SubmitKeyStoreTests.spec, script: StoredFile = SubmitKeyStoreTests.script,
            inputs: [StoredFile] = []
        ) async throws -> GridDatabase.Submission {
            try await db.submitJob(owner: user.id, spec: spec, script: script, inputs: inputs, now: 1, key: key)
        }
        func balance(_ user: UserRecord) async throws -> Int { try await db.balance(of: .user(user.id)) }
    }

    @Test(arguments: StoreBackend.allCases) func theSameKeyedSubmissionTwiceMakesOneJobAndOneHold(_ backend: StoreBackend) async throws {
        let g = try await Users(backend)
        let first = try await g.submit(g.ada, key: "k-1")
        #expect(!first.replayed)
        let hold = first.job.hold
        let again = try await g.submit(g.ada, key: "k-1")
        #expect(again.replayed)
        #expect(again.job.id == first.job.id)
        #expect(try await g.balance(g.ada) == 100 - hold, "held once")
        #expect(try await g.db.jobs(owner: g.ada.id).count == 1)
        #expect(try await g.db.checkLedger().ok)
    }

    @Test(arguments: StoreBackend.allCases) func withoutAKeyEverySubmissionIsANewJob(_ backend: StoreBackend) async throws {
        let g = try await Users(backend)
        let a = try await g.submit(g.ada, key: nil)
        let b = try await g.submit(g.ada, key: nil)
        #expect(a.job.id != b.job.id && !a.replayed && !b.replayed)
        #expect(try await g.balance(g.ada) == 100 - a.job.hold - b.job.hold)
    }

    @Test(arguments: StoreBackend.allCases) func anotherUsersIdenticalKeyIsAnotherSubmission(_ backend: StoreBackend) async throws {
        let g = try await Users(backend)
        let ada = try await g.submit(g.ada, key: "shared")
        let bob = try await g.submit(g.bob, key: "shared")
        #expect(!bob.replayed, "bob never gets ada's job back")
        #expect(bob.job.id != ada.job.id && bob.job.ownerId == g.bob.id)
        #expect(try await g.balance(g.bob) == 100 - bob.job.hold, "bob pays for his own job")
        #expect(try await g.balance(g.ada) == 100 - ada.job.hold)
    }

    @Test(arguments: StoreBackend.allCases) func aUsedKeyWithAnotherScriptInputOrSpecIsRefusedAndChargesNothing(_ backend: StoreBackend) async throws {
        let g = try await Users(backend)
        let first = try await g.submit(g.ada, key: "k")
        let after = try await g.balance(g.ada)
        var bigger = Self.spec
        bigger.minutes = 11
        let forged: [(JobSpec, StoredFile, [StoredFile])] = [
            (bigger, Self.script, []),
            (Self.spec, StoredFile(name: "main.py", data: Data("print(2)".utf8)), []),
            (Self.spec, StoredFile(name: "other.py", data: Self.script.data), []),
            (Self.spec, Self.script, [StoredFile(name: "data.csv", data: Data("1".utf8))]),
        ]
        for (spec, script, inputs) in forged {
            await #expect {
                _ = try await g.submit(g.ada, key: "k", spec: spec, script: script, inputs: inputs)
            } throws: { error in
                guard let e = error as? GridError else { return false }
                return e.code == .conflict && e.message.contains("job \(first.job.id)")
            }
        }
        #expect(try await g.balance(g.ada) == after)
        #expect(try await g.db.jobs(owner: g.ada.id).count == 1)
    }

    @Test(arguments: StoreBackend.allCases) func aMalformedKeyIsRefusedBeforeAnythingIsHeld(_ backend: StoreBackend) async throws {
        let g = try await Users(backend)
        for key in ["", String(repeating: "x", count: 129), "a b", "ключ"] {
            await #expect(throws: GridError.self) { _ = try await g.submit(g.ada, key: key) }
        }
        #expect(try await g.balance(g.ada) == 100)
        #expect(try await g.db.jobs(owner: g.ada.id).isEmpty)
    }

    @Test(arguments: StoreBackend.allCases) func aFloodOfOneKeyedSubmissionAtOnceMakesOneJob(_ backend: StoreBackend) async throws {
        let g = try await Users(backend)
        let outcomes = try await withThrowingTaskGroup(of: GridDatabase.Submission.self) { group in
            for _ in 0..<24 { group.addTask { try await g.submit(g.ada, key: "burst") } }
            var all: [GridDatabase.Submission] = []
            for try await s in group { all.append(s) }
            return all
        }
        #expect(Set(outcomes.map(\.job.id)).count == 1)
        #expect(outcomes.filter { !$0.replayed }.count == 1, "exactly one attempt made the job")
        #expect(try await g.balance(g.ada) == 100 - outcomes[0].job.hold)
        #expect(try await g.db.checkLedger().ok)
    }

    @Test(arguments: StoreBackend.allCases) func aKeyIsRememberedAcrossAReopenedStore(_ backend: StoreBackend) async throws {
        let place = try await backend.persistentPlace()
        defer { place.remove() }
        var db = try await GridDatabase.open(url: place.url)
        let ada = try await db.createUser(username: "ada", passwordHash: "h", startingCredits: 100, now: 0)
        let first = try await db.submitJob(owner: ada.id, spec: Self.spec, script: Self.script, inputs: [], now: 1, key: "k")
        db = try await GridDatabase.open(url: place.url)
        let again = try await db.submitJob(owner: ada.id, spec: Self.spec, script: Self.script, inputs: [], now: 2, key: "k")
        #expect(again.replayed && again.job.id == first.job.id)
        #expect(try await db.balance(of: .user(ada.id)) == 100 - first.job.hold)
    }
}
