import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import PostgresNIO

/// The PostgreSQL backend (issue 16): a small pool of connections, each transaction's body run synchronously on a
/// thread of the backend's own thread pool (one thread per connection), each statement waiting on postgres-nio's
/// future there — never on an event loop, never on the cooperative pool. So `GridDatabase`'s methods are the same code
/// on both backends.
///
/// Concurrency, decided: every write transaction is READ COMMITTED and first takes one transaction-scoped advisory
/// lock (`pg_advisory_xact_lock`), so write transactions are exclusive against each other — those of every manager
/// sharing the database — exactly like SQLite's one writer, and each statement after the lock sees every write committed
/// before. A decision that reads then writes (a job claim, a ledger move) therefore cannot interleave with another.
/// Reads are REPEATABLE READ, READ ONLY snapshots and never wait for writers. A serialization failure or deadlock (which
/// this scheme should not produce) is retried a bounded number of times.
final class PostgresBackend: StoreBackend, @unchecked Sendable {
    static let poolSize = 4
    /// How long the server lets a session sit idle inside a transaction before ending it (see `checkOut`).
    static let idleInTransactionMs = 5_000

    /// The advisory lock every write transaction takes ("CGRD").
    static let writeLockKey: Int64 = 0x4347_5244
    static let maxAttempts = 3

    let url: PostgresURL
    let threads: NIOThreadPool
    /// One thread of its own for the leadership loop's reads and swaps of the lease row (`StoreLane.lease`): they
    /// never queue behind the term's own store calls, which may hold every thread of `threads` (each statement is
    /// allowed `StoreDeadline.statementSeconds`), so a deposed leader learns it in time and a leader renews in time.
    let leaseThread: NIOThreadPool
    let logger: Logger
    private let tls: PostgresConnection.Configuration.TLS
    private let lock = NSLock()
    private var idle: [PostgresConnection] = []
    private var nextID = 0
    /// At most `poolSize` connections in use (there are as many threads; this only guards the invariant).
    private let slots = DispatchSemaphore(value: PostgresBackend.poolSize)

    var dialect: StoreDialect { .postgres }

    private init(url: PostgresURL) throws {
        self.url = url
        var logger = Logger(label: "campusgrid.store.postgres")
        logger.logLevel = .warning
        self.logger = logger
        switch url.tls {
        case .disable: tls = .disable
        case .prefer: tls = .prefer(try NIOSSLContext(configuration: .makeClientConfiguration()))
        case .require: tls = .require(try NIOSSLContext(configuration: .makeClientConfiguration()))
        }
        threads = NIOThreadPool(numberOfThreads: Self.poolSize)
        threads.start()
        leaseThread = NIOThreadPool(numberOfThreads: 1)
        leaseThread.start()
    }

    deinit {
        for connection in idle { Self.discard(connection) }
        threads.shutdownGracefully { _ in }
        leaseThread.shutdownGracefully { _ in }
    }

    /// Connects and brings the schema up to date (one write transaction, so managers starting together migrate once).
    static func open(_ url: PostgresURL) async throws -> PostgresBackend {
        let backend = try PostgresBackend(url: url)
        try await backend.write { db in try PostgresSchema.migrate(db) }
        return backend
    }

    func read<T: Sendable>(_ body: @escaping @Sendable (any StoreSession) throws -> T) async throws -> T {
        let bound = StoreDeadline.seconds
        if StoreLane.lease { return try await leaseThread.runIfActive { try self.transaction(write: false, bound: bound, lane: .lease, body) } }
        return try await threads.runIfActive { try self.transaction(write: false, bound: bound, lane: .pool, body) }
    }

    func write<T: Sendable>(_ body: @escaping @Sendable (any StoreSession) throws -> T) async throws -> T {
        let bound = StoreDeadline.seconds
        if StoreLane.lease { return try await leaseThread.runIfActive { try self.transaction(write: true, bound: bound, lane: .lease, body) } }
        return try await threads.runIfActive { try self.transaction(write: true, bound: bound, lane: .pool, body) }
    }

    private enum Lane { case pool, lease }

    func afterBulkInsert() async throws {
        try await write { db in
            for table in ["jobs"] {
                try db.execute(
                    sql: "SELECT setval(pg_get_serial_sequence('\(table)', 'id'), GREATEST((SELECT MAX(id) FROM \(table)), 1))", arguments: [])
            }
        }
    }

    // MARK: - Transactions (on a pool thread)

