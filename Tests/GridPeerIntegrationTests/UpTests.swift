import Foundation
import GridSandbox
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import GridCore
import GridTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite(.serialized) struct UpTests {
    /// `up --workers 3` prints every peer's port; the seed's examples then work against those ports with nothing but
    /// the login `up` stored.
    @Test func upPrintsEachPeersPortsAndTheSeedExamplesWorkAgainstThem() async throws {
        let grid = try TestGrid(label: "up")
        defer { grid.shutdown() }
        let up = try grid.spawn("up", ["up", "--workers", "3", "--peer-port", "0", "--json", "--data-dir", grid.root + "/local"])
        let line = try #require(up.nextLine(timeout: 120), "up printed nothing:\n\(up.errorLog.suffix(3000))")
        let info = try JSONDecoder().decode([String: String].self, from: Data(line.utf8))
        let dashboard = try #require(info["dashboard"])
        let ports = (info["peer_ports"] ?? "").split(separator: ",").compactMap { Int($0) }
        #expect(ports.count == 3 && Set(ports).count == 3 && ports.allSatisfy { $0 > 0 }, "\(line)")
        let webPorts = (info["web_ports"] ?? "").split(separator: ",").compactMap { Int($0) }
        #expect(webPorts.count == 3 && webPorts.allSatisfy { $0 > 0 }, "\(line)")
        // Each peer's status page answers.
        for web in webPorts {
            let (data, response) = try await URLSession.shared.data(from: URL(string: "http://127.0.0.1:\(web)/status.json")!)
            #expect((response as? HTTPURLResponse)?.statusCode == 200)
            let status = try JSONDecoder().decode([String: JSONValue].self, from: data)
            #expect(status["tier"] == .string("restricted"), "\(String(decoding: data, as: UTF8.self))")
        }

        // The CLI, with no token given: it uses the login `up` stored for its manager.
        func cli(_ args: [String]) throws -> String {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: CampusGridBinary.path)
            p.arguments = args
            var env = grid.environment
            env["CAMPUSGRID_MANAGER"] = dashboard
            p.environment = env
            let out = Pipe()
            p.standardOutput = out
            p.standardError = FileHandle.nullDevice
            try p.run()
            let data = out.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let r = try cli(["--port", "\(ports[0])", "cpu", "--program", "def main(a, b): return a + b", "--args", "[10, 32]"])
        #expect(r == "Result: 42", "\(grid.logs())")
        _ = try cli(["--port", "\(ports[0])", "set-mem", "--key", "user:id", "--value", "101"])
        #expect(try cli(["--port", "\(ports[2])", "get-mem", "--key", "user:id"]) == "Memory value: 101")
    }

    /// `up` killed by SIGKILL (no chance to stop anything): its manager and workers notice (`--parent-pid`, a pidfd)
    /// and stop themselves.
    @Test func aKilledUpLeavesNoManagerOrWorkerRunning() async throws {
        let grid = try TestGrid(label: "up-killed")
        defer { grid.shutdown() }
        // A person's token and another store in up's environment go to none of its children (a worker's jobs in the
        // restricted tier read its environment; a manager opened the store named there instead of this grid's).
        let up = try grid.spawn(
            "up", ["up", "--workers", "1", "--peer-port", "0", "--json", "--data-dir", grid.root + "/local"],
            extraEnvironment: ["CAMPUSGRID_TOKEN": "cgu_not_for_the_children", "CAMPUSGRID_DATABASE": grid.root + "/nowhere/elsewhere.sqlite"])
        _ = try #require(up.nextLine(timeout: 120), "up printed nothing:\n\(up.errorLog.suffix(3000))")
        let children = Self.children(of: up.pid)
        #expect(children.count == 2, "up's children: \(children)")
        for child in children {
            let environ = (try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(child)/environ"))).map { String(decoding: $0, as: UTF8.self) } ?? ""
            #expect(!environ.isEmpty, "no environment read for \(child)")
            #expect(!environ.contains("CAMPUSGRID_TOKEN=") && !environ.contains("CAMPUSGRID_DATABASE="), "child \(child) got them")
        }
        kill(up.pid, SIGKILL)
        let gone = await eventually(timeout: 30, interval: 0.1) { children.allSatisfy { !ProcessWatch.exists($0) || Self.isZombie($0) } }
        #expect(gone, "still running after up was killed: \(children.filter { ProcessWatch.exists($0) && !Self.isZombie($0) })")
    }

    /// `--parent-pid` of 0 or below names a process group, not a process: the manager and the worker refuse it with
    /// the reason instead of watching it for ever.
    @Test func aParentPidThatNamesNoProcessIsRefused() throws {
        for command in ["manager", "worker"] {
            for pid in ["0", "-1", "-2147483648"] {
                let p = Process()
                p.executableURL = URL(fileURLWithPath: CampusGridBinary.path)
                p.arguments = [command, "--parent-pid=\(pid)"]
                let err = Pipe()
                p.standardError = err
                p.standardOutput = FileHandle.nullDevice
                try p.run()
                let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
                p.waitUntilExit()
                #expect(p.terminationStatus != 0, "\(command) --parent-pid \(pid) ran")
                #expect(text.contains("--parent-pid must be a process id above 0"), "\(command) --parent-pid \(pid): \(text)")
            }
        }
    }

    /// The processes whose parent is `pid` (from /proc).
    static func children(of pid: Int32) -> [Int32] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap(Int32.init).filter { parent(of: $0) == pid }
    }

    static func stat(_ pid: Int32) -> [Substring]? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = text.lastIndex(of: ")") else { return nil }
        // After the command name: state, ppid, …
        return text[text.index(after: close)...].split(separator: " ")
    }

    static func parent(of pid: Int32) -> Int32? { stat(pid).flatMap { $0.count > 1 ? Int32($0[1]) : nil } }

    /// An ended process not yet reaped by its new parent (init) counts as gone.
    static func isZombie(_ pid: Int32) -> Bool { stat(pid)?.first == "Z" }
}
