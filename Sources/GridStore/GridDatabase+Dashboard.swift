import Foundation
public import GridCore

/// Read-only queries the web dashboard needs beyond the API's: counts for paging, earnings per worker, a user's tokens.
extension GridDatabase {
    /// How many jobs `jobs(owner:state:)` would list without a limit.
    public func jobCount(owner: UserID? = nil, state: JobState? = nil) async throws -> Int {
        try await read { db in
            let (filter, args) = Self.jobFilter(owner: owner, state: state)
            return try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM jobs WHERE " + filter, arguments: args) ?? 0
        }
    }

    /// Credits each worker earned for its owner: the sum of what the jobs it ran paid.
    public func earningsByWorker() async throws -> [WorkerID: Int] {
        try await read { db in
            var out: [WorkerID: Int] = [:]
            let rows = try StoreRow.fetchAll(
                db, sql: "SELECT worker_id, SUM(paid) AS earned FROM jobs WHERE paid IS NOT NULL AND worker_id IS NOT NULL"
                    // A run contradicted by verification earned nothing: its pay went to the fund.
                    + " AND NOT EXISTS (SELECT 1 FROM worker_checks c WHERE c.job_id = jobs.id AND c.outcome = 'contradicted')"
                    + " GROUP BY worker_id")
            for row in rows { out[row["worker_id"]] = row["earned"] }
            return out
        }
    }

    /// A token as its owner sees it: never the token itself, only its hash, kind and age.
    public struct TokenSummary: Hashable, Sendable {
        public var hash: String
        public var kind: String
        public var createdAt: Double
    }

    /// The tokens of one user of one kind, newest first.
    public func tokens(of user: UserID, kind: TokenKind) async throws -> [TokenSummary] {
        try await read { db in
            try StoreRow.fetchAll(
                db, sql: "SELECT hash, kind, created_at FROM tokens WHERE user_id = ? AND kind = ? ORDER BY created_at DESC, hash LIMIT 200",
                arguments: [user, kind.rawValue]
            ).map { TokenSummary(hash: $0["hash"], kind: $0["kind"], createdAt: $0["created_at"]) }
        }
    }

    /// Revokes one of `user`'s tokens by its hash; returns whether there was one.
    public func revokeToken(hash: String, of user: UserID) async throws -> Bool {
        try await write { db in
            try db.execute(sql: "DELETE FROM tokens WHERE hash = ? AND user_id = ?", arguments: [hash, user]) > 0
        }
    }
}
