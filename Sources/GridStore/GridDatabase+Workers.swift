import Foundation
public import GridCore

extension GridDatabase {
    /// What a worker says about itself when it registers.
    public struct WorkerRegistration: Hashable, Sendable {
        public var id: WorkerID
        public var name: String
        public var ownerId: UserID
        public var resources: Resources
        public var gpuNames: [String]
        public var tier: SandboxTier
        public var slots: Int
        public var host: String?
        public var port: Int?
        public var webPort: Int?
        /// Whether it takes other users' jobs (its sandbox report): kept so that a manager started again still knows
        /// which owners' workers could check a probation run (`Verification.remembersChecker`).
        public var acceptsOthers: Bool
        public init(
            id: WorkerID, name: String, ownerId: UserID, resources: Resources, gpuNames: [String], tier: SandboxTier, slots: Int,
            host: String?, port: Int?, webPort: Int?, acceptsOthers: Bool = true
        ) {
            self.id = id
            self.name = name
            self.ownerId = ownerId
            self.resources = resources
            self.gpuNames = gpuNames
            self.tier = tier
            self.slots = slots
            self.host = host
            self.port = port
            self.webPort = webPort
            self.acceptsOthers = acceptsOthers
        }
    }

    /// Whether a worker id is already known, and whose it is.
    public func workerOwner(_ id: WorkerID) async throws -> UserID? {
        try await read { db in try Int64.fetchOne(db, sql: "SELECT owner_id FROM workers WHERE id = ?", arguments: [id]) }
    }

    /// How many workers `owner` has on record, online or not.
    public func workerCount(owner: UserID) async throws -> Int {
        try await read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM workers WHERE owner_id = ?", arguments: [owner]) ?? 0 }
    }

    /// Records a worker as online with what it reported.
    public func registerWorker(_ w: WorkerRegistration, now: Double) async throws {
        let resources = String(decoding: try JSONEncoder().encode(w.resources), as: UTF8.self)
        let gpus = String(decoding: try JSONEncoder().encode(w.gpuNames), as: UTF8.self)
        try await write { db in
            try db.execute(
                sql: """
                    INSERT INTO workers (id, name, owner_id, resources, gpu_names, tier, slots, host, port, web_port, online, load,
                        first_seen, last_seen, online_since, accepts_others)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, 0, ?, ?, ?, ?)
                    ON CONFLICT(id) DO UPDATE SET name = excluded.name, owner_id = excluded.owner_id, resources = excluded.resources,
                        gpu_names = excluded.gpu_names, tier = excluded.tier, slots = excluded.slots, host = excluded.host,
                        port = excluded.port, web_port = excluded.web_port, online = 1, last_seen = excluded.last_seen,
                        online_since = excluded.online_since, accepts_others = excluded.accepts_others
                    """,
                arguments: [
                    w.id, w.name, w.ownerId, resources, gpus, w.tier.rawValue, w.slots, w.host, w.port, w.webPort, now, now, now,
                    w.acceptsOthers ? 1 : 0,
                ])
        }
    }

    public func workerHeartbeat(_ id: WorkerID, load: Double, now: Double) async throws {
        try await write { db in
            try db.execute(sql: "UPDATE workers SET load = ?, last_seen = ? WHERE id = ?", arguments: [load, now, id])
        }
    }

    public func setWorkerOffline(_ id: WorkerID, now: Double) async throws {
        try await write { db in
            try db.execute(sql: "UPDATE workers SET online = 0, online_since = NULL, last_seen = ? WHERE id = ?", arguments: [now, id])
        }
    }

    /// At manager start-up no worker is connected yet.
    public func markAllWorkersOffline() async throws {
        try await write { db in try db.execute(sql: "UPDATE workers SET online = 0, online_since = NULL") }
    }

    public func workers(onlineOnly: Bool = false) async throws -> [WorkerRecord] {
        try await read { db in
            try StoreRow.fetchAll(
                db,
                sql: "SELECT w.*, u.username AS owner_name, "
                    + "(SELECT COUNT(*) FROM worker_checks c WHERE c.worker_id = w.id AND c.outcome = 'agreed') AS verified, "
                    + "(SELECT COUNT(*) FROM worker_checks c WHERE c.worker_id = w.id AND c.outcome = 'contradicted') AS contradicted "
                    + "FROM workers w JOIN users u ON u.id = w.owner_id"
                    + (onlineOnly ? " WHERE w.online = 1" : "") + " ORDER BY w.online DESC, w.name"
            ).map(WorkerRecord.init(row:))
        }
    }

    /// Contributors by credits earned, with the CPU-hours their workers gave.
    public func leaderboard(limit: Int = 50) async throws -> [LeaderboardEntry] {
        try await read { db in
            try StoreRow.fetchAll(
                db,
                sql: """
                    SELECT u.username,
                        COALESCE((SELECT SUM(amount) FROM ledger l WHERE l.credit = 'user:' || u.id AND l.reason IN ('payment', 'escrow released')), 0) AS earned,
                        COALESCE((SELECT SUM(cpu_seconds_given) FROM workers w WHERE w.owner_id = u.id), 0) AS cpu,
                        COALESCE((SELECT SUM(jobs_done) FROM workers w WHERE w.owner_id = u.id), 0) AS jobs,
                        (SELECT COUNT(*) FROM worker_checks c JOIN workers w ON w.id = c.worker_id
                            WHERE w.owner_id = u.id AND c.outcome = 'agreed') AS verified,
                        (SELECT COUNT(*) FROM worker_checks c JOIN workers w ON w.id = c.worker_id
                            WHERE w.owner_id = u.id AND c.outcome = 'contradicted') AS contradicted
                    FROM users u
                    WHERE EXISTS (SELECT 1 FROM workers w WHERE w.owner_id = u.id)
                    ORDER BY earned DESC, cpu DESC, u.username LIMIT ?
                    """,
                arguments: [limit]
            ).map {
                LeaderboardEntry(
                    username: $0["username"], creditsEarned: $0["earned"], cpuHours: ($0["cpu"] as Double) / 3600, jobsRun: $0["jobs"],
                    verified: $0["verified"], contradicted: $0["contradicted"])
            }
        }
    }
}
