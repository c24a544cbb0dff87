import AsyncHTTPClient
import Foundation
import GridClient
import GridCore
import GridSandbox
import NIOCore
import NIOFoundationCompat

#if canImport(Glibc)
import Glibc
#endif

/// The bench's highly available grid (issue 16): `managers` manager processes on one PostgreSQL database, sharing one
/// data folder (one identity), each on fixed free ports so a restarted one comes back where the worker looks for it,
/// and one worker that lists them all.
final class HAGrid: @unchecked Sendable {
    // Safe: used by one bench task at a time; children are only signalled by pid.
    struct Slot {
        var gridPort: Int
        var httpPort: Int
        var process: ServerProcess?
        var url: String { "http://127.0.0.1:\(httpPort)" }
    }

    private(set) var managers: [Slot]
    private var worker: ServerProcess?
    private let binary: String
    private let root: String
    private let environment: [String: String]
    private let arguments: (Slot) -> [String]
    private(set) var token: String = ""

    private init(binary: String, root: String, environment: [String: String], slots: [Slot], arguments: @escaping (Slot) -> [String]) {
        self.binary = binary
        self.root = root
        self.environment = environment
        self.managers = slots
        self.arguments = arguments
    }

    static func start(binary: String, managers count: Int, databaseURL: String, leaderLease: Double) async throws -> HAGrid {
        let root = NSTemporaryDirectory() + "campusgrid-bench-ha-\(UUID().uuidString.prefix(8))"
        let env = try LocalGrid.childEnvironment(root: root)
        // The database URL carries the cluster's password: in the managers' environment (never on a command line), and
        // not in the worker's, which runs jobs.
        var managerEnvironment = env
        managerEnvironment["CAMPUSGRID_DATABASE"] = databaseURL
        var slots: [Slot] = []
        for _ in 0..<count { slots.append(Slot(gridPort: try Shell.freePort(), httpPort: try Shell.freePort())) }
        let grid = HAGrid(binary: binary, root: root, environment: managerEnvironment, slots: slots) { slot in
            [
                "manager", "--data-dir", root + "/manager", "--host", "127.0.0.1", "--port", "\(slot.gridPort)", "--dashboard-port",
                "\(slot.httpPort)", "--leader-lease", "\(leaderLease)", "--json",
            ] + LocalGrid.stopWithTheBench
        }
        do {
            for i in 0..<count { try await grid.restart(i) }
            let leader = try await grid.leader(timeout: 30)
            var owner = GridClient(baseURL: grid.managers[leader].url)
            let password = UUID().uuidString
            owner.token = try await owner.register("bench-owner", password: password).token
            let workerToken = try await owner.createToken(kind: "worker").token
            var client = GridClient(baseURL: grid.managers[leader].url)
            grid.token = try await client.register("bench", password: password).token
            client.token = grid.token
            let tokenFile = root + "/worker-token"
            try PrivateFile.write(Data((workerToken + "\n").utf8), to: tokenFile)
            let list = grid.managers.map { "127.0.0.1:\($0.gridPort)" }.joined(separator: ",")
            let w = try ServerProcess(
                name: "worker", path: binary,
                arguments: [
                    "worker", "-m", list, "--token-file", tokenFile, "--data-dir", root + "/worker", "-n", "bench-ha", "--cpus", "1", "--slots", "1",
                    "--memory", "2", "--port", "\(try Shell.freePort())", "--json", "--allow-unsandboxed",
                ] + LocalGrid.stopWithTheBench,
                environment: env)
            grid.worker = w
            guard await w.nextLine(timeout: 60) != nil else { throw BenchError("the HA bench's worker did not register:\n\(w.errorLog.suffix(2000))") }
            return grid
        } catch {
            grid.stop()
            throw error
        }
    }

    /// (Re)starts manager `i` on its ports and waits until it says it is ready.
    func restart(_ i: Int) async throws {
        let p = try ServerProcess(name: "manager-\(i)", path: binary, arguments: arguments(managers[i]), environment: environment)
        managers[i].process = p
        guard await p.nextLine(timeout: 60) != nil else { throw BenchError("manager \(i) did not start:\n\(p.errorLog.suffix(2000))") }
    }

    func kill(_ i: Int) {
        guard let p = managers[i].process else { return }
        Glibc.kill(p.pid, SIGKILL)
        p.stop(grace: 5)
        managers[i].process = nil
    }

    func client(_ i: Int) -> GridClient {
        var c = GridClient(baseURL: managers[i].url)
        c.token = token
        return c
    }

    /// The index of the manager that says it leads (bounded wait).
    func leader(timeout: Double) async throws -> Int {
        let deadline = Stats.now() + timeout
        while Stats.now() < deadline {
            for (i, m) in managers.enumerated() where m.process != nil {
                if await Self.role(of: m.url) == "leader" { return i }
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw BenchError("no manager leads after \(timeout) s\n\(logs)")
    }

    /// What `GET /api/v1/leader` says this manager is (`leader` or `follower`); nil when it does not answer.
    static func role(of url: String) async -> String? {
        guard let response = try? await HTTPClient.shared.execute(HTTPClientRequest(url: url + "/api/v1/leader"), timeout: .seconds(2)),
            let body = try? await response.body.collect(upTo: 1 << 16),
            let object = try? JSONSerialization.jsonObject(with: Data(buffer: body)) as? [String: Any]
        else { return nil }
        return object["role"] as? String
    }

    /// Submits to manager `i`, again while it answers that it is not the leader (bounded).
    func submitRetrying(to i: Int, _ request: API.SubmitRequest, timeout: Double) async throws -> API.JobStatus {
        let deadline = Stats.now() + timeout
        // One key for every attempt: an attempt whose answer was lost is found again, not made twice.
        let key = UUID().uuidString
        var last: (any Error)?
        while Stats.now() < deadline {
            do {
                return try await client(i).submit(request, key: key).job
            } catch {
                last = error
                try await Task.sleep(for: .milliseconds(20))
            }
        }
        throw BenchError("manager \(i) took no job within \(timeout) s: \(last.map { "\($0)" } ?? "")")
    }

    func stop() {
        worker?.stop()
        worker = nil
        for i in managers.indices {
            managers[i].process?.stop()
            managers[i].process = nil
        }
        try? FileManager.default.removeItem(atPath: root)
    }

    var logs: String {
        ([worker].compactMap { $0 } + managers.compactMap(\.process)).map { "== \($0.name)\n\($0.errorLog.suffix(1500))" }.joined(separator: "\n")
    }
}
