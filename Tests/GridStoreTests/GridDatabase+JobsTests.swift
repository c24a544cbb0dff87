import Foundation
import GridCore
import GridStore
import Testing

// `Placement.Assignment` has no public initializer: plans normally come from `Placement.plan`.
@testable import GridScheduler

/// A fresh in-memory grid: Ada submits jobs, Bob owns the online worker "w1" (and the offline "w2"); both start with
/// 100 credits.
private struct Grid {
    let db: GridDatabase
    let ada: UserRecord
    let bob: UserRecord

    /// 2 CPUs, 4 GB, 10 minutes: base 5 + 4 + 4 = 13, hold 23.
    static let spec = JobSpec(name: "fit", cpus: 2, ramGb: 4, gpus: 0, minutes: 10)
    static let base = 13
    static let hold = 23

    init(_ backend: StoreBackend) async throws {
        db = try await backend.open()
        ada = try await db.createUser(username: "ada", passwordHash: "h", startingCredits: 100, now: 0)
        bob = try await db.createUser(username: "bob", passwordHash: "h", startingCredits: 100, now: 0)
        for (id, online) in [("w1", true), ("w2", false)] {
            try await db.registerWorker(
                GridDatabase.WorkerRegistration(
                    id: id, name: "pc-\(id)", ownerId: bob.id, resources: Resources(cpus: 8, ramGb: 16), gpuNames: [], tier: .bwrap,
                    slots: 4, host: nil, port: nil, webPort: nil),
                now: 0)
            if !online { try await db.setWorkerOffline(id, now: 0) }
        }
    }

    func submit(_ spec: JobSpec = Grid.spec, inputs: [StoredFile] = [], now: Double = 1) async throws -> JobRecord {
        try await db.submitJob(owner: ada.id, spec: spec, script: StoredFile(name: "main.py", data: Data("print(1)".utf8)), inputs: inputs, now: now)
    }

    /// Submits a job and starts it on `worker`.
    func running(on worker: WorkerID = "w1") async throws -> JobRecord {
        let job = try await submit()
        return try #require(try await db.apply([Placement.Assignment(job: job.id, worker: worker)], now: 2).first)
    }

    /// The run `ref` lost its worker `worker` (alone: nothing else lost with it).
    func lose(
        _ ref: JobRef, worker: WorkerID = "w1", alone: Bool = false, maxLosses: Int = 10, now: Double, reason: String = "worker vanished"
    ) async throws -> JobRecord? {
        try await db.requeue(
            ref, .init(kind: .workerLost, worker: worker, reason: reason, alone: alone), limits: LossPolicy.Limits(maxLosses: maxLosses), now: now)
    }

    /// Requeues and restarts `job`, returning its new attempt.
    func rerun(_ job: JobRecord, maxLosses: Int = 5) async throws -> JobRecord {
        _ = try await lose(job.ref, maxLosses: maxLosses, now: 3)
        return try #require(try await db.apply([Placement.Assignment(job: job.id, worker: "w1")], now: 4).first)
    }

    func balance(_ user: UserRecord) async throws -> Int { try await db.balance(of: .user(user.id)) }

    func log(_ job: JobID, from offset: Int64 = 0, limit: Int = 1 << 20) async throws -> String {
        String(decoding: try await db.log(of: job, from: offset, limit: limit).data, as: UTF8.self)
    }

    /// The invariant every scenario must keep.
    func expectLedgerOK(sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let check = try await db.checkLedger()
        #expect(check.ok, "\(check)", sourceLocation: sourceLocation)
        #expect(check.minted == 200, sourceLocation: sourceLocation)
    }
}

private func ran(_ runtimeMs: Int64, state: JobState = .completed) -> GridDatabase.RunResult {
    GridDatabase.RunResult(state: state, exitCode: 0, runtimeMs: runtimeMs, peakMemoryKb: 2048, cpuSeconds: 42, reason: nil)
}

@Suite("GridDatabase jobs")
struct GridDatabaseJobsTests {
    // MARK: Submission

    @Test(arguments: StoreBackend.allCases) func submitHoldsTheFullCostAndTheBalanceDropsByIt(_ backend: StoreBackend) async throws {
        let grid = try await Grid(backend)
        let job = try await grid.submit()
        #expect(job.state == .pending)
        #expect(job.attempt == 0)
        #expect(job.hold == Grid.hold)
        #expect(job.spec == Grid.spec)
        #expect(try await grid.balance(grid.ada) == 100 - Grid.hold)
        #expect(try await grid.db.balance(of: .hold(job.id)) == Grid.hold)
        #expect(try await grid.db.events(of: job.id).map(\.state) == [.submitted, .pending])
        try await grid.expectLedgerOK()
    }

    @Test(arguments: StoreBackend.allCases) func submitStoresTheScriptFirstAmongTheInputs(_ backend: StoreBackend) async throws {
        let grid = try await Grid(backend)
        let job = try await grid.submit(inputs: [StoredFile(name: "a.csv", data: Data("1,2".utf8))])
        #expect(try await grid.db.files(of: job.id, outputs: false).map(\.name) == ["main.py", "a.csv"])
        // The list a JOB_ASSIGN names, without the bytes: the same files in the same order, and their sizes.
        let files = try await grid.db.files(of: job.id, outputs: false)
        let list = try await grid.db.fileList(of: job.id, outputs: false)
        #expect(list.map(\.name) == files.map(\.name) && list.map(\.size) == files.map(\.data.count))
        try await grid.expectLedgerOK()
    }

    @Test(arguments: StoreBackend.allCases) func anUnaffordableJobIsRefusedNamingTheBalanceAndTheCost(_ backend: StoreBackend) async throws {
        let grid = try await Grid(backend)
        let spec = JobSpec(name: "big", cpus: 4, ramGb: 8, minutes: 90)  // 5 + 8 + 8 + 90 = 111
        let error = await #expect(throws: GridError.self) { try await grid.submit(spec) }
        #expect(error?.code == .insufficientCredits)
        #expect(error?.message.contains("111") == true)
        #expect(error?.message.contains("100") == true)
        #expect(try await grid.balance(grid.ada) == 100)
        #expect(try await grid.db.jobs().isEmpty)
        try await grid.expectLedgerOK()
    }