    private func transaction<T>(write: Bool, bound: Double, lane: Lane, _ body: (any StoreSession) throws -> T) throws -> T {
        // The lease lane is its one thread; the pool's threads are counted by `slots`.
        if lane == .pool { slots.wait() }
        defer { if lane == .pool { slots.signal() } }
        var attempt = 1
        while true {
            let connection = try checkOut()
            let session = PostgresSession(connection: connection, logger: logger, bound: bound)
            do {
                try session.execute(sql: write ? "BEGIN ISOLATION LEVEL READ COMMITTED" : "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            } catch {
                // Nothing was written: a connection the server closed since is replaced, once per attempt.
                Self.discard(connection)
                guard attempt < Self.maxAttempts else { throw error }
                attempt += 1
                continue
            }
            do {
                // The server ends a statement past the bound itself (a closed connection alone does not stop one that is
                // running, which would go on holding its locks); the session's default is set at connect.
                if bound != StoreDeadline.statementSeconds {
                    try session.execute(sql: "SET LOCAL statement_timeout = \(StoreDeadline.milliseconds(bound))", arguments: [])
                }
                if write { try session.execute(sql: "SELECT pg_advisory_xact_lock(?)", arguments: [Self.writeLockKey]) }
                let result = try body(session)
                try session.execute(sql: "COMMIT")
                checkIn(connection)
                return result
            } catch {
                if (try? session.execute(sql: "ROLLBACK")) != nil {
                    checkIn(connection)
                } else {
                    Self.discard(connection)
                }
                if let failure = error as? PostgresStoreFailure, failure.isRetryable, attempt < Self.maxAttempts {
                    attempt += 1
                    continue
                }
                throw error
            }
        }
    }

    private func checkOut() throws -> PostgresConnection {
        let (connection, id): (PostgresConnection?, Int) = lock.withLock {
            while let c = idle.popLast() {
                if !c.isClosed { return (c, 0) }
            }
            nextID += 1
            return (nil, nextID)
        }
        if let connection { return connection }
        let configuration = PostgresConnection.Configuration(
            host: url.host, port: url.port, username: url.username, password: url.password, database: url.database, tls: tls)
        do {
            let connection = try PostgresConnection.connect(
                on: MultiThreadedEventLoopGroup.singleton.next(), configuration: configuration, id: id, logger: logger
            ).wait()
            // A manager frozen inside a transaction (SIGSTOP, a paused VM) must not hold the write lock or the lease
            // row forever: the server ends a session idle in a transaction this long, so a follower's takeover waits
            // at most this long behind it, and the frozen manager's late COMMIT fails.
            let session = PostgresSession(connection: connection, logger: logger)
            try session.execute(sql: "SET idle_in_transaction_session_timeout = \(Self.idleInTransactionMs)", arguments: [])
            try session.execute(sql: "SET statement_timeout = \(StoreDeadline.milliseconds(StoreDeadline.statementSeconds))", arguments: [])
            return connection
        } catch {
            throw PostgresStoreFailure(error, doing: "connecting to \(url)")
        }
    }

    /// Closes a connection, keeping it alive until it is closed (postgres-nio insists on that).
    private static func discard(_ connection: PostgresConnection) {
        connection.close().whenComplete { _ in withExtendedLifetime(connection) {} }
    }

    private func checkIn(_ connection: PostgresConnection) {
        guard !connection.isClosed else { return }
        lock.withLock { idle.append(connection) }
    }
}

/// One PostgreSQL connection inside a transaction.
struct PostgresSession: StoreSession {
    let connection: PostgresConnection
    let logger: Logger
    /// The longest one statement is waited for (`StoreDeadline`); past it the connection is closed and the statement
    /// fails, so no thread of the pool waits forever on a connection that went quiet.
    var bound: Double = StoreDeadline.statementSeconds
    var dialect: StoreDialect { .postgres }

    @discardableResult
    func execute(sql: String, arguments: StoreArguments) throws -> Int {
        try run(sql, arguments).metadata.rows ?? 0
    }

    func fetchAll(sql: String, arguments: StoreArguments) throws -> [StoreRow] {
        let result = try run(sql, arguments)
        guard let first = result.rows.first else { return [] }
        let columns = first.map(\.columnName)
        return try result.rows.map { row in StoreRow(columns: columns, values: try row.map(Self.value)) }
    }

    private func run(_ sql: String, _ arguments: StoreArguments) throws -> PostgresQueryResult {
        var binds = PostgresBindings(capacity: arguments.count)
        for value in arguments.storeValues {
            switch value {
            case .null: binds.appendNull()
            case .int(let i): binds.append(i)
            case .double(let d): binds.append(d)
            case .text(let s): binds.append(s)
            case .blob(let b): binds.append(ByteBuffer(bytes: b))
            }
        }
        let future = connection.query(PostgresQuery(unsafeSQL: Self.numberPlaceholders(sql), binds: binds), logger: logger)
        let answer = Answer<PostgresQueryResult>()
        future.whenComplete { answer.set($0) }
        // The server's own statement_timeout (the same bound) normally ends it first; this one is for a server, or a
        // link, that went quiet.
        guard answer.wait(seconds: Double(StoreDeadline.milliseconds(bound)) / 1000 + 1) else {
            // The server (or the link to it) went quiet: closing the connection fails the statement, and with it the
            // transaction, which the server rolls back when it sees the connection go.
            let _: EventLoopFuture<Void> = connection.close()
            throw PostgresStoreFailure(timedOutAfter: bound)
        }
        do {
            return try answer.result!.get()
        } catch {
            throw PostgresStoreFailure(error, doing: "a statement")
        }
    }

