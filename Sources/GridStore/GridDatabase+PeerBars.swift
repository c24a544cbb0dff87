public import GridCore

/// What bars a worker from the peers, kept in the store so that it outlives the manager that decided it: a restarted
/// manager, or a follower that takes over, still announces the bars and still knows whom a revoked join token reaches.
/// Times are the manager's wall clock in whole seconds, as a peer credential's `expires` is.
extension GridDatabase {
    /// Worker `id` was given a peer credential under join token `tokenHash` (its SHA-256; nil for none) that expires at
    /// `expires`. The newest token is kept, and the latest expiry of any credential given to it.
    public func recordCredential(_ id: WorkerID, tokenHash: String?, expires: Int64) async throws {
        try await write { db in
            let old = try Int64.fetchOne(db, sql: "SELECT credential_expires FROM workers WHERE id = ?", arguments: [id])
            try db.execute(
                sql: "UPDATE workers SET credential_token = ?, credential_expires = ? WHERE id = ?",
                arguments: [tokenHash, max(old ?? .min, expires), id])
        }
    }

    /// The workers given a credential under join token `tokenHash` that expires after `after`, with its expiry.
    public func credentialHolders(tokenHash: String, expiringAfter after: Int64) async throws -> [WorkerID: Int64] {
        try await read { db in
            var out: [WorkerID: Int64] = [:]
            for row in try StoreRow.fetchAll(
                db, sql: "SELECT id, credential_expires FROM workers WHERE credential_token = ? AND credential_expires > ?",
                arguments: [tokenHash, after])
            {
                out[row["id"]] = row["credential_expires"]
            }
            return out
        }
    }

    /// Bars worker `id`: its credentials that expire at or before `before` are refused (a kept bar never moves back).
    /// Bars that refuse nothing after `forgetBefore` are dropped on the way.
    public func recordPeerBar(_ id: WorkerID, before: Int64, forgetBefore: Int64) async throws {
        try await write { db in
            try db.execute(sql: "DELETE FROM peer_bars WHERE refused_before < ?", arguments: [forgetBefore])
            if let old = try Int64.fetchOne(db, sql: "SELECT refused_before FROM peer_bars WHERE worker_id = ?", arguments: [id]) {
                if before > old {
                    try db.execute(sql: "UPDATE peer_bars SET refused_before = ? WHERE worker_id = ?", arguments: [before, id])
                }
            } else {
                try db.execute(sql: "INSERT INTO peer_bars (worker_id, refused_before) VALUES (?, ?)", arguments: [id, before])
            }
        }
    }

    /// The kept bars that refuse credentials expiring after `after`, by worker.
    public func peerBars(refusingAfter after: Int64) async throws -> [WorkerID: Int64] {
        try await read { db in
            var out: [WorkerID: Int64] = [:]
            for row in try StoreRow.fetchAll(
                db, sql: "SELECT worker_id, refused_before FROM peer_bars WHERE refused_before >= ?", arguments: [after])
            {
                out[row["worker_id"]] = row["refused_before"]
            }
            return out
        }
    }
}
