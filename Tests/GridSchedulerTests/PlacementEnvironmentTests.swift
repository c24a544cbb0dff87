import GridCore
import GridScheduler
import Testing

/// Placement of jobs that declare Python packages: locality (a worker with the environment cached) and
/// `requires-python`.
@Suite("Placement and environments")
struct PlacementEnvironmentTests {
    func worker(_ id: WorkerID, load: Double = 0, envs: Set<String> = [], python: String? = "3.11.7", freeCPUs: Int = 8) -> Placement.Worker {
        let total = Resources(cpus: 8, ramGb: 16)
        return Placement.Worker(
            id: id, total: total, free: Resources(cpus: freeCPUs, ramGb: 16), load: load, tier: .bwrap, freeSlots: 4, envs: envs, python: python)
    }

    func job(_ id: JobID, env: String? = nil, requiresPython: String? = nil, cpus: Int = 1) -> Placement.Job {
        Placement.Job(
            id: id, owner: 1, priority: 0, request: Resources(cpus: cpus, ramGb: 1), minTier: .restricted, submitted: Double(id), env: env,
            requiresPython: requiresPython)
    }

    @Test func aWorkerWithTheEnvironmentCachedIsPreferredOverALessLoadedOne() {
        let plan = Placement.plan(jobs: [job(1, env: "abc")], workers: [worker("idle"), worker("busy", load: 0.5, envs: ["abc"])])
        #expect(plan.assignments.map(\.worker) == ["busy"])
    }

    @Test func withoutACachedCopyTheLeastLoadedWorkerIsUsed() {
        let plan = Placement.plan(jobs: [job(1, env: "abc")], workers: [worker("idle"), worker("busy", load: 0.5, envs: ["other"])])
        #expect(plan.assignments.map(\.worker) == ["idle"])
    }

    @Test func aCachedCopyOnAWorkerWithoutRoomDoesNotHoldTheJobBack() {
        let plan = Placement.plan(jobs: [job(1, env: "abc", cpus: 4)], workers: [worker("idle"), worker("full", envs: ["abc"], freeCPUs: 2)])
        #expect(plan.assignments.map(\.worker) == ["idle"])
    }

    @Test func jobsWithoutPackagesIgnoreCachedEnvironments() {
        let plan = Placement.plan(jobs: [job(1)], workers: [worker("idle"), worker("busy", load: 0.5, envs: ["abc"])])
        #expect(plan.assignments.map(\.worker) == ["idle"])
    }

    @Test func onlyAWorkerWhosePythonMeetsRequiresPythonIsUsed() {
        let plan = Placement.plan(
            jobs: [job(1, requiresPython: ">=3.12")], workers: [worker("old", python: "3.11.7"), worker("new", load: 0.9, python: "3.12.1")])
        #expect(plan.assignments.map(\.worker) == ["new"])
    }

    @Test func aJobNoWorkersPythonMeetsWaitsWithThatReason() {
        let plan = Placement.plan(jobs: [job(1, requiresPython: ">=3.13")], workers: [worker("old", python: "3.11.7")])
        #expect(plan.assignments.isEmpty)
        let reason = plan.pending[1]?.description ?? ""
        #expect(reason.contains("Python >=3.13") && reason.contains("3.11.7"), "\(reason)")
    }

    // MARK: - Scratch disk (`JobSpec.diskGb`): every run of a job is held to the job's limit, so it goes only to workers
    // that allow that much.

    func disky(_ id: WorkerID, allows gb: Double, load: Double = 0) -> Placement.Worker {
        var w = worker(id, load: load)
        w.maxJobDiskGb = gb
        return w
    }

    @Test func aJobGoesOnlyToAWorkerThatAllowsItsDisk() {
        var big = job(1)
        big.diskGb = 20
        let plan = Placement.plan(jobs: [big, job(2)], workers: [disky("small", allows: 10), disky("large", allows: 20, load: 0.9)])
        #expect(plan.assignments.first { $0.job == 1 }?.worker == "large")
        #expect(plan.assignments.first { $0.job == 2 }?.worker == "small")
    }

