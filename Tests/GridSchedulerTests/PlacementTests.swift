import GridCore
import GridScheduler
import Testing

/// A worker with `cpus` CPUs and `ramGb` of RAM, all free unless `used` says otherwise.
private func worker(
    _ id: WorkerID, cpus: Int = 8, ramGb: Int = 16, gpus: Int = 0, gpuMemoryGb: Int = 0, used: Resources = .zero, load: Double = 0,
    tier: SandboxTier = .bwrap, freeSlots: Int = 4
) -> Placement.Worker {
    let total = Resources(cpus: cpus, ramGb: ramGb, gpus: gpus, gpuMemoryGb: gpuMemoryGb)
    return Placement.Worker(id: id, total: total, free: total - used, load: load, tier: tier, freeSlots: freeSlots)
}

private func job(
    _ id: JobID, owner: UserID = 1, priority: Int = 0, cpus: Int = 1, ramGb: Int = 1, gpus: Int = 0, gpuMemoryGb: Int = 0,
    minTier: SandboxTier = .restricted, submitted: Double? = nil
) -> Placement.Job {
    Placement.Job(
        id: id, owner: owner, priority: priority, request: Resources(cpus: cpus, ramGb: ramGb, gpus: gpus, gpuMemoryGb: gpuMemoryGb),
        minTier: minTier, submitted: submitted ?? Double(id))
}

/// The worker each job went to.
private func placed(_ plan: Placement.Plan) -> [JobID: WorkerID] {
    Dictionary(uniqueKeysWithValues: plan.assignments.map { ($0.job, $0.worker) })
}

@Suite("Placement")
struct PlacementTests {
    // MARK: Fit

    @Test func aJobGoesToAWorkerThatCoversIt() {
        let plan = Placement.plan(jobs: [job(1, cpus: 4, ramGb: 8)], workers: [worker("a", cpus: 4, ramGb: 8)])
        #expect(placed(plan) == [1: "a"])
        #expect(plan.pending.isEmpty)
    }

    @Test func onlyWorkersWhoseFreeResourcesCoverTheJobAreUsed() {
        let workers = [
            worker("small", cpus: 2, ramGb: 64),
            worker("busy", cpus: 16, ramGb: 64, used: Resources(cpus: 14, ramGb: 0)),
            worker("lowram", cpus: 16, ramGb: 4),
            worker("fits", cpus: 16, ramGb: 64, load: 0.9),
        ]
        #expect(placed(Placement.plan(jobs: [job(1, cpus: 4, ramGb: 8)], workers: workers)) == [1: "fits"])
    }

    @Test func gpuJobsGoOnlyToWorkersWithEnoughGpusAndGpuMemory() {
        let workers = [
            worker("nogpu", cpus: 32, ramGb: 128),
            worker("smallgpu", gpus: 1, gpuMemoryGb: 8),
            worker("biggpu", gpus: 1, gpuMemoryGb: 24, load: 0.8),
        ]
        #expect(placed(Placement.plan(jobs: [job(1, gpus: 1, gpuMemoryGb: 16)], workers: workers)) == [1: "biggpu"])
    }

    @Test func tiesGoByTheManagersPickNotByTheWorkersId() {
        var aaa = worker("aaa")
        var zzz = worker("zzz")
        aaa.tieBreak = 900
        zzz.tieBreak = 100
        #expect(placed(Placement.plan(jobs: [job(1)], workers: [aaa, zzz]))[1] == "zzz", "an id chosen to sort first wins nothing")
        aaa.tieBreak = 50
        #expect(placed(Placement.plan(jobs: [job(1)], workers: [aaa, zzz]))[1] == "aaa")
    }

    @Test func theLeastLoadedWorkerWins() {
        let workers = [worker("a", load: 0.5), worker("b", load: 0.1), worker("c", load: 0.3)]
        #expect(placed(Placement.plan(jobs: [job(1)], workers: workers)) == [1: "b"])
    }

    @Test func cpusAlreadyGivenOutCountAsLoad() {
        let workers = [worker("half", cpus: 8, used: Resources(cpus: 4, ramGb: 0)), worker("idle", cpus: 8, load: 0.2)]
        #expect(placed(Placement.plan(jobs: [job(1)], workers: workers)) == [1: "idle"])
    }

