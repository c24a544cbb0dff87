import Foundation
import GridCore
import GridStore
import Testing

// `Placement.Assignment` has no public initializer: plans normally come from `Placement.plan`.
@testable import GridScheduler

private func lease(_ holder: String, epoch: Int64, expiresAt: Double = 100) -> LeaderLease {
    LeaderLease(holder: holder, epoch: epoch, expiresAt: expiresAt, workerAddress: "127.0.0.1:7000", apiURL: "http://127.0.0.1:8080")
}

/// A store with Ada (submitter), Bob (owns the online worker w1), a running job and a pending one, led at epoch 1.
private struct LedGrid {
    let db: GridDatabase
    let ada: UserRecord
    let bob: UserRecord
    let running: JobRecord
    let pending: JobRecord

    static let spec = JobSpec(name: "fit", cpus: 1, ramGb: 1, gpus: 0, minutes: 10)

    init(_ backend: StoreBackend) async throws {
        db = try await backend.open()
        #expect(try await db.swapLeaderLease(expecting: nil, to: lease("m1", epoch: 1)))
        let led = db.fenced(epoch: 1)
        ada = try await led.createUser(username: "ada", passwordHash: "h", startingCredits: 100, now: 0)
        bob = try await led.createUser(username: "bob", passwordHash: "h", startingCredits: 100, now: 0)
        try await led.registerWorker(
            GridDatabase.WorkerRegistration(
                id: "w1", name: "pc-w1", ownerId: bob.id, resources: Resources(cpus: 8, ramGb: 16), gpuNames: [], tier: .bwrap, slots: 4,
                host: nil, port: nil, webPort: nil),
            now: 0)
        let script = StoredFile(name: "main.py", data: Data("print(1)".utf8))
        let first = try await led.submitJob(owner: ada.id, spec: Self.spec, script: script, inputs: [], now: 1)
        running = try #require(try await led.apply([Placement.Assignment(job: first.id, worker: "w1")], now: 2).first)
        pending = try await led.submitJob(owner: ada.id, spec: Self.spec, script: script, inputs: [], now: 3)
    }

    /// What a write could change: every job, the ledger's balances, the users, the workers.
    struct Snapshot: Equatable {
        var jobs: [JobRecord]
        var ledger: LedgerCheck
        var balances: [Int]
        var users: [UserRecord?]
        var workers: [WorkerRecord]
        var logBytes: Int64
    }

    func snapshot() async throws -> Snapshot {
        Snapshot(
            jobs: try await db.jobs(limit: 1000), ledger: try await db.checkLedger(),
            balances: [
                try await db.balance(of: .user(ada.id)), try await db.balance(of: .user(bob.id)), try await db.balance(of: .hold(running.id)),
            ],
            users: [try await db.user(named: "ada"), try await db.user(named: "bob"), try await db.user(named: "eve")],
            workers: try await db.workers(), logBytes: try await db.log(of: running.id, from: 0).total)
    }
}

private func expectDeposed(
    _ current: Int64?, _ what: String, sourceLocation: SourceLocation = #_sourceLocation, _ body: () async throws -> Void
) async {
    do {
        try await body()
        Issue.record("\(what) wrote through a deposed handle", sourceLocation: sourceLocation)
    } catch let error as GridStoreError {
        #expect(error == .deposed(current: current), "\(what)", sourceLocation: sourceLocation)
    } catch {
        Issue.record("\(what) threw \(error), not .deposed", sourceLocation: sourceLocation)
    }
}

@Suite("Leader lease and fencing")
struct LeaderLeaseTests {
    @Test(arguments: StoreBackend.allCases) func noManagerEverLedMeansNoLease(_ backend: StoreBackend) async throws {
        let db = try await backend.open()
        #expect(try await db.leaderLease() == nil)
    }

