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
}