    @Test func equalLoadIsBrokenByWorkerId() {
        let workers = [worker("m"), worker("b"), worker("z")]
        #expect(placed(Placement.plan(jobs: [job(1)], workers: workers)) == [1: "b"])
    }

    @Test func aWorkerBelowTheJobsTierIsNotUsed() {
        let workers = [worker("weak", tier: .restricted), worker("strong", load: 0.9, tier: .oci)]
        #expect(placed(Placement.plan(jobs: [job(1, minTier: .bwrap)], workers: workers)) == [1: "strong"])
    }

    @Test func aStrongerTierThanRequiredIsFine() {
        #expect(placed(Placement.plan(jobs: [job(1, minTier: .restricted)], workers: [worker("w", tier: .oci)])) == [1: "w"])
    }

    @Test func aWorkerWithoutFreeSlotsIsNotUsed() {
        let workers = [worker("full", load: 0, freeSlots: 0), worker("open", load: 0.9, freeSlots: 1)]
        #expect(placed(Placement.plan(jobs: [job(1)], workers: workers)) == [1: "open"])
    }

    // MARK: Capacity across the plan

    @Test func capacityIsDeductedSoTwoJobsDoNotOvercommitAWorker() {
        let workers = [worker("a", cpus: 4, ramGb: 8, load: 0), worker("b", cpus: 4, ramGb: 8, load: 0.5)]
        let plan = Placement.plan(jobs: [job(1, cpus: 3), job(2, cpus: 3)], workers: workers)
        #expect(placed(plan) == [1: "a", 2: "b"])
    }

    @Test func aJobThatNoLongerFitsAfterEarlierAssignmentsWaits() {
        let plan = Placement.plan(jobs: [job(1, cpus: 3), job(2, cpus: 3)], workers: [worker("a", cpus: 4)])
        #expect(placed(plan) == [1: "a"])
        #expect(plan.pending == [2: .waitingForCapacity])
    }

    @Test func freeSlotsAreDeductedAcrossThePlan() {
        let plan = Placement.plan(jobs: [job(1), job(2), job(3)], workers: [worker("a", cpus: 64, freeSlots: 2)])
        #expect(placed(plan) == [1: "a", 2: "a"])
        #expect(plan.pending == [3: .waitingForCapacity])
    }

    @Test func smallJobsStillFillRoomLeftAfterABigOneWaits() {
        let plan = Placement.plan(jobs: [job(1, cpus: 2), job(2, cpus: 8), job(3, cpus: 2)], workers: [worker("a", cpus: 8)])
        #expect(placed(plan) == [1: "a", 3: "a"])
        #expect(plan.pending == [2: .waitingForCapacity])
    }

    @Test func neverAssignsMoreThanAnyWorkerHas() {
        let workers = [worker("a", cpus: 6, ramGb: 10, freeSlots: 3), worker("b", cpus: 3, ramGb: 30, freeSlots: 5)]
        let jobs = (1...20).map { job(JobID($0), owner: UserID($0 % 3), cpus: 1 + $0 % 3, ramGb: 1 + $0 % 4) }
        let plan = Placement.plan(jobs: jobs, workers: workers)
        for w in workers {
            let mine = plan.assignments.filter { $0.worker == w.id }.map { a in jobs.first { $0.id == a.job }!.request }
            #expect(mine.count <= w.freeSlots)
            #expect(w.free.covers(mine.reduce(Resources.zero, +)))
        }
        #expect(plan.assignments.count + plan.pending.count == jobs.count)
    }

    // MARK: Order

    @Test func higherPriorityGoesFirst() {
        let plan = Placement.plan(
            jobs: [job(1, priority: 0), job(2, priority: 5), job(3, priority: -5)], workers: [worker("a", freeSlots: 1)])
        #expect(placed(plan) == [2: "a"])
        #expect(plan.pending == [1: .waitingForCapacity, 3: .waitingForCapacity])
    }

    @Test func theUserWithLessUsageGoesFirstWithinAPriority() {
        let jobs = [job(1, owner: 10), job(2, owner: 20)]
        let plan = Placement.plan(jobs: jobs, workers: [worker("a", freeSlots: 1)], usage: [10: 50, 20: 5])
        #expect(placed(plan) == [2: "a"])
    }

