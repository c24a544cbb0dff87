import Foundation
import GridClient
import GridCore
import GridTestSupport
import Testing

/// Whole-grid scenarios with the real `campusgrid` binary. Two parent suites, each serialized: each scenario starts its
/// own manager and workers, and more at once would fight over the machine's two cores. One chain of them all took
/// about 4 minutes on an idle machine, beside the rest of the suite for only its first; as two chains of about two
/// minutes each, side by side, they end with the rest.
@Suite(.serialized)
enum Integration {}

/// The scenarios that kill, freeze or replace a manager (one manager or several): the second chain, beside `Integration`.
@Suite(.serialized)
enum ManagerFaults {}

/// Helpers shared by the scenarios.
enum Scenario {
    /// Writes a Python script into the grid's folder and returns its path.
    static func script(_ grid: TestGrid, _ name: String, _ source: String) throws -> String {
        let path = grid.root + "/" + name
        try source.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// Waits for the CLI without holding a thread (a blocked thread is one of the two a 2-core machine's tests share).
    static func submit(_ grid: TestGrid, token: String, _ args: [String]) async throws -> API.SubmitResponse {
        let r = try await grid.cli(["submit", "--json"] + args, token: token)
        guard r.status == 0 else { throw TestGridError("submit failed (\(r.status)): \(r.stderr)") }
        return try GridJSONTest.decode(API.SubmitResponse.self, r.stdout)
    }

    static func waitForState(_ client: GridClient, _ id: JobID, _ states: Set<JobState>, timeout: Double = 60) async throws -> API.JobStatus {
        try await waitForJob(client, id, in: states, timeout: timeout)
    }

    /// The ledger invariant, checked as the grid's admin (the check is an admin route).
    static func ledgerOK(_ grid: TestGrid) async throws -> Bool {
        let c = try await grid.admin().ledgerCheck()
        return c["ok"] == .bool(true)
    }
}

enum GridJSONTest {
    static func decode<T: Decodable>(_ type: T.Type, _ text: String) throws -> T {
        let d = JSONDecoder()
        d.keyDecodingStrategy = .convertFromSnakeCase
        let line = text.split(separator: "\n").first.map(String.init) ?? text
        return try d.decode(type, from: Data(line.utf8))
    }
}