    @Test(arguments: StoreBackend.allCases) func theFirstLeaseIsWrittenOnlyByASwapExpectingNone(_ backend: StoreBackend) async throws {
        let db = try await backend.open()
        // Expecting an epoch when there is no row writes nothing.
        #expect(try await !db.swapLeaderLease(expecting: 0, to: lease("m0", epoch: 1)))
        #expect(try await db.leaderLease() == nil)
        #expect(try await db.swapLeaderLease(expecting: nil, to: lease("m1", epoch: 1)))
        #expect(try await db.leaderLease() == lease("m1", epoch: 1))
        // A second "first" lease is refused: the row exists.
        #expect(try await !db.swapLeaderLease(expecting: nil, to: lease("m2", epoch: 1)))
        #expect(try await db.leaderLease() == lease("m1", epoch: 1))
    }

    @Test(arguments: StoreBackend.allCases) func theSwapRefusesAWrongExpectedEpochAndKeepsTheRow(_ backend: StoreBackend) async throws {
        let db = try await backend.open()
        #expect(try await db.swapLeaderLease(expecting: nil, to: lease("m1", epoch: 5)))
        for wrong: Int64 in [4, 6, 0, -1, Int64.max, Int64.min] {
            #expect(try await !db.swapLeaderLease(expecting: wrong, to: lease("thief", epoch: 6)), "expecting \(wrong)")
        }
        #expect(try await db.leaderLease() == lease("m1", epoch: 5))
        // The holder renews (same epoch, later expiry); then a takeover moves the epoch on.
        #expect(try await db.swapLeaderLease(expecting: 5, to: lease("m1", epoch: 5, expiresAt: 200)))
        #expect(try await db.leaderLease()?.expiresAt == 200)
        #expect(try await db.swapLeaderLease(expecting: 5, to: lease("m2", epoch: 6)))
        #expect(try await db.leaderLease() == lease("m2", epoch: 6))
        #expect(try await !db.swapLeaderLease(expecting: 5, to: lease("m1", epoch: 6)))
    }

    @Test(arguments: StoreBackend.allCases) func theLeaseKeepsItsFieldsExactly(_ backend: StoreBackend) async throws {
        let db = try await backend.open()
        let odd = LeaderLease(
            holder: "héllo 'quoted' ? $1", epoch: Int64.max, expiresAt: 1_764_000_000.123456, workerAddress: "[::1]:65535",
            apiURL: "https://127.0.0.1:8443/?x=1")
        #expect(try await db.swapLeaderLease(expecting: nil, to: odd))
        #expect(try await db.leaderLease() == odd)
    }

    @Test(arguments: StoreBackend.allCases) func concurrentSwapsExpectingTheSameEpochHaveExactlyOneWinner(_ backend: StoreBackend) async throws {
        let db = try await backend.open()
        // The first lease, raced.
        let firsts = try await withThrowingTaskGroup(of: Bool.self) { group in
            for i in 0..<8 { group.addTask { try await db.swapLeaderLease(expecting: nil, to: lease("m\(i)", epoch: 1)) } }
            return try await group.reduce(into: 0) { $0 += $1 ? 1 : 0 }
        }
        #expect(firsts == 1)
        // A takeover, raced.
        let takeovers = try await withThrowingTaskGroup(of: Bool.self) { group in
            for i in 0..<8 { group.addTask { try await db.swapLeaderLease(expecting: 1, to: lease("n\(i)", epoch: 2)) } }
            return try await group.reduce(into: 0) { $0 += $1 ? 1 : 0 }
        }
        #expect(takeovers == 1)
        let now = try #require(try await db.leaderLease())
        #expect(now.epoch == 2)
        #expect(now.holder.hasPrefix("n"))
    }

    @Test(arguments: StoreBackend.allCases) func aFencedHandleWithTheCurrentEpochWritesLikeAnyOther(_ backend: StoreBackend) async throws {
        let g = try await LedGrid(backend)
        let led = g.db.fenced(epoch: 1)
        try await led.appendLog(g.running.ref, offset: 0, data: Data("hi\n".utf8))
        let result = GridDatabase.RunResult(state: .completed, exitCode: 0, runtimeMs: 30_000, peakMemoryKb: 0, cpuSeconds: 1, reason: nil)
        let finished = try #require(try await led.finishRun(g.running.ref, worker: "w1", result: result, outputs: [], now: 10))
        #expect(finished.job.state == .completed)
        #expect(try await led.requestCancel(g.pending.id, by: g.ada.id, now: 11) == .cancelled)
        _ = try await led.createUser(username: "eve", passwordHash: "h", startingCredits: 100, now: 12)
        let check = try await g.db.checkLedger()
        #expect(check.ok, "\(check)")
        #expect(check.minted == 300)
    }