    @Test(arguments: StoreBackend.allCases) func aJobCostingExactlyTheBalanceIsAccepted(_ backend: StoreBackend) async throws {
        let grid = try await Grid(backend)
        let spec = JobSpec(name: "all-in", cpus: 1, ramGb: 1, minutes: 92)  // 5 + 2 + 1 + 92 = 100
        _ = try await grid.submit(spec)
        #expect(try await grid.balance(grid.ada) == 0)
        try await grid.expectLedgerOK()
    }

    @Test(arguments: StoreBackend.allCases) func theHoldsOfEarlierJobsCountAgainstTheBalance(_ backend: StoreBackend) async throws {
        let grid = try await Grid(backend)
        for _ in 0..<4 { _ = try await grid.submit() }  // 4 × 23 = 92
        let error = await #expect(throws: GridError.self) { try await grid.submit() }
        #expect(error?.code == .insufficientCredits)
        #expect(error?.message.contains("23") == true)
        #expect(error?.message.contains("balance is 8") == true)
        #expect(try await grid.balance(grid.ada) == 8)
        try await grid.expectLedgerOK()
    }

    /// A job cancelled before it started, or ended refunded, will never run: its inputs (the script among them) are not
    /// kept. A submission
    /// of 48 MiB cancelled at once was refunded whole, and kept its bytes in the store for good: a free loop filled
    /// the manager's disk.
    /// A running job's cancel time is kept, the first one: a manager started again (or a follower taking over) bills its
    /// run no later than a lease period after it, as the one that took the cancel would have (it was in memory only).
    @Test(arguments: StoreBackend.allCases) func aRunningJobsFirstCancelTimeIsKept(_ backend: StoreBackend) async throws {
        let grid = try await Grid(backend)
        let job = try await grid.running()
        #expect(try await grid.db.job(id: job.id)?.cancelRequestedAt == nil)
        guard case .stopRunning = try await grid.db.requestCancel(job.id, by: grid.ada.id, now: 50) else {
            Issue.record("a running job's cancel did not ask its worker to stop")
            return
        }
        _ = try await grid.db.requestCancel(job.id, by: grid.ada.id, now: 90)
        let after = try #require(try await grid.db.runningJobs().first { $0.id == job.id })
        #expect(after.cancelRequested && after.cancelRequestedAt == 50, "the first cancel counts: \(String(describing: after.cancelRequestedAt))")
        #expect(try await grid.db.job(id: job.id)?.cancelRequestedAt == 50)
    }

    @Test(arguments: StoreBackend.allCases) func aJobCancelledBeforeItStartedKeepsNoInputs(_ backend: StoreBackend) async throws {
        let grid = try await Grid(backend)
        let big = StoredFile(name: "data.bin", data: Data(repeating: 7, count: 1 << 20))
        let job = try await grid.submit(inputs: [big])
        #expect(try await grid.db.fileList(of: job.id, outputs: false).map(\.name) == ["main.py", "data.bin"])
        let kept = try await grid.submit(inputs: [big])
        #expect(try await grid.db.requestCancel(job.id, by: grid.ada.id, now: 2) == .cancelled)
        #expect(try await grid.db.fileList(of: job.id, outputs: false).isEmpty)
        // Another job's inputs stay.
        #expect(try await grid.db.files(of: kept.id, outputs: false).map(\.data.count) == [8, 1 << 20])
        #expect(try await grid.balance(grid.ada) == 100 - kept.hold)
        // A run refunded in full (its packages could not be installed) keeps none either; a run that was paid keeps its.
        let refunded = try await grid.running()
        var failed = ran(5, state: .failed)
        failed.refund = true
        _ = try await grid.db.finishRun(refunded.ref, worker: "w1", result: failed, outputs: [], now: 3)
        #expect(try await grid.db.fileList(of: refunded.id, outputs: false).isEmpty)
        let paid = try await grid.running()
        _ = try await grid.db.finishRun(paid.ref, worker: "w1", result: ran(5), outputs: [], now: 4)
        #expect(try await grid.db.fileList(of: paid.id, outputs: false).map(\.name) == ["main.py"])
        // Lost too often: ended, refunded, and its inputs go.
        let lost = try await grid.running()
        _ = try await grid.lose(lost.ref, maxLosses: 1, now: 5)
        #expect(try await grid.db.job(id: lost.id)?.state == .failed)
        #expect(try await grid.db.fileList(of: lost.id, outputs: false).isEmpty)
        try await grid.expectLedgerOK()
    }

    /// What a person has on hold is the store's sum over their jobs that may still run, however many they have: an
    /// account page added up their newest 10,000 jobs, and an old pending job's hold went unsaid past them.
    @Test(arguments: StoreBackend.allCases) func theHeldSumCountsOnlyJobsThatMayStillRun(_ backend: StoreBackend) async throws {
        let grid = try await Grid(backend)
        #expect(try await grid.db.held(by: grid.ada.id) == 0)
        let old = try await grid.submit()
        let cancelled = try await grid.submit()
        _ = try await grid.db.requestCancel(cancelled.id, by: grid.ada.id, now: 2)
        let third = try await grid.submit()
        #expect(try await grid.db.held(by: grid.ada.id) == old.hold + third.hold)
        #expect(try await grid.db.held(by: grid.bob.id) == 0)
        _ = try await grid.db.requestCancel(third.id, by: grid.ada.id, now: 3)
        #expect(try await grid.db.held(by: grid.ada.id) == old.hold)
    }

    @Test(arguments: StoreBackend.allCases) func anInvalidSpecIsRefusedBeforeAnythingIsHeld(_ backend: StoreBackend) async throws {
        let grid = try await Grid(backend)
        let error = await #expect(throws: GridError.self) { try await grid.submit(JobSpec(name: "bad", cpus: -4)) }
        #expect(error?.code == .invalidResources)
        #expect(try await grid.balance(grid.ada) == 100)
        try await grid.expectLedgerOK()
    }

