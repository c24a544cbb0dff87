import Foundation
import GridCore
import GridScheduler
import GridStore

/// Scheduler decisions per second, in process: one whole scheduling pass as the manager runs it — read the queue from
/// the store, plan (pure), commit the plan in one transaction, record pending reasons — over a synthetic load of
/// `workers` simulated workers and `jobs` queued jobs in a real SQLite file.
enum SchedulerBench {
    ///
    /// `owned`: every worker has an owner (one of the 20 users), the restricted ones take only their owner's jobs, and
    /// each owner's workers may take `OthersWindow.first` jobs of others at once: whose job it is then matters to
    /// placement, as on a real grid, and the planner cannot skip whole groups of alike jobs.
    static func run(
        workers workerCount: Int, jobs jobCount: Int, repeats: Int, owned: Bool = false, scratch: String, log: (String) -> Void
    ) async throws -> Figure {
        var figure = Figure(
            id: owned ? "scheduler.placements_owned" : "scheduler.placements",
            title: owned ? "Scheduler placements, workers with owners" : "Scheduler placements", unit: "placements/s", better: .higher,
            workload:
                "\(workerCount) simulated workers\(owned ? " of 20 owners (restricted ones take only their owner's jobs; each owner's workers at most \(OthersWindow.first) jobs of others at once)" : " without owners"), \(jobCount) queued jobs of mixed shapes of 20 users; a leader's pass (catch up from the store's change log + plan + commit in one transaction + changed pending reasons) onto free workers, after a first pass with every worker busy read the whole queue; \(repeats) runs on fresh databases"
        )
        var samples: [Double] = []
        var steps: [String: [Double]] = [:]
        var placed = 0
        for r in 0..<repeats {
            let pass = try await onePass(workers: workerCount, jobs: jobCount, seed: 42 &+ UInt64(r), owned: owned, dir: scratch + "/scheduler-\(r)")
            placed = pass.placed
            samples.append(pass.rate)
            for (k, v) in pass.steps { steps[k, default: []].append(v) }
            log(
                "  scheduler\(owned ? " (owned workers)" : "") run \(r + 1)/\(repeats): \(pass.placed) placed, \(pass.pending) pending in \(String(format: "%.2f", pass.seconds)) s "
                    + "(read \(ms(pass.steps["snapshot_s"] ?? 0)), plan \(ms(pass.steps["plan_s"] ?? 0)), commit \(ms(pass.steps["commit_s"] ?? 0)), "
                    + "reasons \(ms(pass.steps["pending_reasons_s"] ?? 0))); first pass (whole queue read, every reason written) \(String(format: "%.2f", pass.steps["first_pass_s"] ?? 0)) s")
        }
        figure.record(samples)
        for (k, v) in steps { figure.detail[k] = Stats.median(v) }
        figure.detail["placements_per_pass"] = Double(placed)
        if !owned { figure.setTarget(20_000, better: .higher, description: "at least 20,000 placements/s (issue 17)") }
        return figure
    }

    struct Pass {
        var placed: Int
        var pending: Int
        var seconds: Double
        var rate: Double { Double(placed) / seconds }
        var steps: [String: Double]
    }

    /// One whole pass over a fresh SQLite database in `dir` (removed after): `workers` simulated workers, `jobs` queued jobs.
    static func onePass(workers workerCount: Int, jobs jobCount: Int, seed: UInt64, owned: Bool = false, dir: String) async throws -> Pass {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        return try await onePass(db: try GridDatabase.open(path: dir + "/grid.sqlite"), workers: workerCount, jobs: jobCount, seed: seed, owned: owned)
    }

