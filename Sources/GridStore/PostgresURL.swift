import Foundation

/// A `postgres://user:password@host:port/database?sslmode=…` URL, parsed. Its `description` never shows the password.
public struct PostgresURL: Sendable, Equatable, CustomStringConvertible {
    public enum TLSMode: String, Sendable {
        case disable, prefer, require
    }

    public var host: String
    public var port: Int
    public var username: String
    public var password: String?
    public var database: String
    public var tls: TLSMode

    /// Nil when `string` is not a PostgreSQL URL at all (then it is a SQLite path); throws when it is one but malformed.
    /// The error never repeats the URL.
    public init?(parsing string: String) throws {
        let lower = string.lowercased()
        guard lower.hasPrefix("postgres://") || lower.hasPrefix("postgresql://") else { return nil }
        guard let c = URLComponents(string: string), let host = c.host, !host.isEmpty else {
            throw StoreFailure("the PostgreSQL URL is malformed (expected postgres://user:password@host:port/database)")
        }
        let port = c.port ?? 5432
        guard (1...65535).contains(port) else { throw StoreFailure("the PostgreSQL URL's port must be 1-65535") }
        guard let user = c.user, !user.isEmpty else { throw StoreFailure("the PostgreSQL URL names no user") }
        var database = c.path
        if database.hasPrefix("/") { database.removeFirst() }
        guard !database.isEmpty, !database.contains("/") else { throw StoreFailure("the PostgreSQL URL names no database") }
        var tls = TLSMode.prefer
        for item in c.queryItems ?? [] where item.name == "sslmode" {
            switch item.value ?? "" {
            case "disable": tls = .disable
            case "allow", "prefer": tls = .prefer
            case "require", "verify-ca", "verify-full": tls = .require
            default: throw StoreFailure("the PostgreSQL URL's sslmode must be disable, prefer or require")
            }
        }
        self.host = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        self.port = port
        self.username = user
        self.password = c.password
        self.database = database
        self.tls = tls
    }

    /// The URL without its password, safe to log.
    public var description: String { "postgres://\(username)@\(host):\(port)/\(database)" }
}
