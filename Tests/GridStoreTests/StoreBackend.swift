import Foundation
import GridStore
import GridTestSupport
import Testing

/// The backends every store test runs on (issue 16): SQLite (in memory, or a file) and PostgreSQL (a fresh database
/// on the tests' own cluster, started by scripts/postgres).
enum StoreBackend: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case sqlite
    case postgres

    var testDescription: String { rawValue }

    /// A new, empty store.
    func open() async throws -> GridDatabase {
        switch self {
        case .sqlite: try GridDatabase.inMemory()
        case .postgres: try await GridDatabase.open(url: try await onThread { try TestPostgres.freshDatabaseURL() })
        }
    }

    /// Where a store survives its handle, for tests that reopen it: a SQLite file, or a PostgreSQL database.
    struct Place: Sendable {
        var url: String
        var file: String?
        func remove() { if let file { try? FileManager.default.removeItem(atPath: file) } }
    }

    func persistentPlace() async throws -> Place {
        switch self {
        case .sqlite:
            let path = NSTemporaryDirectory() + "store-\(UUID().uuidString).sqlite"
            return Place(url: path, file: path)
        case .postgres:
            return Place(url: try await onThread { try TestPostgres.freshDatabaseURL() }, file: nil)
        }
    }
}