    @Test func aUserWithNoRecordedUsageGoesBeforeOneWithSome() {
        let jobs = [job(1, owner: 10), job(2, owner: 20)]
        let plan = Placement.plan(jobs: jobs, workers: [worker("a", freeSlots: 1)], usage: [10: 1])
        #expect(placed(plan) == [2: "a"])
    }

    @Test func priorityOutranksFairShare() {
        let jobs = [job(1, owner: 10, priority: 1), job(2, owner: 20, priority: 0)]
        let plan = Placement.plan(jobs: jobs, workers: [worker("a", freeSlots: 1)], usage: [10: 1000, 20: 0])
        #expect(placed(plan) == [1: "a"])
    }

    @Test func olderJobsGoFirstWhenPriorityAndUsageAreEqual() {
        let jobs = [job(1, submitted: 30), job(2, submitted: 10), job(3, submitted: 20)]
        let plan = Placement.plan(jobs: jobs, workers: [worker("a", freeSlots: 1)])
        #expect(placed(plan) == [2: "a"])
    }

    @Test func theFirstJobInOrderGetsTheLeastLoadedWorker() {
        let jobs = [job(1, priority: 0), job(2, priority: 9)]
        let workers = [worker("busy", load: 0.9, freeSlots: 1), worker("idle", load: 0, freeSlots: 1)]
        #expect(placed(Placement.plan(jobs: jobs, workers: workers)) == [2: "idle", 1: "busy"])
    }

    // MARK: Pending reasons

    @Test func withNoWorkersTheReasonIsNoWorkerOnline() {
        let plan = Placement.plan(jobs: [job(1), job(2)], workers: [])
        #expect(plan.assignments.isEmpty)
        #expect(plan.pending == [1: .noWorkerOnline, 2: .noWorkerOnline])
    }

    @Test func aJobNoWorkerCouldEverRunNamesTheUnmetRequirement() {
        let plan = Placement.plan(jobs: [job(1, cpus: 4)], workers: [worker("a", cpus: 2)])
        #expect(plan.pending == [1: .noWorkerFits(unmet: ["4 CPUs"])])
        #expect(plan.pending[1]?.description == "no online worker has 4 CPUs")
    }

    @Test func theReasonNamesWhatTheClosestWorkerLacks() {
        let workers = [worker("tiny", cpus: 1, ramGb: 1), worker("near", cpus: 16, ramGb: 4)]
        let plan = Placement.plan(jobs: [job(1, cpus: 8, ramGb: 32)], workers: workers)
        #expect(plan.pending == [1: .noWorkerFits(unmet: ["32 GB RAM"])])
    }

    @Test func aTooWeakTierIsNamedAsTheUnmetRequirement() {
        let plan = Placement.plan(jobs: [job(1, minTier: .oci)], workers: [worker("a", tier: .bwrap)])
        #expect(plan.pending == [1: .noWorkerFits(unmet: ["sandbox tier oci or stronger"])])
    }

    @Test func missingGpusAreNamed() {
        let plan = Placement.plan(jobs: [job(1, gpus: 2)], workers: [worker("a", gpus: 1)])
        #expect(plan.pending == [1: .noWorkerFits(unmet: ["2 GPUs"])])
    }

    @Test func aJobThatFitsABusyWorkerIsWaitingForCapacity() {
        let plan = Placement.plan(jobs: [job(1, cpus: 4)], workers: [worker("a", cpus: 8, used: Resources(cpus: 6, ramGb: 0))])
        #expect(plan.pending == [1: .waitingForCapacity])
    }

    @Test func aJobThatFitsAWorkerWithoutFreeSlotsIsWaitingForCapacity() {
        let plan = Placement.plan(jobs: [job(1)], workers: [worker("a", freeSlots: 0)])
        #expect(plan.pending == [1: .waitingForCapacity])
    }

    @Test func reasonsReadAsSentences() {
        #expect(Placement.PendingReason.noWorkerOnline.description == "no worker is online")
        #expect(Placement.PendingReason.noWorkerFits(unmet: ["4 CPUs", "1 GPU"]).description == "no online worker has 4 CPUs, 1 GPU")
        #expect(Placement.PendingReason.waitingForCapacity.description == "waiting for a worker with enough free resources")
    }

