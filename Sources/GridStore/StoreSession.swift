import Foundation

/// The SQL dialect a session speaks. Statements are written in the subset both speak; the few differences (schema,
/// row locks) ask the dialect.
public enum StoreDialect: Sendable {
    case sqlite
    case postgres
}

/// One connection inside one transaction, the neutral SQL layer every `GridDatabase` method is written on (issue 16).
/// Statements use `?` placeholders (PostgreSQL's session numbers them); a `?` inside a string literal is not one.
/// Synchronous: a transaction's body runs on a thread of its own, never on the cooperative pool.
public protocol StoreSession {
    var dialect: StoreDialect { get }
    /// Runs a statement; returns how many rows it changed.
    @discardableResult func execute(sql: String, arguments: StoreArguments) throws -> Int
    func fetchAll(sql: String, arguments: StoreArguments) throws -> [StoreRow]
}

extension StoreSession {
    @discardableResult public func execute(sql: String) throws -> Int { try execute(sql: sql, arguments: []) }

    public func fetchOne(sql: String, arguments: StoreArguments = []) throws -> StoreRow? {
        try fetchAll(sql: sql, arguments: arguments).first
    }

    /// Runs an `INSERT` into a table with an `id` column and returns the new row's id (`RETURNING id`, which SQLite
    /// ≥ 3.35 and PostgreSQL both speak).
    public func insert(sql: String, arguments: StoreArguments) throws -> Int64 {
        guard let row = try fetchOne(sql: sql + " RETURNING id", arguments: arguments), let id: Int64 = row[0] else {
            throw StoreFailure("an insert returned no id")
        }
        return id
    }
}

extension StoreRow {
    public static func fetchAll(_ db: any StoreSession, sql: String, arguments: StoreArguments = []) throws -> [StoreRow] {
        try db.fetchAll(sql: sql, arguments: arguments)
    }

    public static func fetchOne(_ db: any StoreSession, sql: String, arguments: StoreArguments = []) throws -> StoreRow? {
        try db.fetchOne(sql: sql, arguments: arguments)
    }
}

extension StoreValueConvertible {
    /// The first column of the first row, or nil when there is no row or it is NULL.
    public static func fetchOne(_ db: any StoreSession, sql: String, arguments: StoreArguments = []) throws -> Self? {
        try db.fetchOne(sql: sql, arguments: arguments).flatMap { $0[0] as Self? }
    }
}

/// A storage failure with a message that names no secret.
public struct StoreFailure: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Where a transaction runs: one backend's connections (issue 16). `write` transactions are exclusive against each other
/// (SQLite: one writer, `BEGIN IMMEDIATE`; PostgreSQL: a transaction-scoped advisory lock taken first), so a decision
/// that reads then writes sees every earlier decision and no concurrent one. `read` sees one consistent snapshot.
public protocol StoreBackend: Sendable {
    var dialect: StoreDialect { get }
    func read<T: Sendable>(_ body: @escaping @Sendable (any StoreSession) throws -> T) async throws -> T
    @discardableResult
    func write<T: Sendable>(_ body: @escaping @Sendable (any StoreSession) throws -> T) async throws -> T
    /// After a bulk insert with explicit ids (the scheduler bench): fold SQLite's WAL; move PostgreSQL's id sequences on.
    func afterBulkInsert() async throws
}
