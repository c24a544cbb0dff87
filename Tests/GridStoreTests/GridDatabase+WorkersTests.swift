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

    /// Whether a worker took other users' jobs is kept with it, and follows its latest registration (a restarted
    /// manager's known checkers come from it).
    @Test(arguments: StoreBackend.allCases) func whetherAWorkerTookOthersJobsIsKept(_ backend: StoreBackend) async throws {
        let db = try await backend.open()
        let bob = try await db.createUser(username: "bob", passwordHash: "h", startingCredits: 100, now: 0)
        var own = registration("w1", owner: bob.id)
        own.acceptsOthers = false
        try await db.registerWorker(own, now: 5)
        try await db.registerWorker(registration("w2", owner: bob.id), now: 5)
        var kept = Dictionary(uniqueKeysWithValues: try await db.workers().map { ($0.id, $0.acceptsOthers) })
        #expect(kept == ["w1": false, "w2": true])
        own.acceptsOthers = true
        try await db.registerWorker(own, now: 6)
        kept = Dictionary(uniqueKeysWithValues: try await db.workers().map { ($0.id, $0.acceptsOthers) })
        #expect(kept == ["w1": true, "w2": true])
    }

    /// Which join token each worker's newest peer credential was given under, and the peer bars, outlive the manager
    /// that decided them (a restart, a follower taking over): a revoked token still reaches whoever holds a credential.
    @Test(arguments: StoreBackend.allCases) func credentialsGivenAndPeerBarsAreKept(_ backend: StoreBackend) async throws {
        let db = try await backend.open()
        let bob = try await db.createUser(username: "bob", passwordHash: "h", startingCredits: 100, now: 0)
        for id in ["w1", "w2", "w3"] { try await db.registerWorker(registration(id, owner: bob.id), now: 5) }
        try await db.recordCredential("w1", tokenHash: "a", expires: 1_600)
        try await db.recordCredential("w1", tokenHash: "a", expires: 1_000)  // an older one never shortens the newest
        try await db.recordCredential("w2", tokenHash: "a", expires: 900)
        try await db.recordCredential("w3", tokenHash: "b", expires: 2_000)
        try await db.recordCredential("unknown", tokenHash: "a", expires: 2_000)  // no such worker: nothing kept
        #expect(try await db.credentialHolders(tokenHash: "a", expiringAfter: 0) == ["w1": 1_600, "w2": 900])
        #expect(try await db.credentialHolders(tokenHash: "a", expiringAfter: 900) == ["w1": 1_600])
        #expect(try await db.credentialHolders(tokenHash: "c", expiringAfter: 0).isEmpty)
        // w3 joined again under another token: revoking the old one no longer names it (its bar covers every
        // credential given to it until then, whichever token).
        try await db.recordCredential("w3", tokenHash: "c", expires: 2_100)
        #expect(try await db.credentialHolders(tokenHash: "b", expiringAfter: 0).isEmpty)
        #expect(try await db.credentialHolders(tokenHash: "c", expiringAfter: 0) == ["w3": 2_100])

        try await db.recordPeerBar("w1", before: 1_700, forgetBefore: 0)
        try await db.recordPeerBar("w1", before: 1_200, forgetBefore: 0)  // a bar never moves back
        try await db.recordPeerBar("w2", before: 1_000, forgetBefore: 0)
        #expect(try await db.peerBars(refusingAfter: 0) == ["w1": 1_700, "w2": 1_000])
        #expect(try await db.peerBars(refusingAfter: 1_001) == ["w1": 1_700])
        // Bars that refuse nothing any more are dropped when the next is kept.
        try await db.recordPeerBar("w3", before: Int64.max, forgetBefore: 1_500)
        #expect(try await db.peerBars(refusingAfter: .min) == ["w1": 1_700, "w3": .max])
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