    @Test func anEmptyQueuePlansNothing() {
        let plan = Placement.plan(jobs: [], workers: [worker("a")])
        #expect(plan.assignments.isEmpty)
        #expect(plan.pending.isEmpty)
    }
}

@Suite("Placement avoids workers that rejected a job")
struct PlacementAvoidTests {
    static func worker(_ id: String, load: Double) -> Placement.Worker {
        Placement.Worker(
            id: id, total: Resources(cpus: 4, ramGb: 8), free: Resources(cpus: 4, ramGb: 8), load: load, tier: .restricted, freeSlots: 4)
    }

    @Test func aJobIsNotPlacedOnAWorkerItAvoidsEvenIfItIsTheLeastLoaded() {
        let job = Placement.Job(
            id: 1, owner: 1, priority: 0, request: Resources(cpus: 1, ramGb: 1), minTier: .restricted, submitted: 0, avoid: ["idle"])
        let plan = Placement.plan(jobs: [job], workers: [Self.worker("idle", load: 0), Self.worker("busy", load: 0.9)])
        #expect(plan.assignments.map(\.worker) == ["busy"])
    }

    @Test func aJobThatOnlyAvoidedWorkersFitWaitsAndSaysWhy() {
        let job = Placement.Job(
            id: 1, owner: 1, priority: 0, request: Resources(cpus: 1, ramGb: 1), minTier: .restricted, submitted: 0, avoid: ["only"])
        let plan = Placement.plan(jobs: [job], workers: [Self.worker("only", load: 0)])
        #expect(plan.assignments.isEmpty)
        #expect(plan.pending[1]?.description.contains("other than the ones that could not start it") == true)
    }

}

/// Issue 12: a worker without a real sandbox runs only its owner's jobs unless started with `--allow-unsandboxed`.
@Suite("Placement: unsandboxed workers")
struct PlacementAdmissionTests {
    private func restricted(_ id: WorkerID, owner: UserID, acceptsOthers: Bool = false) -> Placement.Worker {
        var w = worker(id, tier: .restricted)
        w.owner = owner
        w.acceptsOthers = acceptsOthers
        return w
    }

    @Test func aRestrictedWorkerWithoutAllowUnsandboxedRunsOnlyItsOwnersJobs() {
        let plan = Placement.plan(
            jobs: [job(1, owner: 7, minTier: .restricted), job(2, owner: 8, minTier: .restricted)], workers: [restricted("laptop", owner: 7)])
        #expect(placed(plan) == [1: "laptop"])
        #expect(plan.pending[2] == .onlyUnsandboxedWorkers)
        #expect(plan.pending[2]?.description.contains("--allow-unsandboxed") == true)
    }

    @Test func anotherOwnersJobGoesToASandboxedWorkerInstead() {
        let plan = Placement.plan(
            jobs: [job(1, owner: 8, minTier: .restricted)], workers: [restricted("laptop", owner: 7), worker("lab", load: 0.9, tier: .bwrap)])
        #expect(placed(plan) == [1: "lab"])
    }

    @Test func allowUnsandboxedLetsARestrictedWorkerTakeEveryonesJobs() {
        let plan = Placement.plan(
            jobs: [job(1, owner: 8, minTier: .restricted)], workers: [restricted("laptop", owner: 7, acceptsOthers: true)])
        #expect(placed(plan) == [1: "laptop"])
    }

    @Test func aRefusedOwnerDoesNotBlockTheSameShapeFromAnotherOwner() {
        // Same request shape, two owners: the first cannot use the laptop, the second (its owner) can.
        let plan = Placement.plan(
            jobs: [job(1, owner: 8, minTier: .restricted), job(2, owner: 7, minTier: .restricted)], workers: [restricted("laptop", owner: 7)])
        #expect(placed(plan) == [2: "laptop"])
        #expect(plan.pending[1] == .onlyUnsandboxedWorkers)
    }

