import GridCore
import GridStore
import Testing

private func registration(_ id: WorkerID, owner: UserID, cpus: Int = 4) -> GridDatabase.WorkerRegistration {
    GridDatabase.WorkerRegistration(
        id: id, name: "pc-\(id)", ownerId: owner, resources: Resources(cpus: cpus, ramGb: 8, gpus: 1, gpuMemoryGb: 12),
        gpuNames: ["T4"], tier: .bwrap, slots: 2, host: "10.0.0.2", port: 5001, webPort: 5002)
}

@Suite("GridDatabase workers")
struct GridDatabaseWorkersTests {
    @Test(arguments: StoreBackend.allCases) func aRegisteredWorkerIsOnlineWithWhatItReported(_ backend: StoreBackend) async throws {
        let db = try await backend.open()
        let bob = try await db.createUser(username: "bob", passwordHash: "h", startingCredits: 100, now: 0)
        try await db.registerWorker(registration("w1", owner: bob.id), now: 5)
        let w = try #require(try await db.workers(onlineOnly: true).first)
        #expect(w.id == "w1")
        #expect(w.ownerId == bob.id)
        #expect(w.ownerName == "bob")
        #expect(w.resources == Resources(cpus: 4, ramGb: 8, gpus: 1, gpuMemoryGb: 12))
        #expect(w.gpuNames == ["T4"])
        #expect(w.tier == .bwrap)
        #expect(w.slots == 2)
        #expect(w.online)
        #expect(w.onlineSince == 5)
        #expect(try await db.workerOwner("w1") == bob.id)
        #expect(try await db.workerOwner("w2") == nil)
        #expect(try await db.checkLedger().ok)
    }

    @Test(arguments: StoreBackend.allCases) func registeringAgainUpdatesTheWorkerAndKeepsFirstSeen(_ backend: StoreBackend) async throws {
        let db = try await backend.open()
        let bob = try await db.createUser(username: "bob", passwordHash: "h", startingCredits: 100, now: 0)
        try await db.registerWorker(registration("w1", owner: bob.id, cpus: 4), now: 5)
        try await db.setWorkerOffline("w1", now: 6)
        try await db.registerWorker(registration("w1", owner: bob.id, cpus: 16), now: 9)
        let all = try await db.workers()
        #expect(all.count == 1)
        #expect(all.first?.resources.cpus == 16)
        #expect(all.first?.firstSeen == 5)
        #expect(all.first?.lastSeen == 9)
        #expect(all.first?.online == true)
        #expect(try await db.checkLedger().ok)
    }

    @Test(arguments: StoreBackend.allCases) func anOfflineWorkerIsListedOnlyWhenAskingForAll(_ backend: StoreBackend) async throws {
        let db = try await backend.open()
        let bob = try await db.createUser(username: "bob", passwordHash: "h", startingCredits: 100, now: 0)
        try await db.registerWorker(registration("w1", owner: bob.id), now: 5)
        try await db.registerWorker(registration("w2", owner: bob.id), now: 5)
        try await db.setWorkerOffline("w1", now: 7)
        #expect(try await db.workers(onlineOnly: true).map(\.id) == ["w2"])
        #expect(try await db.workers().count == 2)
        #expect(try await db.workers().first { $0.id == "w1" }?.onlineSince == nil)
        try await db.markAllWorkersOffline()
        #expect(try await db.workers(onlineOnly: true).isEmpty)
        #expect(try await db.checkLedger().ok)
    }

    @Test(arguments: StoreBackend.allCases) func aHeartbeatRecordsLoadAndLastSeen(_ backend: StoreBackend) async throws {
        let db = try await backend.open()
        let bob = try await db.createUser(username: "bob", passwordHash: "h", startingCredits: 100, now: 0)
        try await db.registerWorker(registration("w1", owner: bob.id), now: 5)
        try await db.workerHeartbeat("w1", load: 0.4, now: 8)
        let w = try #require(try await db.workers().first)
        #expect(w.load == 0.4)
        #expect(w.lastSeen == 8)
        #expect(try await db.checkLedger().ok)
    }
}
