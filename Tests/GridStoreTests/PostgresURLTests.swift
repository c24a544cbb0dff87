import Foundation
@testable import GridStore
import Testing

/// The `--database` value as a claim (issue 16): parsed strictly, and never repeated with its password.
@Suite("PostgreSQL URLs")
struct PostgresURLTests {
    @Test func aFullURLIsParsedAndItsDescriptionHasNoPassword() throws {
        let url = try #require(try PostgresURL(parsing: "postgres://grid:s3cr%40t@db.campus.example:6543/grid_prod?sslmode=require"))
        #expect(url.host == "db.campus.example")
        #expect(url.port == 6543)
        #expect(url.username == "grid")
        #expect(url.password == "s3cr@t")
        #expect(url.database == "grid_prod")
        #expect(url.tls == .require)
        #expect(url.description == "postgres://grid@db.campus.example:6543/grid_prod")
        #expect(!url.description.contains("s3cr"))
    }

    @Test func defaultsArePort5432AndPreferredTLS() throws {
        let url = try #require(try PostgresURL(parsing: "postgresql://grid@127.0.0.1/grid"))
        #expect(url.port == 5432)
        #expect(url.password == nil)
        #expect(url.tls == .prefer)
        #expect(try PostgresURL(parsing: "postgres://u:p@[::1]:5433/g?sslmode=disable")?.host == "::1")
        #expect(try PostgresURL(parsing: "postgres://u:p@h/g?sslmode=disable")?.tls == .disable)
    }

    @Test func anythingElseIsASQLitePath() throws {
        for path in ["grid.sqlite", "/var/lib/campusgrid/grid.sqlite", "", "postgres", "sqlite://x", "./postgres://x"] {
            #expect(try PostgresURL(parsing: path) == nil, "\(path)")
        }
    }

    @Test func malformedURLsAreRefusedWithoutRepeatingThem() {
        let secret = "Pw\(UInt32.random(in: 0...UInt32.max))"
        for bad in [
            "postgres://u:\(secret)@/g", "postgres://u:\(secret)@h:0/g", "postgres://u:\(secret)@h:-1/g", "postgres://u:\(secret)@h:65536/g",
            "postgres://u:\(secret)@h:\(Int.max)/g", "postgres://u:\(secret)@h:5432/", "postgres://u:\(secret)@h:5432", "postgres://:\(secret)@h/g",
            "postgres://u:\(secret)@h/g/extra", "postgres://u:\(secret)@h/g?sslmode=\(secret)", "postgres://u:\(secret)@h:port/g",
        ] {
            do {
                _ = try PostgresURL(parsing: bad)
                Issue.record("accepted \(bad)")
            } catch {
                #expect(!"\(error)".contains(secret), "\(error)")
            }
        }
    }

    @Test func placeholdersAreNumberedOutsideLiteralsOnly() {
        #expect(PostgresSession.numberPlaceholders("SELECT ? , '?', \"?\" FROM t WHERE a = ? AND b = 'it''s ?' AND c = ?")
            == "SELECT $1 , '?', \"?\" FROM t WHERE a = $2 AND b = 'it''s ?' AND c = $3")
        #expect(PostgresSession.numberPlaceholders("no placeholders") == "no placeholders")
    }
}
