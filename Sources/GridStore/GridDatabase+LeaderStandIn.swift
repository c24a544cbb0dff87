import Foundation
import GRDB
import GridCore

// STAND-IN (issue 16, leadership branch h16l): a SQLite-only implementation of the store's leadership contract, so the
// leadership half can be built and tested before the store branch (h16s) lands. The coordinator deletes this file at
// the merge in favour of the store branch's real one. Nothing else under Sources/GridStore depends on it.
//
// Fencing here is real but coarse: `fenced(epoch:)` opens a second connection pool on the same file whose writer
// connection carries TEMP triggers on every table; each insert, update or delete first checks, inside the same write
// transaction (SQLite serialises writers), that the lease row's epoch is still `epoch`, else aborts the statement
// (and with it the transaction). The error surfaces as a `DatabaseError` whose message contains "campusgrid: deposed"
// rather than as `GridStoreError.deposed`; callers treat both the same (GridManager's `Deposition.isDeposed`).

public enum GridStoreError: Error, Equatable, Sendable { case deposed(current: Int64?) }

extension GridDatabase {
    static let leaseTableSQL = """
        CREATE TABLE IF NOT EXISTS leader_lease (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            holder TEXT NOT NULL,
            epoch INTEGER NOT NULL,
            expires_at REAL,
            worker_address TEXT NOT NULL,
            api_url TEXT NOT NULL
        )
        """

    /// The current lease row, or nil when no manager ever led.
    public func leaderLease() async throws -> LeaderLease? {
        try await writer.write { db in
            try db.execute(sql: Self.leaseTableSQL)
            return try Self.readLease(db)
        }
    }

    static func readLease(_ db: Database) throws -> LeaderLease? {
        guard let row = try Row.fetchOne(db, sql: "SELECT * FROM leader_lease WHERE id = 1") else { return nil }
        let expires: Double? = row["expires_at"]
        return LeaderLease(
            holder: row["holder"], epoch: row["epoch"], expiresAt: expires ?? .nan, workerAddress: row["worker_address"], apiURL: row["api_url"])
    }

    /// Compare-and-set on the single lease row, one transaction.
    public func swapLeaderLease(expecting expectedEpoch: Int64?, to new: LeaderLease) async throws -> Bool {
        try await writer.write { db in
            try db.execute(sql: Self.leaseTableSQL)
            let current = try Self.readLease(db)
            guard current?.epoch == expectedEpoch else { return false }
            // SQLite stores NaN as NULL; ±inf are kept.
            try db.execute(
                sql: """
                    INSERT INTO leader_lease (id, holder, epoch, expires_at, worker_address, api_url) VALUES (1, ?, ?, ?, ?, ?)
                    ON CONFLICT(id) DO UPDATE SET holder = excluded.holder, epoch = excluded.epoch, expires_at = excluded.expires_at,
                        worker_address = excluded.worker_address, api_url = excluded.api_url
                    """,
                arguments: [new.holder, new.epoch, new.expiresAt.isNaN ? nil : new.expiresAt, new.workerAddress, new.apiURL])
            return true
        }
    }

    /// A handle whose every write first checks, in the same transaction, that the lease row's epoch is still `epoch`.
    /// An in-memory database (tests) cannot be shared by two handles, so it is returned unfenced.
    public func fenced(epoch: Int64) -> GridDatabase {
        let path = writer.path
        guard !path.isEmpty, path != ":memory:", FileManager.default.fileExists(atPath: path) else { return self }
        var config = Configuration()
        config.busyMode = .timeout(10)
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
            if db.configuration.readonly { return }
            try db.execute(sql: Self.leaseTableSQL)
            let tables = try String.fetchAll(
                db,
                sql: "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT IN ('leader_lease', 'grdb_migrations')")
            for table in tables {
                for op in ["INSERT", "UPDATE", "DELETE"] {
                    try db.execute(
                        sql: """
                            CREATE TEMP TRIGGER IF NOT EXISTS "fence_\(table)_\(op)" BEFORE \(op) ON main."\(table)"
                            WHEN (SELECT epoch FROM main.leader_lease WHERE id = 1) IS NOT \(epoch)
                            BEGIN SELECT RAISE(ABORT, 'campusgrid: deposed'); END
                            """)
                }
            }
        }
        do {
            return try GridDatabase(writer: try DatabasePool(path: path, configuration: config))
        } catch {
            return self
        }
    }
}
