import Foundation
import GridClient
import GridCore
import GridSandbox
import GridStore

#if canImport(Glibc)
import Glibc
#endif

/// Issue 16's figures: the PostgreSQL store beside SQLite (placements/s, an empty job's submit → start), and failover
/// time — from SIGKILL of the leading manager to the first job the next leader places (median of the runs). PostgreSQL
/// is the project's own private cluster (`scripts/postgres`), a fresh database for each figure.
enum HABench {
    /// `scripts/postgres start DIR NAME`: the URL of a fresh database on the bench's cluster (started if needed).
    static func freshDatabase(repository: String?, name: String) throws -> String {
        guard let repository, FileManager.default.isExecutableFile(atPath: repository + "/scripts/postgres") else {
            throw BenchError("scripts/postgres not found (run the bench from the repository)")
        }
        let dir = NSTemporaryDirectory() + "campusgrid-postgres-bench-\(getuid())"
        let r = try Shell.run(repository + "/scripts/postgres", ["start", dir, name], timeout: 120)
        let url = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        guard r.status == 0, url.hasPrefix("postgres://") else { throw BenchError("scripts/postgres start failed: \(r.stderr.suffix(400))") }
        return url
    }

    static var runTag: String { "b\(getpid())_\(Int(Date().timeIntervalSince1970) % 100_000)" }

    /// One scheduling pass over the same synthetic load on PostgreSQL and on SQLite; the ratio is PostgreSQL ÷ SQLite.
    static func placements(
        workers: Int, jobs: Int, repeats: Int, repository: String?, scratch: String, log: (String) -> Void
    ) async throws -> Figure {
        var figure = Figure(
            id: "ha.placements_postgres", title: "Scheduler placements on PostgreSQL", unit: "placements/s", better: .higher,
            workload: "\(workers) simulated workers, \(jobs) queued jobs; one full pass (read + plan + commit) per run, a fresh database each; \(repeats) runs")
        var pg: [Double] = []
        var lite: [Double] = []
        let tag = runTag
        for r in 0..<repeats {
            let url = try freshDatabase(repository: repository, name: "\(tag)_p\(r)")
            let pass = try await SchedulerBench.onePass(db: try await GridDatabase.open(url: url), workers: workers, jobs: jobs, seed: 42 &+ UInt64(r))
            pg.append(pass.rate)
            let dir = scratch + "/ha-sqlite-\(r)"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let local = try await SchedulerBench.onePass(db: try GridDatabase.open(path: dir + "/grid.sqlite"), workers: workers, jobs: jobs, seed: 42 &+ UInt64(r))
            lite.append(local.rate)
            log("  placements run \(r + 1)/\(repeats): PostgreSQL \(Int(pass.rate))/s, SQLite \(Int(local.rate))/s")
        }
        figure.record(pg)
        figure.add(Reference(name: "the same pass on SQLite (the default store)", samples: lite))
        return figure
    }

    /// An empty job's submit → start on a grid whose manager stores in PostgreSQL, against the same grid on SQLite.
    static func submitToStart(
        binary: String, count: Int, repository: String?, python: String, scratch: String, log: (String) -> Void
    ) async throws -> Figure {
        let url = try freshDatabase(repository: repository, name: "\(runTag)_s")
        let pgGrid = try await LocalGrid.start(binary: binary, workers: 2, managerEnvironment: ["CAMPUSGRID_DATABASE": url])
        var figures: [Figure]
        do {
            figures = try await JobBench.latency(grid: pgGrid, count: count, python: python, scratch: scratch + "/ha-jobs", log: log)
        } catch {
            pgGrid.stop()
            throw error
        }
        pgGrid.stop()
        let liteGrid = try await LocalGrid.start(binary: binary, workers: 2)
        defer { liteGrid.stop() }
        let lite = try await JobBench.latency(grid: liteGrid, count: count, python: python, scratch: scratch + "/ha-jobs", log: log)
        guard var figure = figures.first(where: { $0.id == "job.submit_to_start" }), let reference = lite.first(where: { $0.id == "job.submit_to_start" }) else {
            throw BenchError("no submit → start figure")
        }
        figure.id = "ha.submit_to_start_postgres"
        figure.title = "Empty job submit → start, PostgreSQL store"
        figure.target = nil
        figure.workload = "\(count) empty jobs one at a time, a manager on PostgreSQL + 2 workers; the reference is the same on SQLite"
        figure.references = []
        figure.add(Reference(name: "the same grid on SQLite", samples: reference.samples))
        return figure
    }

    /// Two managers on one PostgreSQL database and one worker listing both. Each run: SIGKILL the leader, then submit
    /// an empty job to the other manager (retrying while it still follows) and take the time from the kill to the
    /// job's start by the manager's clock; the killed manager comes back as a follower on its old ports.
    static func failover(binary: String, runs: Int, leaderLease: Double, repository: String?, log: (String) -> Void) async throws -> Figure {
        var figure = Figure(
            id: "ha.failover", title: "Failover: leader SIGKILLed → first job placed by the next", unit: "s", better: .lower,
            workload: "2 managers on one PostgreSQL database (leader lease \(leaderLease) s), 1 worker listing both; \(runs) kills")
        let url = try freshDatabase(repository: repository, name: "\(runTag)_f")
        let grid = try await HAGrid.start(binary: binary, managers: 2, databaseURL: url, leaderLease: leaderLease)
        defer { grid.stop() }
        var samples: [Double] = []
        for run in 0..<runs {
            let leader = try await grid.leader(timeout: 30)
            let follower = (leader + 1) % grid.managers.count
            // A job through the current leader first: the worker is on it and the grid works.
            _ = try await JobBench.runOne(client: grid.client(leader))
            let killedAt = Date().timeIntervalSince1970
            grid.kill(leader)
            let job = try await grid.submitRetrying(to: follower, JobBench.submitRequest(), timeout: 60)
            let deadline = Stats.now() + 60
            var started: Double?
            while Stats.now() < deadline, started == nil {
                started = try? await grid.client(follower).job(job.id).startedAt
                if started == nil { try await Task.sleep(for: .milliseconds(20)) }
            }
            guard let started else { throw BenchError("no job started within 60 s of killing the leader\n\(grid.logs)") }
            samples.append(started - killedAt)
            log(String(format: "  failover %d/%d: %.2f s", run + 1, runs, started - killedAt))
            try await grid.restart(leader)
        }
        figure.record(samples)
        figure.setTarget(10, better: .lower, description: "a new leader places work within 10 s")
        return figure
    }
}
