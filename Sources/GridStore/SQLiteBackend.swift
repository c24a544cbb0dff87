import Foundation
import GRDB

/// The default backend: one SQLite file in WAL mode through GRDB (what `campusgrid up` and a lone manager use).
/// GRDB's writes are `BEGIN IMMEDIATE` transactions on the one writer connection: every write transaction is exclusive.
struct SQLiteBackend: StoreBackend {
    let writer: any DatabaseWriter
    var dialect: StoreDialect { .sqlite }

    static func open(path: String) throws -> SQLiteBackend {
        var config = Configuration()
        config.busyMode = .timeout(10)
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
            // Reads map the file (shared with the page cache) instead of copying each page out of the kernel, and each
            // connection keeps more pages than SQLite's 2 MiB default: a pass at a million queued jobs spent a quarter of
            // its time copying pages (issue 17).
            try db.execute(sql: "PRAGMA mmap_size = 1073741824")
            try db.execute(sql: "PRAGMA cache_size = -16384")
        }
        let pool = try DatabasePool(path: path, configuration: config)
        return try SQLiteBackend(writer: pool)
    }

    static func inMemory() throws -> SQLiteBackend {
        try SQLiteBackend(writer: DatabaseQueue())
    }

    init(writer: any DatabaseWriter) throws {
        self.writer = writer
        try SQLiteSchema.migrator.migrate(writer)
    }

    func read<T: Sendable>(_ body: @escaping @Sendable (any StoreSession) throws -> T) async throws -> T {
        try await writer.read { db in try body(SQLiteSession(db: db)) }
    }

    func write<T: Sendable>(_ body: @escaping @Sendable (any StoreSession) throws -> T) async throws -> T {
        try await writer.write { db in try body(SQLiteSession(db: db)) }
    }

    func afterBulkInsert() async throws {
        // Fold the write-ahead log into the database now, so the next write does not pay for checkpointing this one.
        _ = try await writer.writeWithoutTransaction { db in try db.checkpoint(.passive) }
    }
}

/// A GRDB connection inside a transaction. Statements are compiled once per connection (GRDB's statement cache).
struct SQLiteSession: StoreSession {
    let db: Database
    var dialect: StoreDialect { .sqlite }

    @discardableResult
    func execute(sql: String, arguments: StoreArguments) throws -> Int {
        try db.cachedStatement(sql: sql).execute(arguments: Self.arguments(arguments))
        return db.changesCount
    }

    func fetchAll(sql: String, arguments: StoreArguments) throws -> [StoreRow] {
        let statement = try db.cachedStatement(sql: sql)
        let columns = statement.columnNames
        let cursor = try Row.fetchCursor(statement, arguments: Self.arguments(arguments))
        var rows: [StoreRow] = []
        while let row = try cursor.next() {
            var values: [StoreValue] = []
            values.reserveCapacity(columns.count)
            for dbValue in row.databaseValues {
                switch dbValue.storage {
                case .null: values.append(.null)
                case .int64(let i): values.append(.int(i))
                case .double(let d): values.append(.double(d))
                case .string(let s): values.append(.text(s))
                case .blob(let b): values.append(.blob(b))
                }
            }
            rows.append(StoreRow(columns: columns, values: values))
        }
        return rows
    }

    static func arguments(_ args: StoreArguments) -> StatementArguments {
        StatementArguments(
            args.map { arg -> DatabaseValue in
                switch arg?.storeValue ?? .null {
                case .null: return .null
                case .int(let i): return i.databaseValue
                case .double(let d): return d.databaseValue
                case .text(let s): return s.databaseValue
                case .blob(let b): return b.databaseValue
                }
            })
    }
}
