import Foundation
import GridCore
@testable import GridStore
import Testing

// `Placement.Assignment` has no public initializer: plans normally come from `Placement.plan`.
@testable import GridScheduler

/// Two managers' handles on one store decide at the same time (issue 16): a decision that reads then writes must see
/// the other's, never interleave with it. SQLite: two connections pools on one file; PostgreSQL: two backends on one
/// database.
@Suite("Concurrent decisions on one store")
struct ConcurrentDecisionsTests {
    static let spec = JobSpec(name: "fit", cpus: 2, ramGb: 4, gpus: 0, minutes: 10)  // hold 23
    static let script = StoredFile(name: "main.py", data: Data("print(1)".utf8))

    private func twoHandles(_ backend: StoreBackend) async throws -> (GridDatabase, GridDatabase, StoreBackend.Place) {
        let place = try await backend.persistentPlace()
        return (try await GridDatabase.open(url: place.url), try await GridDatabase.open(url: place.url), place)
    }

    private func worker(_ db: GridDatabase, _ id: WorkerID, owner: UserID, slots: Int) async throws {
        try await db.registerWorker(
            GridDatabase.WorkerRegistration(
                id: id, name: "pc-\(id)", ownerId: owner, resources: Resources(cpus: 64, ramGb: 256), gpuNames: [], tier: .bwrap, slots: slots,
                host: nil, port: nil, webPort: nil),
            now: 0)
    }

    @Test(arguments: StoreBackend.allCases) func aJobPlannedByTwoManagersAtOnceStartsOnce(_ backend: StoreBackend) async throws {
        let (a, b, place) = try await twoHandles(backend)
        defer { place.remove() }
        let ada = try await a.createUser(username: "ada", passwordHash: "h", startingCredits: 1000, now: 0)
        let bob = try await a.createUser(username: "bob", passwordHash: "h", startingCredits: 0, now: 0)
        try await worker(a, "w1", owner: bob.id, slots: 64)
        for round in 0..<10 {
            let job = try await a.submitJob(owner: ada.id, spec: Self.spec, script: Self.script, inputs: [], now: Double(round))
            let plan = [Placement.Assignment(job: job.id, worker: "w1")]
            async let viaA = a.apply(plan, now: 100)
            async let viaB = b.apply(plan, now: 100)
            let started = try await viaA.count + viaB.count
            #expect(started == 1, "round \(round)")
            #expect(try await a.job(id: job.id)?.attempt == 1)
        }
        #expect(try await b.checkLedger().ok)
    }

    @Test(arguments: StoreBackend.allCases) func twoManagersFillingTheLastSlotStartOneJob(_ backend: StoreBackend) async throws {
        let (a, b, place) = try await twoHandles(backend)
        defer { place.remove() }
        let ada = try await a.createUser(username: "ada", passwordHash: "h", startingCredits: 1000, now: 0)
        let bob = try await a.createUser(username: "bob", passwordHash: "h", startingCredits: 0, now: 0)
        for round in 0..<5 {
            let w = "w\(round)"
            try await worker(a, w, owner: bob.id, slots: 1)
            let j1 = try await a.submitJob(owner: ada.id, spec: Self.spec, script: Self.script, inputs: [], now: 1)
            let j2 = try await b.submitJob(owner: ada.id, spec: Self.spec, script: Self.script, inputs: [], now: 1)
            async let viaA = a.apply([Placement.Assignment(job: j1.id, worker: w)], now: 2)
            async let viaB = b.apply([Placement.Assignment(job: j2.id, worker: w)], now: 2)
            let started = try await viaA.count + viaB.count
            #expect(started == 1, "round \(round): a one-slot worker got \(started) jobs")
        }
    }

    @Test(arguments: StoreBackend.allCases) func concurrentSubmissionsNeverSpendMoreThanTheBalance(_ backend: StoreBackend) async throws {
        let (a, b, place) = try await twoHandles(backend)
        defer { place.remove() }
        // 100 credits, 23 a job: four fit.
        let ada = try await a.createUser(username: "ada", passwordHash: "h", startingCredits: 100, now: 0)
        let outcomes = try await withThrowingTaskGroup(of: Bool.self) { group in
            for i in 0..<8 {
                let db = i.isMultiple(of: 2) ? a : b
                group.addTask {
                    do {
                        _ = try await db.submitJob(owner: ada.id, spec: Self.spec, script: Self.script, inputs: [], now: Double(i))
                        return true
                    } catch let error as GridError where error.code == .insufficientCredits {
                        return false
                    }
                }
            }
            return try await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        #expect(outcomes.filter { $0 }.count == 4)
        #expect(try await a.balance(of: .user(ada.id)) == 100 - 4 * 23)
        let check = try await b.checkLedger()
        #expect(check.ok, "\(check)")
    }
}