    @Test func aJobNoWorkerAllowsDiskForWaitsWithThatReason() {
        // A default job (10 GB) on workers that allow less, a fraction, or a NaN they claimed: none takes it.
        for allows in [2.0, 9.999, 0, -1, .nan, -.infinity] {
            let plan = Placement.plan(jobs: [job(1)], workers: [disky("w", allows: allows)])
            #expect(plan.assignments.isEmpty, "\(allows)")
            let reason = plan.pending[1]?.description ?? ""
            #expect(reason.contains("10 GB of scratch disk"), "\(reason)")
        }
        let plan = Placement.plan(jobs: [job(1)], workers: [disky("w", allows: 2)])
        #expect(plan.pending[1]?.description.contains("it allows 2 GB") == true, "\(plan.pending[1]?.description ?? "")")
        // Exactly enough is enough; no limit known is no limit.
        #expect(Placement.plan(jobs: [job(1)], workers: [disky("w", allows: 10)]).assignments.count == 1)
        #expect(Placement.plan(jobs: [job(1)], workers: [disky("w", allows: .infinity)]).assignments.count == 1)
    }

    /// A check run no worker allows the disk for is told so, not that it waits for a worker of another owner.
    @Test func aCheckRunNoWorkerAllowsDiskForIsToldWhy() {
        var check = job(1)
        check.diskGb = 20
        check.avoidOwners = [7]
        var w = disky("w", allows: 10)
        w.owner = 8
        let reason = Placement.plan(jobs: [check], workers: [w]).pending[1]?.description ?? ""
        #expect(reason.contains("20 GB of scratch disk"), "\(reason)")
    }

    /// Jobs alike but for their disk are two shapes: one that found no worker does not hold back the other.
    @Test func aJobThatAsksForLessDiskIsNotHeldBackByOneThatAsksForMore() {
        var big = job(1)
        big.diskGb = 100
        let plan = Placement.plan(jobs: [big, job(2), job(3)], workers: [disky("w", allows: 10)])
        #expect(plan.assignments.map(\.job).sorted() == [2, 3])
        #expect(plan.pending[1] != nil)
    }

    /// An older worker (no `job_disk_bytes` in its `REGISTER`) stops every job at its own limit: it is given only jobs
    /// that ask for the default, so a job asking for less (whose check run elsewhere stops at that) or more never runs
    /// there under another limit than its own.
    @Test func anOlderWorkerThatAppliesItsOwnDiskLimitGetsOnlyJobsThatAskForTheDefault() {
        let old = Placement.Worker.jobDisk(registered: nil)
        #expect(old.maxJobDiskGb == Double(JobSpec.defaultDiskGb) && !old.enforcesJobDisk)
        var w = worker("old")
        (w.maxJobDiskGb, w.enforcesJobDisk) = old
        var small = job(1)
        small.diskGb = 1
        var large = job(2)
        large.diskGb = 20
        let plan = Placement.plan(jobs: [small, large, job(3)], workers: [w])
        #expect(plan.assignments.map(\.job) == [3])
        for id: JobID in [1, 2] {
            let reason = plan.pending[id]?.description ?? ""
            #expect(reason.contains("an older worker") && reason.contains("default 10 GB"), "\(reason)")
        }
        // A newer worker beside it takes the small job; the fingerprint tells the two kinds apart.
        var new = worker("new", load: 0.9)
        (new.maxJobDiskGb, new.enforcesJobDisk) = Placement.Worker.jobDisk(registered: 10 << 30)
        #expect(Placement.plan(jobs: [small], workers: [w, new]).assignments.map(\.worker) == ["new"])
        var same = w
        same.enforcesJobDisk = true
        #expect(Placement.fingerprint([w]) != Placement.fingerprint([same]))
    }

    /// `job_disk_bytes` is a claim: no value traps, a negative one lets no job in, a huge one any (its runs are still
    /// stopped at each job's own limit).
    @Test func aForgedDiskLimitInRegisterCannotTrap() {
        for forged: Int64 in [.min, -1, 0] {
            let d = Placement.Worker.jobDisk(registered: forged)
            #expect(d.maxJobDiskGb == 0 && d.enforcesJobDisk)
            #expect(Placement.plan(jobs: [job(1)], workers: [disky("w", allows: d.maxJobDiskGb)]).assignments.isEmpty)
        }
        let most = Placement.Worker.jobDisk(registered: .max)
        #expect(most.maxJobDiskGb.isFinite && most.maxJobDiskGb > 8e9)
        var huge = job(1)
        huge.diskGb = JobSpec.limits.diskGb.upperBound
        #expect(Placement.plan(jobs: [huge], workers: [disky("w", allows: most.maxJobDiskGb)]).assignments.count == 1)
        #expect(Placement.Worker.jobDisk(registered: 1 << 30).maxJobDiskGb == 1)
    }
}