    @Test(arguments: StoreBackend.allCases) func aDeposedHandleCannotCommitAnyWriteAndChangesNothing(_ backend: StoreBackend) async throws {
        let g = try await LedGrid(backend)
        // Another manager takes over.
        #expect(try await g.db.swapLeaderLease(expecting: 1, to: lease("m2", epoch: 2)))
        let before = try await g.snapshot()
        let stale = g.db.fenced(epoch: 1)
        let script = StoredFile(name: "main.py", data: Data("print(1)".utf8))
        let result = GridDatabase.RunResult(state: .completed, exitCode: 0, runtimeMs: 30_000, peakMemoryKb: 0, cpuSeconds: 1, reason: nil)
        await expectDeposed(2, "createUser") { _ = try await stale.createUser(username: "eve", passwordHash: "h", startingCredits: 100, now: 5) }
        await expectDeposed(2, "submitJob") {
            _ = try await stale.submitJob(owner: g.ada.id, spec: LedGrid.spec, script: script, inputs: [], now: 5)
        }
        await expectDeposed(2, "apply") { _ = try await stale.apply([Placement.Assignment(job: g.pending.id, worker: "w1")], now: 5) }
        await expectDeposed(2, "finishRun") {
            _ = try await stale.finishRun(g.running.ref, worker: "w1", result: result, outputs: [script], now: 5)
        }
        await expectDeposed(2, "requeue") {
            _ = try await stale.requeue(
                g.running.ref, .init(kind: .workerLost, worker: "w1", reason: "gone", alone: true), limits: LossPolicy.Limits(), now: 5)
        }
        await expectDeposed(2, "requestCancel") { _ = try await stale.requestCancel(g.pending.id, by: g.ada.id, now: 5) }
        await expectDeposed(2, "appendLog") { try await stale.appendLog(g.running.ref, offset: 0, data: Data("forged".utf8)) }
        await expectDeposed(2, "registerWorker") {
            try await stale.registerWorker(
                GridDatabase.WorkerRegistration(
                    id: "w9", name: "pc-w9", ownerId: g.bob.id, resources: Resources(cpus: 1, ramGb: 1), gpuNames: [], tier: .bwrap, slots: 1,
                    host: nil, port: nil, webPort: nil),
                now: 5)
        }
        await expectDeposed(2, "markAllWorkersOffline") { try await stale.markAllWorkersOffline() }
        await expectDeposed(2, "addToken") { try await stale.addToken(hash: "x", userId: g.ada.id, kind: .api, now: 5) }
        #expect(try await g.snapshot() == before)
        #expect(try await g.db.checkLedger().ok)
        // Reads are not fenced.
        #expect(try await stale.job(id: g.running.id)?.state == .running)
        // The new leader's handle writes.
        _ = try await g.db.fenced(epoch: 2).createUser(username: "eve", passwordHash: "h", startingCredits: 100, now: 6)
        #expect(try await g.db.user(named: "eve") != nil)
    }

    @Test(arguments: StoreBackend.allCases) func aFenceOfAnyOtherEpochIsDeposed(_ backend: StoreBackend) async throws {
        let db = try await backend.open()
        // No lease at all: every fenced write is refused, naming no current epoch.
        await expectDeposed(nil, "no lease") { _ = try await db.fenced(epoch: 1).createUser(username: "a", passwordHash: "h", startingCredits: 1, now: 0) }
        #expect(try await db.swapLeaderLease(expecting: nil, to: lease("m1", epoch: 7)))
        for epoch: Int64 in [0, -1, 6, 8, Int64.max, Int64.min] {
            await expectDeposed(7, "epoch \(epoch)") {
                _ = try await db.fenced(epoch: epoch).createUser(username: "a\(epoch)", passwordHash: "h", startingCredits: 1, now: 0)
            }
        }
        #expect(try await db.checkLedger().minted == 0)
        #expect(try await db.user(named: "a0") == nil)
    }
}