    @Test func theDefaultMinimumTierBwrapSkipsRestrictedWorkersEvenForTheirOwner() {
        let plan = Placement.plan(jobs: [job(1, owner: 7, minTier: .bwrap)], workers: [restricted("laptop", owner: 7)])
        #expect(plan.assignments.isEmpty)
        #expect(plan.pending[1] == .noWorkerFits(unmet: ["sandbox tier bwrap or stronger"]))
    }
}

@Suite("Placement.Verification")
struct PlacementVerificationTests {
    static func worker(_ id: String, owner: UserID, quarantined: Bool = false) -> Placement.Worker {
        let total = Resources(cpus: 4, ramGb: 8, gpus: 0)
        return Placement.Worker(
            id: id, total: total, free: total, load: 0, tier: .bwrap, freeSlots: 2, owner: owner, quarantined: quarantined)
    }

    static func job(_ id: JobID, owner: UserID, avoidOwners: Set<UserID> = []) -> Placement.Job {
        Placement.Job(
            id: id, owner: owner, priority: 0, request: Resources(cpus: 1, ramGb: 1, gpus: 0), minTier: .bwrap, submitted: Double(id),
            avoidOwners: avoidOwners)
    }

    @Test func aCheckRunNeverGoesToAWorkerOfAnOwnerItMustAvoid() {
        // The least-loaded worker belongs to the first run's owner (10); the check goes to owner 20's.
        var busy = Self.worker("b", owner: 20)
        busy.load = 0.9
        let plan = Placement.plan(jobs: [Self.job(1, owner: 1, avoidOwners: [10])], workers: [Self.worker("a", owner: 10), busy])
        #expect(plan.assignments.map(\.worker) == ["b"])
    }

    @Test func aThirdRunAvoidsBothEarlierOwnersAndWaitsWhenNoOtherOwnerIsOnline() {
        let workers = [Self.worker("a", owner: 10), Self.worker("b", owner: 20)]
        let plan = Placement.plan(jobs: [Self.job(1, owner: 1, avoidOwners: [10, 20])], workers: workers)
        #expect(plan.assignments.isEmpty)
        #expect(plan.pending[1] == .waitingForAnotherOwner)
        let more = Placement.plan(jobs: [Self.job(1, owner: 1, avoidOwners: [10, 20])], workers: workers + [Self.worker("c", owner: 30)])
        #expect(more.assignments.map(\.worker) == ["c"])
    }

    @Test func aQuarantinedWorkerRunsOnlyItsOwnersJobs() {
        let workers = [Self.worker("q", owner: 10, quarantined: true)]
        let plan = Placement.plan(jobs: [Self.job(1, owner: 1), Self.job(2, owner: 10)], workers: workers)
        #expect(plan.assignments.map(\.job) == [2])
        #expect(plan.assignments.map(\.worker) == ["q"])
        #expect(plan.pending[1] == .onlyQuarantinedWorkers)
    }
}

/// The one fit rule, shared by the planner and the store's re-check of a plan (`Placement.hasRoom`).
@Suite struct FitRuleTests {
    let need = Resources(cpus: 2, ramGb: 4)

    @Test func roomIsAFreeSlotAStrongEnoughTierAndResourcesThatCoverTheJob() {
        #expect(Placement.hasRoom(tier: .bwrap, free: Resources(cpus: 2, ramGb: 4), freeSlots: 1, for: .bwrap, need))
        #expect(Placement.hasRoom(tier: .oci, free: Resources(cpus: 8, ramGb: 16), freeSlots: 3, for: .restricted, need))
    }

    @Test(arguments: [0, -1, Int.min])
    func noFreeSlotIsNoRoom(_ slots: Int) {
        #expect(!Placement.hasRoom(tier: .oci, free: Resources(cpus: 64, ramGb: 256), freeSlots: slots, for: .restricted, need))
    }

    @Test func aWeakerTierOrResourcesOneShortAreNoRoom() {
        #expect(!Placement.hasRoom(tier: .restricted, free: Resources(cpus: 8, ramGb: 16), freeSlots: 1, for: .bwrap, need))
        #expect(!Placement.hasRoom(tier: .bwrap, free: Resources(cpus: 1, ramGb: 16), freeSlots: 1, for: .bwrap, need))
        #expect(!Placement.hasRoom(tier: .bwrap, free: Resources(cpus: 8, ramGb: 3), freeSlots: 1, for: .bwrap, need))
    }
}