    @Test(arguments: StoreBackend.allCases) func anUnsafeInputNameIsRefused(_ backend: StoreBackend) async throws {
        let grid = try await Grid(backend)
        let error = await #expect(throws: GridError.self) {
            try await grid.submit(inputs: [StoredFile(name: "../etc/passwd", data: Data())])
        }
        #expect(error?.code == .badRequest)
        #expect(try await grid.db.jobs().isEmpty)
        try await grid.expectLedgerOK()
    }

    @Test(arguments: StoreBackend.allCases) func twoInputsWithOneNameAreRefused(_ backend: StoreBackend) async throws {
        let grid = try await Grid(backend)
        let error = await #expect(throws: GridError.self) {
            try await grid.submit(inputs: [StoredFile(name: "main.py", data: Data())])
        }
        #expect(error?.code == .badRequest)
        try await grid.expectLedgerOK()
    }

    // MARK: Applying a plan

    @Test(arguments: StoreBackend.allCases) func applyStartsAPendingJobOnAnOnlineWorkerAsAttemptOne(_ backend: StoreBackend) async throws {
        let grid = try await Grid(backend)
        let job = try await grid.submit()
        let started = try await grid.db.apply([Placement.Assignment(job: job.id, worker: "w1")], now: 2)
        #expect(started.count == 1)
        let running = try #require(started.first)
        #expect(running.id == job.id)
        #expect(running.state == .running)
        #expect(running.attempt == 1)
        #expect(running.workerId == "w1")
        #expect(running.startedAt == 2)
        #expect(try await grid.db.runningJobs().map(\.id) == [job.id])
        #expect(try await grid.db.queuedJobs().isEmpty)
        #expect(try await grid.db.events(of: job.id).last?.state == .running)
        try await grid.expectLedgerOK()
    }

    @Test(arguments: StoreBackend.allCases) func applySkipsOfflineAndUnknownWorkers(_ backend: StoreBackend) async throws {
        let grid = try await Grid(backend)
        let a = try await grid.submit()
        let b = try await grid.submit()
        let started = try await grid.db.apply(
            [Placement.Assignment(job: a.id, worker: "w2"), Placement.Assignment(job: b.id, worker: "ghost")], now: 2)
        #expect(started.isEmpty)
        #expect(try await grid.db.job(id: a.id)?.state == .pending)
        #expect(try await grid.db.job(id: b.id)?.state == .pending)
        #expect(try await grid.db.queuedJobs().map(\.id) == [a.id, b.id])
        try await grid.expectLedgerOK()
    }

    @Test(arguments: StoreBackend.allCases) func applySkipsAJobThatIsNoLongerPending(_ backend: StoreBackend) async throws {
        let grid = try await Grid(backend)
        let job = try await grid.running()
        let again = try await grid.db.apply([Placement.Assignment(job: job.id, worker: "w1")], now: 3)
        #expect(again.isEmpty)
        #expect(try await grid.db.job(id: job.id)?.attempt == 1)
        try await grid.expectLedgerOK()
    }

    @Test(arguments: StoreBackend.allCases) func applyRechecksSlotsCapacityAndTierAgainstWhatTheWorkerAlreadyRuns(_ backend: StoreBackend) async throws {
        let grid = try await Grid(backend)
        // w1 has 8 CPUs and 4 slots: four 2-CPU jobs fill it (1 minute each, so Ada can afford five).
        var cheap = Grid.spec
        cheap.minutes = 1
        for _ in 0..<4 {
            let job = try await grid.submit(cheap)
            #expect(try await grid.db.apply([Placement.Assignment(job: job.id, worker: "w1")], now: 2).count == 1)
        }
        let fifth = try await grid.submit(cheap)
        #expect(try await grid.db.apply([Placement.Assignment(job: fifth.id, worker: "w1")], now: 3).isEmpty)
        #expect(try await grid.db.job(id: fifth.id)?.state == .pending)
        try await grid.expectLedgerOK()
    }

    /// A whole pass's plan is committed in chunks (issue 17): every assignment is still re-checked, across chunk
    /// boundaries, against what the same plan started before it.
    @Test(arguments: StoreBackend.allCases) func aLargePlanIsRecheckedAsAWholeAcrossChunks(_ backend: StoreBackend) async throws {
        let grid = try await Grid(backend)
        func worker(_ id: WorkerID, cpus: Int, slots: Int, tier: SandboxTier = .bwrap) -> Placement.Worker {
            let total = Resources(cpus: cpus, ramGb: cpus * 2)
            return Placement.Worker(id: id, total: total, free: total, load: 0, tier: tier, freeSlots: slots)
        }
        let ids = (0..<1_200).map { JobID(10_000 + $0) }
        try await grid.db.insertSyntheticLoad(
            workers: [worker("wa", cpus: 4, slots: 2), worker("wb", cpus: 1_000, slots: 1_000), worker("wc", cpus: 8, slots: 8),
                      worker("wd", cpus: 8, slots: 8, tier: .restricted), worker("we", cpus: 3, slots: 8)],
            jobs: ids.map { Placement.Job(id: $0, owner: grid.ada.id, priority: 0, request: Resources(cpus: 1, ramGb: 1), minTier: .bwrap, submitted: 1) },
            owner: grid.bob.id, now: 1)
        try await grid.db.setWorkerOffline("wc", now: 1)
        var plan: [Placement.Assignment] = []
        plan += ids[0..<3].map { Placement.Assignment(job: $0, worker: "wa") }  // two slots: the third is refused
        plan += ids[3..<603].map { Placement.Assignment(job: $0, worker: "wb") }  // 600, across chunks
        plan.append(Placement.Assignment(job: ids[3], worker: "wb"))  // planned twice: starts once
        plan.append(Placement.Assignment(job: ids[603], worker: "wc"))  // offline
        plan.append(Placement.Assignment(job: ids[604], worker: "wd"))  // too weak a tier
        plan.append(Placement.Assignment(job: ids[605], worker: "nobody"))  // unknown
        plan += ids[606..<610].map { Placement.Assignment(job: $0, worker: "we") }  // 3 CPUs: the fourth does not fit
        plan.append(Placement.Assignment(job: 999_999, worker: "wb"))  // no such job
        let started = try await grid.db.apply(plan, now: 5)

        let expected = Array(ids[0..<2]) + Array(ids[3..<603]) + Array(ids[606..<609])
        #expect(started.map(\.id) == expected)
        for id in [ids[0], ids[3], ids[500], ids[602], ids[608]] {
            let job = try #require(try await grid.db.job(id: id))
            #expect(job.state == .running && job.attempt == 1 && job.startedAt == 5 && job.tier == .bwrap, "\(job)")
            #expect(job.workerId == started.first { $0.id == id }?.workerId)
            let running = try await grid.db.events(of: id).filter { $0.state == .running }
            #expect(running.map(\.detail) == ["on worker \(job.workerId ?? "") (attempt 1)"])
        }
        for id in [ids[2], ids[603], ids[604], ids[605], ids[609]] {
            #expect(try await grid.db.job(id: id)?.state == .pending)
        }

        // Pending reasons by reason, across chunks; a job that started keeps none.
        var reasons: [JobID: String] = [:]
        for id in ids[609..<1_200] { reasons[id] = id % 2 == 0 ? "no worker is online" : "waiting for a worker with enough free resources" }
        reasons[ids[0]] = "no worker is online"
        try await grid.db.setPendingReasons(reasons)
        #expect(try await grid.db.job(id: ids[1_199])?.pendingReason == reasons[ids[1_199]])
        #expect(try await grid.db.job(id: ids[1_198])?.pendingReason == reasons[ids[1_198]])
        #expect(try await grid.db.job(id: ids[700])?.pendingReason == reasons[ids[700]])
        #expect(try await grid.db.job(id: ids[0])?.pendingReason == nil)
    }

    @Test(arguments: StoreBackend.allCases) func applyRefusesAWorkerWhoseTierIsTooWeak(_ backend: StoreBackend) async throws {
        let grid = try await Grid(backend)
        var spec = Grid.spec
        spec.minTier = .oci
        let job = try await grid.submit(spec)
        #expect(try await grid.db.apply([Placement.Assignment(job: job.id, worker: "w1")], now: 2).isEmpty)
        #expect(try await grid.db.job(id: job.id)?.state == .pending)
    }

    // MARK: Finishing

    @Test(arguments: StoreBackend.allCases) func finishPaysTheWorkerOwnerBasePlusMinutesRoundedUpAndReleasesTheRest(_ backend: StoreBackend) async throws {
        let grid = try await Grid(backend)
        let job = try await grid.running()
        let output = StoredFile(name: "out.txt", data: Data("42".utf8))
        let done = try #require(
            try await grid.db.finish(job.ref, worker: "w1", result: ran(90_000), outputs: [output], now: 5))
        let paid = Grid.base + 2
        #expect(done.state == .completed)
        #expect(done.paid == paid)
        #expect(done.runtimeMs == 90_000)
        #expect(done.finishedAt == 5)
        #expect(try await grid.balance(grid.ada) == 100 - paid)
        #expect(try await grid.balance(grid.bob) == 100 + paid)
        #expect(try await grid.db.balance(of: .hold(job.id)) == 0)
        #expect(try await grid.db.output(of: job.id, name: "out.txt") == output.data)
        try await grid.expectLedgerOK()
    }

    @Test(arguments: StoreBackend.allCases) func finishCapsTheChargeAtTheRequestedMinutes(_ backend: StoreBackend) async throws {
        let grid = try await Grid(backend)
        let job = try await grid.running()
        let done = try #require(try await grid.db.finish(job.ref, worker: "w1", result: ran(3_600_000, state: .timedOut), outputs: [], now: 5))
        #expect(done.state == .timedOut)
        #expect(done.paid == Grid.hold)
        #expect(try await grid.balance(grid.ada) == 100 - Grid.hold)
        #expect(try await grid.balance(grid.bob) == 100 + Grid.hold)
        try await grid.expectLedgerOK()
    }

    @Test(arguments: StoreBackend.allCases) func aJobFailedByItsOwnErrorPaysLikeACompletedOne(_ backend: StoreBackend) async throws {
        let grid = try await Grid(backend)
        let job = try await grid.running()
        let done = try #require(try await grid.db.finish(job.ref, worker: "w1", result: ran(1, state: .failed), outputs: [], now: 5))
        #expect(done.state == .failed)
        #expect(done.paid == Grid.base + 1)
        #expect(try await grid.balance(grid.bob) == 100 + Grid.base + 1)
        try await grid.expectLedgerOK()
    }

    @Test(arguments: StoreBackend.allCases) func finishOfAStaleAttemptReturnsNilAndMovesNothing(_ backend: StoreBackend) async throws {
        let grid = try await Grid(backend)
        let first = try await grid.running()
        let second = try await grid.rerun(first)
        #expect(second.attempt == 2)
        let stale = try await grid.db.finish(first.ref, worker: "w1", result: ran(60_000), outputs: [], now: 5)
        #expect(stale == nil)
        #expect(try await grid.db.job(id: first.id)?.state == .running)
        #expect(try await grid.balance(grid.ada) == 100 - Grid.hold)
        #expect(try await grid.balance(grid.bob) == 100)
        #expect(try await grid.db.balance(of: .hold(first.id)) == Grid.hold)
        try await grid.expectLedgerOK()
    }

    @Test(arguments: StoreBackend.allCases) func finishFromAnotherWorkerReturnsNilAndMovesNothing(_ backend: StoreBackend) async throws {
        let grid = try await Grid(backend)
        let job = try await grid.running()
        #expect(try await grid.db.finish(job.ref, worker: "w2", result: ran(60_000), outputs: [], now: 5) == nil)
        #expect(try await grid.balance(grid.bob) == 100)
        try await grid.expectLedgerOK()
    }

    @Test(arguments: StoreBackend.allCases) func aSecondFinishOfTheSameAttemptReturnsNil(_ backend: StoreBackend) async throws {
        let grid = try await Grid(backend)
        let job = try await grid.running()
        _ = try await grid.db.finish(job.ref, worker: "w1", result: ran(60_000), outputs: [], now: 5)
        #expect(try await grid.db.finish(job.ref, worker: "w1", result: ran(60_000), outputs: [], now: 6) == nil)
        #expect(try await grid.balance(grid.bob) == 100 + Grid.base + 1)
        try await grid.expectLedgerOK()
    }

    @Test(arguments: StoreBackend.allCases) func finishCreditsTheWorkerOnTheLeaderboard(_ backend: StoreBackend) async throws {
        let grid = try await Grid(backend)
        let job = try await grid.running()
        _ = try await grid.db.finish(job.ref, worker: "w1", result: ran(60_000), outputs: [], now: 5)
        let board = try await grid.db.leaderboard()
        #expect(board.map(\.username) == ["bob"])
        #expect(board.first?.creditsEarned == Grid.base + 1)
        #expect(board.first?.jobsRun == 1)
        try await grid.expectLedgerOK()
    }

    // MARK: Requeue

    @Test(arguments: StoreBackend.allCases) func requeueReturnsARunningJobToPendingKeepingItsHold(_ backend: StoreBackend) async throws {
        let grid = try await Grid(backend)
        let job = try await grid.running()
        let back = try #require(try await grid.lose(job.ref, now: 3))
        #expect(back.state == .pending)
        #expect(back.workerId == nil)
        #expect(back.attempt == 1)
        #expect(try await grid.db.balance(of: .hold(job.id)) == Grid.hold)
        #expect(try await grid.db.queuedJobs().map(\.id) == [job.id])
        let again = try #require(try await grid.db.apply([Placement.Assignment(job: job.id, worker: "w1")], now: 4).first)
        #expect(again.attempt == 2)
        try await grid.expectLedgerOK()
    }

    /// A worker's word that the job's environment cannot be built (`EnvironmentFailure`): its owner is remembered for
    /// the job's life, its workers never get the job again, and the owners that said so are known to the next report.
    @Test(arguments: StoreBackend.allCases) func anEnvironmentFailureKeepsTheJobFromThatOwnerForGood(_ backend: StoreBackend) async throws {
        let grid = try await Grid(backend)
        let job = try await grid.running()
        #expect(try await grid.db.environmentFailureOwners(of: job.id).isEmpty)
        let back = try #require(
            try await grid.db.requeue(
                job.ref, .init(kind: .environmentFailed, worker: "w1", reason: "could not build", alone: true), limits: LossPolicy.Limits(),
                now: 3))
        #expect(back.state == .pending)
        #expect(back.avoidOwners == [grid.bob.id])
        #expect(try await grid.db.queuedJobs().first?.avoidOwners == [grid.bob.id])
        #expect(try await grid.db.environmentFailureOwners(of: job.id) == [grid.bob.id])
        #expect(back.placementJob.avoidOwners == [grid.bob.id])
        // Another kind of interruption remembers no owner.
        let again = try #require(try await grid.db.apply([Placement.Assignment(job: job.id, worker: "w1")], now: 4).first)
        let lost = try #require(try await grid.lose(again.ref, now: 5))
        #expect(lost.avoidOwners == [grid.bob.id])
        #expect(try await grid.db.environmentFailureOwners(of: job.id) == [grid.bob.id])
        try await grid.expectLedgerOK()
    }

    @Test(arguments: StoreBackend.allCases) func requeueAfterTheMostInterruptionsFailsTheJobWithAFullRefund(_ backend: StoreBackend) async throws {
        let grid = try await Grid(backend)
        let first = try await grid.running()
        let second = try await grid.rerun(first, maxLosses: 2)
        let ended = try #require(try await grid.lose(second.ref, maxLosses: 2, now: 5))
        #expect(ended.state == .failed)
        #expect(ended.paid == 0)
        #expect(ended.reason?.contains("worker vanished") == true)
        #expect(try await grid.balance(grid.ada) == 100)
        #expect(try await grid.balance(grid.bob) == 100)
        #expect(try await grid.db.balance(of: .hold(first.id)) == 0)
        #expect(try await grid.db.queuedJobs().isEmpty)
        try await grid.expectLedgerOK()
    }

    @Test(arguments: StoreBackend.allCases) func aJobLostOnManyWorkersWithTheirOtherJobsIsRetriedPastTheOldLimitAndInterruptionsAreRecorded(_ backend: StoreBackend) async throws {
        let grid = try await Grid(backend)
        var job = try await grid.running()
        // Five outages, each taking other jobs with it (not alone): churn, not the job's fault.
        for i in 0..<5 {
            let back = try #require(try await grid.lose(job.ref, worker: "w1", alone: false, now: 3 + Double(i)))
            #expect(back.state == .pending, "interruption \(i + 1)")
            job = try #require(try await grid.db.apply([Placement.Assignment(job: job.id, worker: "w1")], now: 3.5 + Double(i)).first)
        }
        let history = try await grid.db.interruptions(of: job.id)
        #expect(history.count == 5)
        #expect(history.allSatisfy { $0.kind == .workerLost && !$0.blamed && $0.workerId == "w1" })
        #expect(history.map(\.attempt) == [1, 2, 3, 4, 5])
        try await grid.expectLedgerOK()
    }

    @Test(arguments: StoreBackend.allCases) func aJobThatIsTheOnlyLossOfThreeHealthyWorkersIsFailedAndRefundedSayingSo(_ backend: StoreBackend) async throws {
        let grid = try await Grid(backend)
        for w in ["w2", "w3"] {
            try await grid.db.registerWorker(
                GridDatabase.WorkerRegistration(
                    id: w, name: w, ownerId: grid.bob.id, resources: Resources(cpus: 4, ramGb: 8, gpus: 0), gpuNames: [], tier: .bwrap, slots: 4, host: nil, port: nil, webPort: nil),
                now: 1)
        }
        var job = try await grid.running(on: "w1")
        for (i, w) in ["w1", "w2"].enumerated() {
            let back = try #require(try await grid.lose(job.ref, worker: w, alone: true, now: 10 + Double(i)))
            #expect(back.state == .pending)
            let next = ["w2", "w3"][i]
            job = try #require(try await grid.db.apply([Placement.Assignment(job: job.id, worker: next)], now: 10.5 + Double(i)).first)
        }
        let ended = try #require(try await grid.lose(job.ref, worker: "w3", alone: true, now: 12))
        #expect(ended.state == .failed)
        #expect(ended.reason?.contains("3 different workers") == true)
        #expect(ended.reason?.contains("refunded") == true)
        #expect(try await grid.balance(grid.ada) == 100)
        #expect(try await grid.db.interruptions(of: job.id).map(\.blamed) == [true, true, true])
        try await grid.expectLedgerOK()
    }

    @Test(arguments: StoreBackend.allCases) func aLossOnAWorkerThatLostOtherJobsRecentlyDoesNotPointAtTheJob(_ backend: StoreBackend) async throws {
        let grid = try await Grid(backend)
        let other = try await grid.running(on: "w1")
        _ = try await grid.lose(other.ref, worker: "w1", alone: true, now: 5)
        let job = try await grid.running(on: "w1")
        _ = try await grid.lose(job.ref, worker: "w1", alone: true, now: 6)
        #expect(try await grid.db.interruptions(of: job.id).map(\.blamed) == [false], "w1 is a host that loses jobs by itself")
        #expect(try await grid.db.interruptions(of: other.id).map(\.blamed) == [true])
    }

    @Test(arguments: StoreBackend.allCases) func requeueOfAStaleAttemptReturnsNil(_ backend: StoreBackend) async throws {
        let grid = try await Grid(backend)
        let first = try await grid.running()
        let second = try await grid.rerun(first)
        #expect(try await grid.lose(first.ref, now: 6, reason: "late") == nil)
        #expect(try await grid.db.job(id: first.id)?.state == .running)
        #expect(try await grid.db.job(id: first.id)?.attempt == second.attempt)
        try await grid.expectLedgerOK()
    }

    // MARK: Cancel

    @Test(arguments: StoreBackend.allCases) func cancellingAPendingJobRefundsItInFull(_ backend: StoreBackend) async throws {
        let grid = try await Grid(backend)
        let job = try await grid.submit()
        #expect(try await grid.db.requestCancel(job.id, by: grid.ada.id, now: 2) == .cancelled)
        let cancelled = try #require(try await grid.db.job(id: job.id))
        #expect(cancelled.state == .cancelled)
        #expect(cancelled.paid == 0)
        #expect(try await grid.balance(grid.ada) == 100)
        #expect(try await grid.db.balance(of: .hold(job.id)) == 0)
        try await grid.expectLedgerOK()
    }

    @Test(arguments: StoreBackend.allCases) func aCancelledJobIsNotStartedByAnOldPlan(_ backend: StoreBackend) async throws {
        let grid = try await Grid(backend)
        let job = try await grid.submit()
        _ = try await grid.db.requestCancel(job.id, by: grid.ada.id, now: 2)
        #expect(try await grid.db.apply([Placement.Assignment(job: job.id, worker: "w1")], now: 3).isEmpty)
        #expect(try await grid.db.job(id: job.id)?.state == .cancelled)
        try await grid.expectLedgerOK()
    }

    @Test(arguments: StoreBackend.allCases) func cancellingARunningJobAsksItsWorkerToStop(_ backend: StoreBackend) async throws {
        let grid = try await Grid(backend)
        let job = try await grid.running()
        #expect(try await grid.db.requestCancel(job.id, by: grid.ada.id, now: 3) == .stopRunning(job.ref, worker: "w1"))
        #expect(try await grid.db.job(id: job.id)?.cancelRequested == true)
        #expect(try await grid.db.job(id: job.id)?.state == .running)
        try await grid.expectLedgerOK()
    }

    @Test(arguments: StoreBackend.allCases) func aRunningJobCancelledThenLostEndsCancelledAndRefunded(_ backend: StoreBackend) async throws {
        let grid = try await Grid(backend)
        let job = try await grid.running()
        _ = try await grid.db.requestCancel(job.id, by: grid.ada.id, now: 3)
        let ended = try #require(try await grid.lose(job.ref, now: 4))
        #expect(ended.state == .cancelled)
        #expect(try await grid.balance(grid.ada) == 100)
        try await grid.expectLedgerOK()
    }

    @Test(arguments: StoreBackend.allCases) func onlyTheOwnerCanCancelAJob(_ backend: StoreBackend) async throws {
        let grid = try await Grid(backend)
        let job = try await grid.submit()
        let error = await #expect(throws: GridError.self) { try await grid.db.requestCancel(job.id, by: grid.bob.id, now: 2) }
        #expect(error?.code == .notFound)
        #expect(try await grid.db.job(id: job.id)?.state == .pending)
        try await grid.expectLedgerOK()
    }

    @Test(arguments: StoreBackend.allCases) func cancellingAnEndedJobIsAConflict(_ backend: StoreBackend) async throws {
        let grid = try await Grid(backend)
        let job = try await grid.submit()
        _ = try await grid.db.requestCancel(job.id, by: grid.ada.id, now: 2)
        let error = await #expect(throws: GridError.self) { try await grid.db.requestCancel(job.id, by: grid.ada.id, now: 3) }
        #expect(error?.code == .conflict)
        #expect(try await grid.balance(grid.ada) == 100)
        try await grid.expectLedgerOK()
    }

    // MARK: Logs

    @Test(arguments: StoreBackend.allCases) func appendLogStoresBytesAtTheirOffsets(_ backend: StoreBackend) async throws {
        let grid = try await Grid(backend)
        let job = try await grid.running()
        #expect(try await grid.db.appendLog(job.ref, offset: 0, data: Data("hello ".utf8)))
        #expect(try await grid.db.appendLog(job.ref, offset: 6, data: Data("world".utf8)))
        #expect(try await grid.log(job.id) == "hello world")
        #expect(try await grid.db.logOffset(of: job.id) == 11)
        try await grid.expectLedgerOK()
    }

    @Test(arguments: StoreBackend.allCases) func appendLogMarksAGapInsteadOfSplicingSilently(_ backend: StoreBackend) async throws {
        let grid = try await Grid(backend)
        let job = try await grid.running()
        #expect(try await grid.db.appendLog(job.ref, offset: 0, data: Data("abc".utf8)))
        #expect(try await grid.db.appendLog(job.ref, offset: 10, data: Data("xyz".utf8)))
        #expect(try await grid.db.appendLog(job.ref, offset: 13, data: Data("!".utf8)))
        #expect(try await grid.log(job.id) == "abc\n[7 bytes of log lost in transit]\nxyz!")
        try await grid.expectLedgerOK()
    }

    /// A worker sends what it likes: past the job's cap nothing more is stored, gap notes included, and the cut is said.
    @Test(arguments: StoreBackend.allCases) func appendLogKeepsAtMostTheCapOfAJobsLog(_ backend: StoreBackend) async throws {
        let grid = try await Grid(backend)
        let job = try await grid.running()
        #expect(try await grid.db.appendLog(job.ref, offset: 0, data: Data("0123456789".utf8), maxBytes: 16))
        #expect(try await grid.db.appendLog(job.ref, offset: 10, data: Data("abcdefghij".utf8), maxBytes: 16))
        let cut = try await grid.log(job.id)
        #expect(cut.hasPrefix("0123456789abcdef\n[log cut: the manager keeps at most 0 MB of a job's log]"), "\(cut)")
        let stored = try await grid.db.logOffset(of: job.id)
        // Nothing more: not the rest, not a gap's note, not an offset that overflows.
        #expect(try await grid.db.appendLog(job.ref, offset: 20, data: Data("klmnop".utf8), maxBytes: 16))
        #expect(try await grid.db.appendLog(job.ref, offset: 1 << 30, data: Data("far".utf8), maxBytes: 16))
        #expect(try await grid.db.appendLog(job.ref, offset: .max, data: Data("x".utf8), maxBytes: 16))
        #expect(try await grid.db.logOffset(of: job.id) == stored)
        try await grid.expectLedgerOK()
    }

    @Test(arguments: StoreBackend.allCases) func appendLogSkipsBytesThatWereAlreadyStored(_ backend: StoreBackend) async throws {
        let grid = try await Grid(backend)
        let job = try await grid.running()
        try await grid.db.appendLog(job.ref, offset: 0, data: Data("hello ".utf8))
        #expect(try await grid.db.appendLog(job.ref, offset: 0, data: Data("hello ".utf8)))
        #expect(try await grid.log(job.id) == "hello ")
        #expect(try await grid.db.appendLog(job.ref, offset: 3, data: Data("lo world".utf8)))
        #expect(try await grid.log(job.id) == "hello world")
        #expect(try await grid.db.appendLog(job.ref, offset: 2, data: Data("llo".utf8)))
        #expect(try await grid.log(job.id) == "hello world")
        #expect(try await grid.db.logOffset(of: job.id) == 11)
        try await grid.expectLedgerOK()
    }

    @Test(arguments: StoreBackend.allCases) func appendLogIgnoresAStaleAttempt(_ backend: StoreBackend) async throws {
        let grid = try await Grid(backend)
        let first = try await grid.running()
        try await grid.db.appendLog(first.ref, offset: 0, data: Data("one\n".utf8))
        _ = try await grid.rerun(first)
        let before = try await grid.log(first.id)
        #expect(try await grid.db.appendLog(first.ref, offset: 4, data: Data("late\n".utf8)) == false)
        #expect(try await grid.log(first.id) == before)
        try await grid.expectLedgerOK()
    }

    @Test(arguments: StoreBackend.allCases) func appendLogIgnoresAJobThatIsNotRunning(_ backend: StoreBackend) async throws {
        let grid = try await Grid(backend)
        let job = try await grid.submit()
        #expect(try await grid.db.appendLog(JobRef(jobId: job.id, attempt: 0), offset: 0, data: Data("x".utf8)) == false)
        #expect(try await grid.db.appendLog(JobRef(jobId: 999, attempt: 1), offset: 0, data: Data("x".utf8)) == false)
        #expect(try await grid.log(job.id).isEmpty)
        try await grid.expectLedgerOK()
    }

    @Test(arguments: StoreBackend.allCases) func aNewAttemptLogsFromOffsetZeroAfterTheOldOnesLog(_ backend: StoreBackend) async throws {
        let grid = try await Grid(backend)
        let first = try await grid.running()
        try await grid.db.appendLog(first.ref, offset: 0, data: Data("one\n".utf8))
        let second = try await grid.rerun(first)
        #expect(try await grid.db.logOffset(of: first.id) == 0)
        #expect(try await grid.db.appendLog(second.ref, offset: 0, data: Data("two\n".utf8)))
        #expect(try await grid.db.appendLog(second.ref, offset: 0, data: Data("two\n".utf8)))
        #expect(try await grid.log(first.id) == "one\n\n--- worker vanished ---\ntwo\n")
        #expect(try await grid.db.logOffset(of: first.id) == 4)
        try await grid.expectLedgerOK()
    }

    @Test(arguments: StoreBackend.allCases) func logFromAnOffsetReturnsTheRestAcrossChunks(_ backend: StoreBackend) async throws {
        let grid = try await Grid(backend)
        let job = try await grid.running()
        for (offset, text) in [(0, "abc"), (3, "def"), (6, "ghi")] {
            try await grid.db.appendLog(job.ref, offset: Int64(offset), data: Data(text.utf8))
        }
        #expect(try await grid.log(job.id, from: 0) == "abcdefghi")
        #expect(try await grid.log(job.id, from: 3) == "defghi")
        #expect(try await grid.log(job.id, from: 4) == "efghi")
        #expect(try await grid.log(job.id, from: 8) == "i")
        #expect(try await grid.log(job.id, from: 9) == "")
        #expect(try await grid.log(job.id, from: 50) == "")
        #expect(try await grid.db.log(of: job.id, from: 4).total == 9)
        try await grid.expectLedgerOK()
    }

    /// A log sent a byte at a time is read from the piece holding the offset on, and a read stops after
    /// `maxLogRowsPerRead` pieces (the reader asks again from where it ended), never loading the whole log.
    @Test(arguments: StoreBackend.allCases) func aLogOfManySmallPiecesIsReadInBoundedSteps(_ backend: StoreBackend) async throws {
        let grid = try await Grid(backend)
        let job = try await grid.running()
        let (pieces, rows) = (700, 300)
        let text = (0..<pieces).map { String(UnicodeScalar(UInt8(97 + $0 % 26))) }.joined()
        for (i, c) in text.utf8.enumerated() { try await grid.db.appendLog(job.ref, offset: Int64(i), data: Data([c])) }
        let first = try await grid.db.log(of: job.id, from: 0, maxRows: rows)
        #expect(first.total == Int64(pieces) && first.data.count == rows)
        #expect(String(decoding: first.data, as: UTF8.self) == String(text.prefix(rows)))
        let second = try await grid.db.log(of: job.id, from: Int64(rows) + 5, maxRows: rows)
        #expect(String(decoding: second.data, as: UTF8.self) == String(text.dropFirst(rows + 5).prefix(rows)))
        #expect(try await grid.log(job.id, from: Int64(rows)) == String(text.dropFirst(rows)))
        #expect(try await grid.log(job.id, from: 400, limit: 7) == String(text.dropFirst(400).prefix(7)))
        #expect(try await grid.log(job.id, from: Int64(pieces) - 1) == String(text.suffix(1)))
        #expect(try await grid.log(job.id, from: .max) == "")
        #expect(try await grid.log(job.id, from: 0, limit: 0) == "")
    }

    @Test(arguments: StoreBackend.allCases) func logReturnsAtMostLimitBytes(_ backend: StoreBackend) async throws {
        let grid = try await Grid(backend)
        let job = try await grid.running()
        for (offset, text) in [(0, "abc"), (3, "def"), (6, "ghi")] {
            try await grid.db.appendLog(job.ref, offset: Int64(offset), data: Data(text.utf8))
        }
        #expect(try await grid.log(job.id, from: 2, limit: 4) == "cdef")
        #expect(try await grid.log(job.id, from: 0, limit: 3) == "abc")
        #expect(try await grid.log(job.id, from: 7, limit: 100) == "hi")
        try await grid.expectLedgerOK()
    }

    // MARK: - The queue's change log (issue 17)

    @Test(arguments: StoreBackend.allCases) func queueSyncReadsTheWholeQueueFirstThenOnlyWhatChanged(_ backend: StoreBackend) async throws {
        let grid = try await Grid(backend)
        let a = try await grid.submit()
        let b = try await grid.submit()
        let first = try await grid.db.queueSync(after: nil)
        #expect(first.full)
        #expect(first.pending.map(\.job.id) == [a.id, b.id])
        #expect(first.gone.isEmpty)
        // Nothing changed: nothing to read.
        let idle = try await grid.db.queueSync(after: first.upTo)
        #expect(!idle.full)
        #expect(idle.pending.isEmpty && idle.gone.isEmpty)
        #expect(idle.upTo == first.upTo)
        // Pending reasons are the manager's own writes, not changes of the queue.
        try await grid.db.setPendingReasons([a.id: "waiting", b.id: "waiting"])
        #expect(try await grid.db.queueSync(after: first.upTo).pending.isEmpty)
        // A new job, a start and a cancel: each one shows up once, as pending or gone, and with its reason.
        let c = try await grid.submit()
        _ = try await grid.db.apply([Placement.Assignment(job: a.id, worker: "w1")], now: 2)
        _ = try await grid.db.requestCancel(b.id, by: grid.ada.id, now: 3)
        let delta = try await grid.db.queueSync(after: first.upTo)
        #expect(!delta.full)
        #expect(delta.pending.map(\.job.id) == [c.id])
        #expect(delta.pending.first?.reason == nil)
        #expect(delta.gone == [a.id, b.id].sorted())
        #expect(delta.upTo > first.upTo)
        // A run lost goes back to the queue: the change log says so.
        _ = try await grid.lose(JobRef(jobId: a.id, attempt: 1), now: 4)
        let back = try await grid.db.queueSync(after: delta.upTo)
        #expect(back.pending.map(\.job.id) == [a.id])
        #expect(back.gone.isEmpty)
    }

    @Test(arguments: StoreBackend.allCases) func aReaderBehindTheCutOfTheChangeLogReadsTheWholeQueue(_ backend: StoreBackend) async throws {
        let grid = try await Grid(backend)
        let a = try await grid.submit()
        let first = try await grid.db.queueSync(after: nil)
        let b = try await grid.submit()
        let second = try await grid.db.queueSync(after: first.upTo)
        #expect(second.pending.map(\.job.id) == [b.id])
        // Cut up to the second reader's position: a reader at the first position can no longer catch up from the log.
        try await grid.db.pruneQueueChanges(through: second.upTo)
        let stale = try await grid.db.queueSync(after: first.upTo)
        #expect(stale.full)
        #expect(stale.pending.map(\.job.id) == [a.id, b.id])
        // The reader at the cut still reads only what changed; a cut never moves back.
        #expect(try await !grid.db.queueSync(after: second.upTo).full)
        try await grid.db.pruneQueueChanges(through: first.upTo)
        #expect(try await grid.db.queueSync(after: first.upTo).full)
    }

    @Test(arguments: StoreBackend.allCases) func aLogCutToNothingStillLetsTheNextReaderCatchUp(_ backend: StoreBackend) async throws {
        let grid = try await Grid(backend)
        _ = try await grid.submit()
        let first = try await grid.db.queueSync(after: nil)
        try await grid.db.pruneQueueChanges(through: first.upTo)
        // A new leader reads the whole queue from an empty log; its next pass must not read it all again.
        let whole = try await grid.db.queueSync(after: nil)
        #expect(whole.full)
        #expect(whole.upTo >= first.upTo)
        let next = try await grid.db.queueSync(after: whole.upTo)
        #expect(!next.full)
        #expect(next.pending.isEmpty && next.gone.isEmpty)
        let b = try await grid.submit()
        #expect(try await grid.db.queueSync(after: whole.upTo).pending.map(\.job.id) == [b.id])
    }

    @Test(arguments: StoreBackend.allCases) func queueSyncCarriesWhatPlacementNeeds(_ backend: StoreBackend) async throws {
        let grid = try await Grid(backend)
        var spec = Grid.spec
        spec.priority = 10
        spec.minTier = .bwrap
        let job = try await grid.submit(spec, now: 7)
        let queued = try #require(try await grid.db.queueSync(after: nil).pending.first)
        #expect(queued.job.id == job.id)
        #expect(queued.job.owner == grid.ada.id)
        #expect(queued.job.priority == 10)
        #expect(queued.job.minTier == .bwrap)
        #expect(queued.job.request == Resources(cpus: 2, ramGb: 4))
        #expect(queued.job.submitted == 7)
    }

}
