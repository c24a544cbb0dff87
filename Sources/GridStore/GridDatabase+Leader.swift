import Foundation
public import GridCore

/// A write on a fenced handle found that another manager leads now (issue 16): nothing was written.
public enum GridStoreError: Error, Equatable, Sendable {
    /// `current`: the lease's epoch now (nil when the row is gone).
    case deposed(current: Int64?)
}

/// The leader lease (issue 16): one row that says which manager leads, and the epoch that fences its writes.
extension GridDatabase {
    /// The current lease row, or nil when no manager ever led.
    public func leaderLease() async throws -> LeaderLease? {
        try await read { db in try Self.leaderLease(db, lock: false) }
    }

    /// Compare-and-set on the single lease row, one transaction: writes `new` only if (row absent and expectedEpoch == nil)
    /// or (row.epoch == expectedEpoch). Returns whether it wrote.
    ///
    /// Not itself fenced (the compare is its own check): a fenced handle's swap answers false, not `.deposed`, when
    /// another manager took the lease. The swap's UPDATE takes the row's lock, so it waits for (and is ordered after)
    /// any fenced write that already checked the lease, and no fenced write commits after it under the old epoch.
    public func swapLeaderLease(expecting expectedEpoch: Int64?, to new: LeaderLease) async throws -> Bool {
        try await backend.write { db in
            let args: StoreArguments = [new.holder, new.epoch, new.expiresAt, new.workerAddress, new.apiURL]
            if let expectedEpoch {
                return try db.execute(
                    sql: "UPDATE leader_lease SET holder = ?, epoch = ?, expires_at = ?, worker_address = ?, api_url = ? WHERE id = 1 AND epoch = ?",
                    arguments: args + [expectedEpoch]) == 1
            }
            let inserted = try db.execute(
                sql: """
                    INSERT INTO leader_lease (id, holder, epoch, expires_at, worker_address, api_url) VALUES (1, ?, ?, ?, ?, ?)
                    ON CONFLICT (id) DO NOTHING
                    """,
                arguments: args)
            return inserted == 1
        }
    }

    /// A handle whose every write transaction first checks, in the same transaction and with the lease row locked against
    /// a concurrent swap, that the row's epoch is still `epoch`; otherwise it throws `GridStoreError.deposed(current:)`
    /// and writes nothing. Reads are not fenced.
    public func fenced(epoch: Int64) -> GridDatabase {
        GridDatabase(backend: backend, fence: epoch)
    }

    /// The fence check, first in a write transaction. PostgreSQL: the row is read `FOR SHARE`, so a swap (an UPDATE of
    /// it) waits until this transaction ends; SQLite: the write transaction is already exclusive (`BEGIN IMMEDIATE`).
    static func checkFence(_ db: any StoreSession, epoch: Int64) throws {
        let current = try leaderLease(db, lock: true)?.epoch
        guard current == epoch else { throw GridStoreError.deposed(current: current) }
    }

    static func leaderLease(_ db: any StoreSession, lock: Bool) throws -> LeaderLease? {
        let sql =
            "SELECT holder, epoch, expires_at, worker_address, api_url FROM leader_lease WHERE id = 1"
            + (lock && db.dialect == .postgres ? " FOR SHARE" : "")
        return try StoreRow.fetchOne(db, sql: sql).map {
            LeaderLease(holder: $0["holder"], epoch: $0["epoch"], expiresAt: $0["expires_at"], workerAddress: $0["worker_address"], apiURL: $0["api_url"])
        }
    }
}
