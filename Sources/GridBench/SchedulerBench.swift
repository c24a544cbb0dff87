import Foundation
import GridCore
import GridScheduler
import GridStore

/// Scheduler decisions per second, in process: one whole scheduling pass as the manager runs it — read the queue from
/// the store, plan (pure), commit the plan in one transaction, record pending reasons — over a synthetic load of
/// `workers` simulated workers and `jobs` queued jobs in a real SQLite file.
enum SchedulerBench {
    static func run(workers workerCount: Int, jobs jobCount: Int, repeats: Int, scratch: String, log: (String) -> Void) async throws -> Figure {
        var figure = Figure(
            id: "scheduler.placements", title: "Scheduler placements", unit: "placements/s", better: .higher,
            workload:
                "\(workerCount) simulated workers, \(jobCount) queued jobs of mixed shapes; one full pass (store read + plan + commit in one transaction); \(repeats) runs on fresh databases"
        )
        var samples: [Double] = []
        var steps: [String: [Double]] = [:]
        var placed = 0
        for r in 0..<repeats {
            let dir = scratch + "/scheduler-\(r)"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let db = try GridDatabase.open(path: dir + "/grid.sqlite")
            var rng = SplitMix(seed: 42 &+ UInt64(r))
            var owners: [UserID] = []
            for u in 0..<20 {
                owners.append(try await db.createUser(username: "user\(u)", passwordHash: "-", startingCredits: 0, now: 0).id)
            }
            let workers = syntheticWorkers(workerCount, rng: &rng)
            let jobs = syntheticJobs(jobCount, owners: owners, rng: &rng)
            try await db.insertSyntheticLoad(workers: workers, jobs: jobs, owner: owners[0], now: 1_000)

            let t0 = Stats.now()
            let queued = try await db.queuedJobs()
            let usage = try await db.recentUsage(since: 0)
            let t1 = Stats.now()
            let plan = Placement.plan(jobs: queued, workers: workers, usage: usage)
            let t2 = Stats.now()
            let started = try await db.apply(plan.assignments, now: 2_000)
            let t3 = Stats.now()
            try await db.setPendingReasons(plan.pending.mapValues(\.description))
            let t4 = Stats.now()
            guard started.count == plan.assignments.count else {
                throw BenchError("the store committed \(started.count) of \(plan.assignments.count) planned placements")
            }
            placed = started.count
            samples.append(Double(started.count) / (t4 - t0))
            steps["snapshot_s", default: []].append(t1 - t0)
            steps["plan_s", default: []].append(t2 - t1)
            steps["commit_s", default: []].append(t3 - t2)
            steps["pending_reasons_s", default: []].append(t4 - t3)
            steps["plan_only_placements_per_s", default: []].append(Double(plan.assignments.count) / (t2 - t1))
            log(
                "  scheduler run \(r + 1)/\(repeats): \(started.count) placed, \(plan.pending.count) pending in \(String(format: "%.2f", t4 - t0)) s "
                    + "(read \(ms(t1 - t0)), plan \(ms(t2 - t1)), commit \(ms(t3 - t2)), reasons \(ms(t4 - t3)))")
        }
        figure.record(samples)
        for (k, v) in steps { figure.detail[k] = Stats.median(v) }
        figure.detail["placements_per_pass"] = Double(placed)
        figure.setTarget(10_000, better: .higher, description: "at least 10,000 placements/s")
        return figure
    }

    static func ms(_ s: Double) -> String { String(format: "%.0f ms", s * 1000) }

    /// Workers of a campus: mostly laptops (2–8 CPUs), some lab machines, a few with a GPU; load 0…1.
    static func syntheticWorkers(_ n: Int, rng: inout SplitMix) -> [Placement.Worker] {
        (0..<n).map { i in
            let cpus = [2, 4, 4, 8, 8, 16][Int(rng.next() % 6)]
            let gpus = rng.next() % 20 == 0 ? 1 : 0
            let total = Resources(cpus: cpus, ramGb: cpus * 2, gpus: gpus, gpuMemoryGb: gpus * 8)
            let tier: SandboxTier = rng.next() % 3 == 0 ? .restricted : .bwrap
            return Placement.Worker(
                id: String(format: "w%05d", i), total: total, free: total, load: Double(rng.next() % 1000) / 1000, tier: tier, freeSlots: cpus)
        }
    }

    /// Queued jobs: mostly 1 CPU, some larger, a few GPU jobs and a few that fit nowhere (pending with a reason).
    static func syntheticJobs(_ n: Int, owners: [UserID], rng: inout SplitMix) -> [Placement.Job] {
        (0..<n).map { i in
            let cpus = [1, 1, 1, 1, 2, 2, 4, 32][Int(rng.next() % 8)]
            let gpus = rng.next() % 50 == 0 ? 1 : 0
            return Placement.Job(
                id: JobID(i + 1), owner: owners[Int(rng.next() % UInt64(owners.count))], priority: [0, 0, 0, 1, -1][Int(rng.next() % 5)],
                request: Resources(cpus: cpus, ramGb: Int(rng.next() % 4), gpus: gpus), minTier: rng.next() % 10 == 0 ? .bwrap : .restricted,
                submitted: Double(i))
        }
    }
}