    /// A result handed from the event loop to the waiting pool thread.
    final class Answer<T>: @unchecked Sendable {
        // Safe: `value` is written once under `lock`, before `done` is signalled, and read only after.
        private let lock = NSLock()
        private let done = DispatchSemaphore(value: 0)
        private var value: Result<T, any Error>?
        func set(_ result: Result<T, any Error>) {
            lock.withLock { value = result }
            done.signal()
        }
        /// Whether it came within `seconds`.
        func wait(seconds: Double) -> Bool { done.wait(timeout: .now() + max(0.001, seconds)) == .success }
        var result: Result<T, any Error>? { lock.withLock { value } }
    }

    /// `?` → `$1`, `$2`, … outside string literals and quoted identifiers.
    static func numberPlaceholders(_ sql: String) -> String {
        var out = ""
        out.reserveCapacity(sql.utf8.count + 16)
        var n = 0
        var quote: Character?
        for ch in sql {
            if let q = quote {
                if ch == q { quote = nil }
                out.append(ch)
            } else if ch == "'" || ch == "\"" {
                quote = ch
                out.append(ch)
            } else if ch == "?" {
                n += 1
                out += "$\(n)"
            } else {
                out.append(ch)
            }
        }
        return out
    }

    static func value(_ cell: PostgresCell) throws -> StoreValue {
        guard cell.bytes != nil else { return .null }
        switch cell.dataType {
        case .int2: return .int(Int64(try cell.decode(Int16.self)))
        case .int4: return .int(Int64(try cell.decode(Int32.self)))
        case .int8: return .int(try cell.decode(Int64.self))
        case .float4, .float8: return .double(try cell.decode(Double.self))
        case .bool: return .int(try cell.decode(Bool.self) ? 1 : 0)
        case .bytea: return .blob(try cell.decode(Data.self))
        case .numeric:
            // SUM of bigints: an integer unless it has a fraction.
            let text = "\(try cell.decode(Decimal.self))"
            if let i = Int64(text) { return .int(i) }
            return .double(Double(text) ?? .nan)
        default: return .text(try cell.decode(String.self))
        }
    }
}

/// A PostgreSQL error as the store reports it: the server's message and SQLSTATE, never the connection's URL or password.
struct PostgresStoreFailure: Error, CustomStringConvertible {
    var sqlState: String?
    var description: String

    init(_ error: any Error, doing what: String) {
        if let psql = error as? PSQLError {
            sqlState = psql.serverInfo?[.sqlState]
            if let message = psql.serverInfo?[.message] {
                description = "PostgreSQL error \(sqlState ?? "?") in \(what): \(message)"
            } else {
                description = "PostgreSQL failure in \(what): \(psql.code)"
            }
        } else {
            sqlState = nil
            description = "PostgreSQL failure in \(what): \(error)"
        }
    }

    init(timedOutAfter seconds: Double) {
        sqlState = nil
        description = "PostgreSQL did not answer within \(seconds) s; the connection was closed"
    }

    /// Serialization failure or deadlock: the transaction can run again.
    var isRetryable: Bool { sqlState == "40001" || sqlState == "40P01" }
}

/// Which of the store's threads a PostgreSQL call runs on: the leadership loop's lease reads and swaps have a thread of
/// their own (`lease`), so that they never wait behind the term's store calls. SQLite needs none: its readers never
/// wait on a network, and its one writer is the file's.
public enum StoreLane {
    @TaskLocal public static var lease = false
}

/// How long a store call may wait for PostgreSQL, per statement: `statementSeconds` unless a caller bounds its own
/// calls tighter (the leadership loop bounds its lease reads and swaps by the lease, so that a quiet connection makes
/// a leader step down instead of hanging it). SQLite needs none: its calls never wait on a network.
public enum StoreDeadline {
    public static let statementSeconds: Double = 120
    @TaskLocal public static var seconds: Double = statementSeconds

    /// `seconds` as PostgreSQL's statement_timeout: whole milliseconds, at least 1 (0 would mean none), at most an hour;
    /// NaN is the shortest.
    static func milliseconds(_ seconds: Double) -> Int {
        guard seconds.isFinite || seconds == .infinity else { return 1 }
        return Int(min(max(seconds, 0.001), 3600) * 1000)
    }
}
