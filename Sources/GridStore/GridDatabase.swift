import Foundation
import GridCore

/// The manager's durable state: accounts, tokens, the credit ledger, jobs with their files, logs and events, workers,
/// and which manager leads.
///
/// On one of two backends (issue 16): a SQLite file in WAL mode (the default), or a PostgreSQL database that several
/// managers share. Every operation that moves credits or changes a job's state is one transaction, so a crash at any
/// point leaves either the whole change or none of it; write transactions are exclusive against each other on both.
public struct GridDatabase: Sendable {
    let backend: any StoreBackend
    /// When set, every write transaction first checks that the lease's epoch is still this one (`fenced(epoch:)`).
    let fence: Int64?

    init(backend: any StoreBackend, fence: Int64? = nil) {
        self.backend = backend
        self.fence = fence
    }

    /// Opens (creating if needed) the SQLite database at `path` and brings its schema up to date.
    public static func open(path: String) throws -> GridDatabase {
        GridDatabase(backend: try SQLiteBackend.open(path: path))
    }

    /// Opens the database a `--database` value names: a `postgres://` (or `postgresql://`) URL, or a SQLite file path.
    /// Errors never repeat the URL (it may carry a password).
    public static func open(url: String) async throws -> GridDatabase {
        if let pg = try PostgresURL(parsing: url) {
            return GridDatabase(backend: try await PostgresBackend.open(pg))
        }
        return try open(path: url)
    }

    /// A private in-memory SQLite database, for tests.
    public static func inMemory() throws -> GridDatabase {
        GridDatabase(backend: try SQLiteBackend.inMemory())
    }

    /// Which backend this is ("sqlite" or "postgres"), for logs and the status page.
    public var backendName: String {
        switch backend.dialect {
        case .sqlite: "sqlite"
        case .postgres: "postgres"
        }
    }

    /// A read transaction: one consistent snapshot, never fenced.
    func read<T: Sendable>(_ body: @escaping @Sendable (any StoreSession) throws -> T) async throws -> T {
        try await backend.read(body)
    }

    /// A write transaction; on a fenced handle it first checks the lease (`fenced(epoch:)`).
    @discardableResult
    func write<T: Sendable>(_ body: @escaping @Sendable (any StoreSession) throws -> T) async throws -> T {
        guard let fence else { return try await backend.write(body) }
        return try await backend.write { db in
            try Self.checkFence(db, epoch: fence)
            return try body(db)
        }
    }
}
