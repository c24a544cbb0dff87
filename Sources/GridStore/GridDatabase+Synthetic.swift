import Foundation
public import GridCore
public import GridScheduler

extension GridDatabase {
    /// Inserts `workers` as online workers of `owner` and `jobs` as pending jobs (no credit holds, no files), in one
    /// transaction. For the scheduler benchmark: it fills the store with a load no real sign-up path could build quickly.
    /// Never called by the manager.
    public func insertSyntheticLoad(workers: [Placement.Worker], jobs: [Placement.Job], owner: UserID, now: Double) async throws {
        let encoder = JSONEncoder()
        try await write { db in
            let insertWorker = """
                INSERT INTO workers (id, name, owner_id, resources, tier, slots, online, load, first_seen, last_seen, online_since)
                VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?)
                """
            for w in workers {
                let resources = String(decoding: try encoder.encode(w.total), as: UTF8.self)
                try db.execute(sql: insertWorker, arguments: [w.id, w.id, owner, resources, w.tier.rawValue, w.freeSlots, w.load, now, now, now])
            }
            let insertJob =
                "INSERT INTO jobs (id, owner_id, spec, script_name, state, hold, submitted_at, \(SchedulingColumns.names)) "
                + "VALUES (?, ?, ?, 'job.py', 'pending', 0, ?, \(SchedulingColumns.placeholders))"
            for j in jobs {
                let spec = JobSpec(
                    name: "synthetic-\(j.id)", cpus: j.request.cpus, ramGb: j.request.ramGb, gpus: j.request.gpus, priority: j.priority,
                    minTier: j.minTier)
                try db.execute(
                    sql: insertJob,
                    arguments: [j.id, j.owner, String(decoding: try encoder.encode(spec), as: UTF8.self), j.submitted] + SchedulingColumns.values(spec))
            }
        }
        try await backend.afterBulkInsert()
    }
}
