import Foundation
import GridClient
import GridCore
import GridTestSupport
import Testing

/// Whole-grid scenarios with the real `campusgrid` binary, in three serialized chains that run beside each other (and
/// beside the other targets' suites, within the suite's width of 4). Each scenario starts its own manager and workers;
/// one chain held every scenario once, and its ~9 minutes were the whole test phase while the other slots sat idle.
/// Balanced by measured time (idle, 2 cores): about 4, 2.5 and 3 minutes.
/// The longest scenario, the chaos run, and the quick ones.
@Suite(.serialized)
enum Integration {}

/// Faults of managers and workers: kills, restarts, several managers.
@Suite(.serialized)
enum IntegrationFaults {}

/// What crosses the wire: TLS, hostile workers, the job lifecycle through the CLI.
@Suite(.serialized)
enum IntegrationWire {}

/// Helpers shared by the scenarios.
enum Scenario {
    /// Writes a Python script into the grid's folder and returns its path.
    static func script(_ grid: TestGrid, _ name: String, _ source: String) throws -> String {
        let path = grid.root + "/" + name
        try source.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    static func submit(_ grid: TestGrid, token: String, _ args: [String]) throws -> API.SubmitResponse {
        let r = try grid.cli(["submit", "--json"] + args, token: token)
        guard r.status == 0 else { throw TestGridError("submit failed (\(r.status)): \(r.stderr)") }
        return try GridJSONTest.decode(API.SubmitResponse.self, r.stdout)
    }

    static func waitForState(_ client: GridClient, _ id: JobID, _ states: Set<JobState>, timeout: Double = 60) async throws -> API.JobStatus {
        var last: API.JobStatus?
        let ok = try await eventually(timeout: timeout) {
            last = try await client.job(id)
            return states.contains(last!.state)
        }
        guard ok, let last else { throw TestGridError("job \(id) never reached \(states); last: \(String(describing: last?.state))") }
        return last
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
