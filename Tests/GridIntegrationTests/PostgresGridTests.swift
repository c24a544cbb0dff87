import Foundation
import GridClient
import GridCore
import GridSandbox
import GridTestSupport
import Testing

/// The manager's store in a scenario that runs on both (issue 16).
enum IntegrationStore: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case sqlite
    case postgres

    var testDescription: String { rawValue }

    /// What the manager's environment needs: nothing for SQLite (grid.sqlite in its data folder), a fresh database's URL
    /// in CAMPUSGRID_DATABASE for PostgreSQL (never on the command line: it carries the password).
    func managerEnvironment() async throws -> [String: String] {
        switch self {
        case .sqlite: [:]
        case .postgres: ["CAMPUSGRID_DATABASE": try await onThread { try TestPostgres.freshDatabaseURL() }]
        }
    }
}

extension Integration {
    /// A manager on PostgreSQL (issue 16): `--database` from the environment or a file, never the command line.
    @Suite struct OnPostgres {
        @Test func aGridWhoseManagerKeepsItsStoreInPostgreSQLRunsAJobAndSettlesItsCredits() async throws {
            let url = try await onThread { try TestPostgres.freshDatabaseURL() }
            let password = try #require(URLComponents(string: url)?.password)
            let grid = try TestGrid(label: "postgres")
            defer { grid.shutdown() }
            let manager = try await grid.startManager(extraEnvironment: ["CAMPUSGRID_DATABASE": url])
            let owner = try await grid.user("owner")
            try await grid.startWorker("w1", owner: owner)
            let alice = try await grid.user("alice")
            let script = try Scenario.script(grid, "quick.py", "print('hi from postgres')\n")
            // cpus 2, ram 3, minutes 7: hold = 5 + 4 + 3 + 7 = 19; a sub-minute run pays 5 + 4 + 3 + 1 = 13.
            let submitted = try await Scenario.submit(grid, token: alice.token!, [script, "--cpus", "2", "--ram", "3", "--minutes", "7"])
            #expect(submitted.hold == 19)
            let done = try await Scenario.waitForState(alice, submitted.job.id, [.completed, .failed])
            #expect(done.state == .completed)
            #expect(done.paid == 13)
            let log = try await grid.cli(["logs", "\(submitted.job.id)"], token: alice.token!)
            #expect(log.stdout.contains("hi from postgres"), "\(log.stdout) \(log.stderr)")
            #expect(try await alice.me().balance == 100 - 13)
            #expect(try await owner.me().balance == 100 + 13)
            #expect(try await Scenario.ledgerOK(grid))
            // The store is PostgreSQL's: no SQLite file in the data folder; the password is in no output.
            #expect(!FileManager.default.fileExists(atPath: grid.root + "/manager/grid.sqlite"))
            #expect(!manager.errorLog.contains(password))
            #expect(!manager.output.joined(separator: "\n").contains(password))
        }

        /// Runs a manager that must refuse to start; returns its exit status and what it printed.
        private func refused(_ grid: TestGrid, _ name: String, _ extra: [String], environment: [String: String] = [:]) async throws
            -> (Int32, String)
        {
            let m = try grid.spawn(
                name,
                ["manager", "--data-dir", grid.root + "/" + name, "--host", "127.0.0.1", "--port", "0", "--dashboard-port", "0", "--json"]
                    + extra, extraEnvironment: environment)
            let status = await m.waitForExit(timeout: 60)
            return (status, m.errorLog + m.output.joined(separator: "\n"))
        }

        @Test func aWrongPasswordOrAnUnreachableServerStopsTheManagerWithoutShowingThePassword() async throws {
            let url = try await onThread { try TestPostgres.freshDatabaseURL() }
            let grid = try TestGrid(label: "postgres-bad")
            defer { grid.shutdown() }
            // The right user and server, a wrong password, from a --database-file.
            let secret = "Wr0ngSecret\(UInt32.random(in: 0...UInt32.max))"
            var wrong = try #require(URLComponents(string: url))
            wrong.password = secret
            let file = grid.root + "/database-url"
            try (wrong.string! + "\n").write(toFile: file, atomically: true, encoding: .utf8)
            let (status, output) = try await refused(grid, "bad-password", ["--database-file", file])
            #expect(status != 0)
            #expect(output.contains("password authentication failed"), "\(output.suffix(2000))")
            #expect(!output.contains(secret))
            // Nothing listens on port 1: refused, and the password (from the environment) is not shown either.
            let unreachable = "postgres://campusgrid:\(secret)@127.0.0.1:1/nothing?sslmode=disable"
            let (status2, output2) = try await refused(grid, "unreachable", [], environment: ["CAMPUSGRID_DATABASE": unreachable])
            #expect(status2 != 0)
            #expect(output2.contains("PostgreSQL"), "\(output2.suffix(2000))")
            #expect(!output2.contains(secret))
        }

        @Test func malformedDatabaseValuesAreRefusedWithoutEchoingThem() async throws {
            let grid = try TestGrid(label: "postgres-malformed")
            defer { grid.shutdown() }
            let secret = "S3cret\(UInt32.random(in: 0...UInt32.max))"
            for (i, bad) in [
                "postgres://user:\(secret)@/nodb", "postgres://user:\(secret)@127.0.0.1:70000/db", "postgres://user:\(secret)@127.0.0.1:5432/",
                "postgresql://:\(secret)@127.0.0.1/db", "postgres://user:\(secret)@127.0.0.1/db?sslmode=\(secret)",
            ].enumerated() {
                let (status, output) = try await refused(grid, "malformed-\(i)", [], environment: ["CAMPUSGRID_DATABASE": bad])
                #expect(status != 0, "\(i)")
                #expect(output.contains("PostgreSQL URL"), "\(i): \(output.suffix(1000))")
                #expect(!output.contains(secret), "\(i)")
            }
            // An empty or missing --database-file, and --database with --database-file.
            let empty = grid.root + "/empty"
            try "\n".write(toFile: empty, atomically: true, encoding: .utf8)
            let (s1, o1) = try await refused(grid, "empty-file", ["--database-file", empty])
            #expect(s1 != 0 && o1.contains("is empty"), "\(o1.suffix(1000))")
            let (s2, o2) = try await refused(grid, "missing-file", ["--database-file", grid.root + "/no-such-file"])
            #expect(s2 != 0 && o2.contains("cannot read"), "\(o2.suffix(1000))")
            let (s3, o3) = try await refused(grid, "both", ["--database", grid.root + "/x.sqlite", "--database-file", empty])
            #expect(s3 != 0 && o3.contains("one choice"), "\(o3.suffix(1000))")
        }
    }
}
