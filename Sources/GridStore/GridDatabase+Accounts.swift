import Foundation
public import GridCore
import GridScheduler

extension GridDatabase {
    /// Creates an account and mints its starting credits, in one transaction.
    public func createUser(username: String, passwordHash: String, startingCredits: Int, now: Double) async throws -> UserRecord {
        try await write { db in
            // Usernames are unique without regard to case (SQLite: COLLATE NOCASE; PostgreSQL: a unique index on lower()).
            if try StoreRow.fetchOne(db, sql: "SELECT id FROM users WHERE lower(username) = lower(?)", arguments: [username]) != nil {
                throw GridError(.conflict, "the username \(String(reflecting: username)) is taken")
            }
            let id = try db.insert(
                sql: "INSERT INTO users (username, password_hash, created_at) VALUES (?, ?, ?)",
                arguments: [username, passwordHash, now])
            if startingCredits > 0 {
                try Self.move(db, startingCredits, from: .mint, to: .user(id), reason: "signup", job: nil, now: now)
            }
            return UserRecord(row: try StoreRow.fetchOne(db, sql: "SELECT * FROM users WHERE id = ?", arguments: [id])!)
        }
    }

    public func user(named username: String) async throws -> UserRecord? {
        try await read { db in
            try StoreRow.fetchOne(db, sql: "SELECT * FROM users WHERE lower(username) = lower(?)", arguments: [username]).map(UserRecord.init(row:))
        }
    }

    public func user(id: UserID) async throws -> UserRecord? {
        try await read { db in
            try StoreRow.fetchOne(db, sql: "SELECT * FROM users WHERE id = ?", arguments: [id]).map(UserRecord.init(row:))
        }
    }

    /// Stores a token by its hash (the token itself is never stored). A user holds at most `keep` tokens of a kind:
    /// a new API token (a login is one) or dashboard session drops the oldest of its kind beyond that; a new worker token beyond it is refused, since
    /// dropping one would cut off a worker that runs with it.
    public func addToken(hash: String, userId: UserID, kind: TokenKind, now: Double, keep: Int = .max) async throws {
        try await write { db in
            let held: Int =
                try StoreRow.fetchOne(db, sql: "SELECT COUNT(*) AS n FROM tokens WHERE user_id = ? AND kind = ?", arguments: [userId, kind.rawValue])?[
                    "n"] ?? 0
            if held >= keep {
                guard kind != .worker else {
                    throw GridError(.conflict, "you hold \(held) worker tokens, the most there may be; revoke one you no longer use")
                }
                let stale = try StoreRow.fetchAll(
                    db, sql: "SELECT hash FROM tokens WHERE user_id = ? AND kind = ? ORDER BY created_at, hash LIMIT ?",
                    arguments: [userId, kind.rawValue, held - keep + 1])
                for row in stale {
                    let old: String = row["hash"]
                    try db.execute(sql: "DELETE FROM tokens WHERE hash = ?", arguments: [old])
                }
            }
            try db.execute(
                sql: "INSERT INTO tokens (hash, user_id, kind, created_at) VALUES (?, ?, ?, ?)",
                arguments: [hash, userId, kind.rawValue, now])
        }
    }

    /// The owner and kind of the token with this hash.
    public func tokenOwner(hash: String) async throws -> (user: UserRecord, kind: TokenKind)? {
        try await read { db in
            guard
                let row = try StoreRow.fetchOne(
                    db, sql: "SELECT u.*, t.kind AS token_kind FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.hash = ?",
                    arguments: [hash])
            else { return nil }
            return (UserRecord(row: row), TokenKind(rawValue: row["token_kind"]) ?? .api)
        }
    }

    /// The token with this hash: its owner, kind and issue time (nil for a token never issued or revoked).
    public func token(hash: String) async throws -> TokenRecord? {
        try await read { db in
            guard
                let row = try StoreRow.fetchOne(
                    db, sql: "SELECT u.*, t.kind AS token_kind, t.created_at AS token_created_at FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.hash = ?",
                    arguments: [hash])
            else { return nil }
            return TokenRecord(user: UserRecord(row: row), kind: TokenKind(rawValue: row["token_kind"]) ?? .api, createdAt: row["token_created_at"])
        }
    }

    /// The id of the first account ever registered (it is an admin), or nil before any.
    public func firstUserId() async throws -> UserID? {
        try await read { db in try UserID.fetchOne(db, sql: "SELECT MIN(id) FROM users") }
    }

    /// The owner of the token with this hash if it was issued at or after `issuedAfter` (older ones have expired).
    public func tokenOwner(hash: String, issuedAfter: Double) async throws -> UserRecord? {
        try await read { db in
            try StoreRow.fetchOne(
                db, sql: "SELECT u.* FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.hash = ? AND t.created_at >= ?",
                arguments: [hash, issuedAfter]
            ).map(UserRecord.init(row:))
        }
    }

