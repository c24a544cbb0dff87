import Foundation
import GridClient
import GridCore
import GridSandbox
import GridTestSupport
import Testing

/// Whole-grid scenarios for the sandbox tiers: real manager and worker processes on 127.0.0.1.
@Suite(.serialized)
struct SandboxGridTests {
    static let examples = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("examples").path

    /// The worker flags for a tier; OCI also needs a Podman service, returned for the caller to stop.
    static func workerFlags(_ tier: String) throws -> ([String], PodmanService?) {
        switch tier {
        case "oci":
            let p = try PodmanService()
            return (["--sandbox", "podman", "--engine-socket", p.socket, "--image", PodmanService.image], p)
        case "bwrap": return (["--sandbox", "bwrap"], nil)
        default: return (["--sandbox", "none"], nil)
        }
    }

    func json(_ text: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }

    @Test("workers --json and the job's status show the tier", arguments: ["bwrap", "oci"])
    func tierIsVisible(tier: String) async throws {
        let grid = try TestGrid(label: "tier")
        defer { grid.shutdown() }
        try await grid.startManager()
        let alice = try await grid.user("alice")
        let (flags, podman) = try Self.workerFlags(tier)
        if let podman { grid.afterShutdown { podman.stop() } }
        try await grid.startWorker("w1", owner: alice, extra: flags)
        let workers = try await grid.cli(["workers", "--json"], token: alice.token)
        #expect(workers.stdout.contains("\"tier\":\"\(tier)\"") || workers.stdout.contains("\"tier\" : \"\(tier)\""), "\(workers.stdout)")
        let done = try await grid.cli(["submit", Self.examples + "/sum_of_squares.py", "--wait", "--json", "--isolation", tier], token: alice.token)
        #expect(done.status == 0, "\(done.stderr)\n\(grid.logs())")
        let status = try json(done.stdout)
        #expect(status["tier"] as? String == tier)
        #expect(status["state"] as? String == "completed")
        let text = try await grid.cli(["status", "\(status["id"] as? Int ?? 0)"], token: alice.token)
        #expect(text.stdout.contains("sandbox:"), "\(text.stdout)")
    }

    @Test("the seed's example jobs pass in every tier", arguments: ["none", "bwrap", "oci"])
    func examplesPass(tier: String) async throws {
        let grid = try TestGrid(label: "examples")
        defer { grid.shutdown() }
        try await grid.startManager()
        let alice = try await grid.user("alice")
        let (flags, podman) = try Self.workerFlags(tier)
        if let podman { grid.afterShutdown { podman.stop() } }
        // random_forest.py declares numpy and scikit-learn (PEP 723): the worker builds that environment from the
        // project's wheel folder, never from an index.
        try await grid.startWorker("w1", owner: alice, extra: flags + (try LocalWheels.workerArguments(needs: LocalWheels.seedExample)))
        for example in ["sum_of_squares.py", "matrix_product.py", "random_forest.py"] {
            let r = try await grid.cli(["submit", Self.examples + "/" + example, "--ram", "2", "--minutes", "5", "--wait", "--json"], token: alice.token, timeout: 300)
            #expect(r.status == 0, "\(example) in \(tier): \(r.stdout)\n\(r.stderr)")
            if example == "random_forest.py" {
                let log = try await alice.logs(JobID(try json(r.stdout)["id"] as? Int ?? 0), from: 0).text
                #expect(log.contains("=== preparing environment ===") && log.contains("Accuracy: "), "\(log)")
            }
        }
    }

    @Test("a fork bomb fails as too many processes and the worker stays healthy")
    func forkBombLeavesWorkerHealthy() async throws {
        let grid = try TestGrid(label: "bomb")
        defer { grid.shutdown() }
        try await grid.startManager()
        let alice = try await grid.user("alice")
        let worker = try await grid.startWorker("w1", owner: alice, extra: ["--sandbox", "bwrap"])
        let bomb = grid.root + "/bomb.py"
        try Data(HostileScripts.forkBomb.utf8).write(to: URL(fileURLWithPath: bomb))
        let r = try await grid.cli(["submit", bomb, "--wait", "--json"], token: alice.token, timeout: 200)
        let status = try json(r.stdout)
        #expect(status["state"] as? String == "failed")
        #expect((status["reason"] as? String)?.hasPrefix("too many processes") == true, "\(r.stdout)")
        #expect(worker.isRunning)
        let next = try await grid.cli(["submit", Self.examples + "/sum_of_squares.py", "--wait", "--json"], token: alice.token)
        #expect(next.status == 0, "\(next.stdout)\n\(grid.logs())")
    }

    @Test("--sandbox bwrap without bubblewrap fails at start with a clear message")
    func missingBubblewrapFailsAtStart() throws {
        let grid = try TestGrid(label: "nobwrap")
        defer { grid.shutdown() }
        let r = try grid.cli(
            ["worker", "-m", "127.0.0.1:9", "--token", "cgw_x", "--data-dir", grid.root + "/w", "--sandbox", "bwrap", "--bwrap", "/nonexistent/bwrap"],
            timeout: 60)
        #expect(r.status != 0)
        #expect(r.stderr.contains("bubblewrap") && r.stderr.contains("/nonexistent/bwrap"), "\(r.stderr)")
    }
}