    /// Passes over `db`, which must be empty, loaded with `workers` simulated workers and `jobs` queued jobs, as the
    /// leading manager runs them. The first pass finds every worker busy: it reads the whole queue into the leader's copy
    /// (`PendingQueue`), places nothing, and writes every job's pending reason. Then the workers are free, and the next
    /// pass catches up from the queue's change log and fills them. That pass is the figure: it is what a leader does on
    /// every pass; the first one, once per term (its time is in the detail).
    static func onePass(db: GridDatabase, workers workerCount: Int, jobs jobCount: Int, seed: UInt64, owned: Bool = false) async throws -> Pass {
        var rng = SplitMix(seed: seed)
        var owners: [UserID] = []
        for u in 0..<20 {
            owners.append(try await db.createUser(username: "user\(u)", passwordHash: "-", startingCredits: 0, now: 0).id)
        }
        let workers = syntheticWorkers(workerCount, rng: &rng, owners: owned ? owners : nil)
        let jobs = syntheticJobs(jobCount, owners: owners, rng: &rng)
        try await db.insertSyntheticLoad(workers: workers, jobs: jobs, owner: owners[0], now: 1_000)

        var queue = PendingQueue()
        var position: Int64?
        func pass(workers: [Placement.Worker], now: Double) async throws -> Pass {
            let t0 = Stats.now()
            let sync = try await db.queueSync(after: position)
            queue.catchUp(with: sync)
            position = sync.upTo
            let usage = try await db.recentUsage(since: 0)
            let t1 = Stats.now()
            let plan = queue.plan(workers: workers, usage: usage, now: now)
            let t2 = Stats.now()
            let started = try await db.apply(plan.assignments, now: now)
            queue.committed(plan, started: started.map(\.id))
            let t3 = Stats.now()
            let changed = queue.changedReasons(plan.pending)
            try await db.setPendingReasons(changed)
            for (id, reason) in changed { queue.recorded(reason: reason, for: id) }
            let t4 = Stats.now()
            guard started.count == plan.assignments.count else {
                throw BenchError("the store committed \(started.count) of \(plan.assignments.count) planned placements")
            }
            return Pass(
                placed: started.count, pending: queue.count, seconds: t4 - t0,
                steps: [
                    "snapshot_s": t1 - t0, "plan_s": t2 - t1, "commit_s": t3 - t2, "pending_reasons_s": t4 - t3,
                    "plan_only_placements_per_s": Double(plan.assignments.count) / max(t2 - t1, 1e-9),
                    "changes_read": Double(sync.pending.count + sync.gone.count), "reasons_written": Double(changed.count),
                ])
        }
        let busy = workers.map { w in
            var w = w
            w.freeSlots = 0
            return w
        }
        let first = try await pass(workers: busy, now: 2_000)
        var pass = try await pass(workers: workers, now: 2_001)
        pass.steps["first_pass_s"] = first.seconds
        pass.steps["first_snapshot_s"] = first.steps["snapshot_s"]
        pass.steps["first_pending_reasons_s"] = first.steps["pending_reasons_s"]
        return pass
    }

    /// Placements/s across simulated workers × queued jobs: one fresh pass per point; a series per worker count.
    static func curve(workers: [Int], jobs: [Int], scratch: String, log: (String) -> Void) async throws -> Curve {
        var curve = Curve(
            id: "curve.placements", title: "Scheduler placements by queue length", unit: "placements/s", better: .higher, x: "queued jobs",
            workload:
                "a leader's pass (catch up from the change log + plan + commit + changed reasons) onto free workers, after a first pass with every worker busy read the whole queue; per point on a fresh SQLite database; a series per simulated worker count")
        for w in workers {
            var series = Curve.Series(name: "\(w) workers")
            for j in jobs {
                let pass = try await onePass(workers: w, jobs: j, seed: 42, dir: scratch + "/scheduler-curve")
                log(
                    "  placements, \(w) workers × \(j) jobs: \(pass.placed) placed, \(String(format: "%.0f", pass.rate))/s "
                        + "(first pass \(String(format: "%.2f", pass.steps["first_pass_s"] ?? 0)) s)")
                var detail = pass.steps
                detail["placed"] = Double(pass.placed)
                series.points.append(Curve.Point(x: Double(j), samples: [pass.rate], detail: detail))
            }
            curve.series.append(series)
        }
        return curve
    }

    static func ms(_ s: Double) -> String { String(format: "%.0f ms", s * 1000) }

    /// Workers of a campus: mostly laptops (2–8 CPUs), some lab machines, a few with a GPU; load 0…1. With `owners`,
    /// worker i is owners[i % count]'s; a restricted one takes only its owner's jobs; each owner's workers may take
    /// `OthersWindow.first` jobs of others (as a new owner's are).
    static func syntheticWorkers(_ n: Int, rng: inout SplitMix, owners: [UserID]? = nil) -> [Placement.Worker] {
        (0..<n).map { i in
            let cpus = [2, 4, 4, 8, 8, 16][Int(rng.next() % 6)]
            let gpus = rng.next() % 20 == 0 ? 1 : 0
            let total = Resources(cpus: cpus, ramGb: cpus * 2, gpus: gpus, gpuMemoryGb: gpus * 8)
            let tier: SandboxTier = rng.next() % 3 == 0 ? .restricted : .bwrap
            var worker = Placement.Worker(
                id: String(format: "w%05d", i), total: total, free: total, load: Double(rng.next() % 1000) / 1000, tier: tier, freeSlots: cpus)
            if let owners, !owners.isEmpty {
                worker.owner = owners[i % owners.count]
                worker.acceptsOthers = tier != .restricted
                worker.othersRoom = OthersWindow.first
            }
            return worker
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