    public func deleteToken(hash: String) async throws {
        try await write { db in try db.execute(sql: "DELETE FROM tokens WHERE hash = ?", arguments: [hash]) }
    }

    /// The balance of an account, derived from the ledger.
    public func balance(of account: LedgerAccount) async throws -> Int {
        try await read { db in try Self.balance(db, account) }
    }

    /// Every ledger row that touches a user's balance, newest first.
    public func ledger(of user: UserID, limit: Int = 200) async throws -> [LedgerEntry] {
        try await read { db in
            let a = LedgerAccount.user(user).description
            return try StoreRow.fetchAll(
                db, sql: "SELECT * FROM ledger WHERE debit = ? OR credit = ? ORDER BY id DESC LIMIT ?", arguments: [a, a, limit]
            ).map(LedgerEntry.init(row:))
        }
    }

    /// Checks the ledger invariant: the sum of every account but the mint equals what sign-ups minted, and no account
    /// is negative.
    public func checkLedger() async throws -> LedgerCheck {
        try await read { db in
            let rows = try StoreRow.fetchAll(
                db,
                sql: """
                    SELECT account, SUM(amount) AS balance FROM (
                        SELECT credit AS account, amount FROM ledger
                        UNION ALL SELECT debit AS account, -amount FROM ledger
                    ) AS moves GROUP BY account
                    """)
            var minted = 0
            var held = 0
            var (holds, escrow, fund) = (0, 0, 0)
            var negative: [String] = []
            for row in rows {
                let account: String = row["account"]
                let balance: Int = row["balance"]
                if account == LedgerAccount.mint.description {
                    minted = -balance
                } else {
                    held += balance
                    if balance < 0 { negative.append(account) }
                    switch LedgerAccount(account) {
                    case .hold?: holds += balance
                    case .escrow?: escrow += balance
                    case .fund?: fund += balance
                    default: break
                    }
                }
            }
            // Credits still held for jobs that ended would be credits nobody can spend.
            var stuck: [String] = []
            for row in rows {
                let account: String = row["account"]
                let balance: Int = row["balance"]
                guard balance != 0, case .hold(let job)? = LedgerAccount(account) else { continue }
                let row = try StoreRow.fetchOne(db, sql: "SELECT state, verification, verification_reason FROM jobs WHERE id = ?", arguments: [job])
                // A probation run's unspent hold is kept until its check decides (`Verification.keepsHold`).
                let unverified =
                    (row?["verification"] as String?) == VerificationState.unverified.rawValue
                    && Verification.keepsHold((row?["verification_reason"] as String?).flatMap(Verification.Reason.init(rawValue:)))
                if let state = row?["state"] as String?, JobState(rawValue: state)?.isFinal ?? true, !unverified { stuck.append(account) }
            }
            // Escrow of a run whose check was decided would be credits nobody can spend.
            for row in rows {
                let account: String = row["account"]
                let balance: Int = row["balance"]
                guard balance != 0, case .escrow(let run)? = LedgerAccount(account) else { continue }
                let state = try String.fetchOne(
                    db, sql: "SELECT r.verification FROM jobs j JOIN jobs r ON r.id = COALESCE(j.check_of, j.id) WHERE j.id = ?", arguments: [run])
                if state != VerificationState.unverified.rawValue { stuck.append(account) }
            }
            var check = LedgerCheck(minted: minted, held: held, negativeAccounts: negative, stuckHolds: stuck)
            check.holds = holds
            check.escrow = escrow
            check.fund = fund
            return check
        }
    }

    static func balance(_ db: any StoreSession, _ account: LedgerAccount) throws -> Int {
        let a = account.description
        return try Int.fetchOne(
            db,
            sql: """
                SELECT COALESCE((SELECT SUM(amount) FROM ledger WHERE credit = ?), 0)
                     - COALESCE((SELECT SUM(amount) FROM ledger WHERE debit = ?), 0)
                """,
            arguments: [a, a]) ?? 0
    }

    /// Writes the movements a pure rule (`Verification`) decided, in order.
    static func apply(_ db: any StoreSession, _ moves: [Verification.Movement], job: JobID?, now: Double) throws {
        for m in moves { try move(db, m.amount, from: m.from, to: m.to, reason: m.reason, job: job, now: now) }
    }

    /// Writes one ledger row; a zero amount writes nothing.
    static func move(_ db: any StoreSession, _ amount: Int, from: LedgerAccount, to: LedgerAccount, reason: String, job: JobID?, now: Double) throws {
        precondition(amount >= 0, "ledger amounts are positive")
        guard amount > 0 else { return }
        try db.execute(
            sql: "INSERT INTO ledger (at, debit, credit, amount, reason, job_id) VALUES (?, ?, ?, ?, ?, ?)",
            arguments: [now, from.description, to.description, amount, reason, job])
    }
}
