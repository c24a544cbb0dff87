import Foundation
import GridClient
import GridCore
import GridProtocol
import GridSandbox
import GridTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Issue 16, acceptance 4: while no manager is up (every manager down, or a leader change in progress), peers keep
/// serving what they do among themselves, and learn the membership again when a manager returns.
@Suite("Peers without a manager")
struct NoManagerTests {
    @Test func memoryFilesAndConfidentialTasksGoOnWithNoManagerAndMembershipCatchesUp() async throws {
        let g = try await PeerGrid(label: "no-manager")
        defer { g.shutdown() }
        let peers = try await g.startPeers(2)
        let (gridPort, httpPort) = (g.grid.gridPort, g.grid.httpPort)
        // Used once while the manager is up (the peers then know this user).
        #expect(try await g.cli(["--port", "\(peers[0].port)", "set-mem", "--key", "before", "--value", "1"]).status == 0)

        let manager = try #require(g.grid.manager)
        manager.signal(SIGKILL)
        _ = await manager.waitForExit(timeout: 10)

        let set = try await g.cli(["--port", "\(peers[0].port)", "set-mem", "--key", "during", "--value", "42"])
        #expect(set.status == 0, "SET_MEM with no manager: \(set.stderr)")
        let get = try await g.cli(["--port", "\(peers[1].port)", "get-mem", "--key", "during"])
        #expect(get.status == 0 && get.stdout.contains("42"), "GET_MEM with no manager: \(get.stdout) \(get.stderr)")
        let before = try await g.cli(["--port", "\(peers[1].port)", "get-mem", "--key", "before"])
        #expect(before.status == 0 && before.stdout.contains("1"), "\(before.stderr)")

        let file = g.grid.root + "/note.txt"
        try "kept by peers\n".write(toFile: file, atomically: true, encoding: .utf8)
        let put = try await g.cli(["--port", "\(peers[0].port)", "put-file", "--filename", "note.txt", "--filepath", file])
        #expect(put.status == 0, "PUT_FILE with no manager: \(put.stderr)")
        let back = g.grid.root + "/back.txt"
        let got = try await g.cli(["--port", "\(peers[1].port)", "get-file", "--filename", "note.txt", "--save", back])
        #expect(got.status == 0, "GET_FILE with no manager: \(got.stderr)")
        #expect((try? String(contentsOfFile: back, encoding: .utf8)) == "kept by peers\n")

        let confidential = try await g.cli(["--port", "\(peers[0].port)", "cpu", "--confidential", "--program", "def main(a, b): return a * b", "--args", "[6, 7]"])
        #expect(confidential.status == 0 && confidential.stdout.contains("42"), "a confidential task with no manager: \(confidential.stdout) \(confidential.stderr)")
        let local = try await g.cli(["--port", "\(peers[0].port)", "cpu", "--program", "def main(): return 'ran here'"])
        #expect(local.status == 0 && local.stdout.contains("ran here"), "a public task runs locally with no manager: \(local.stdout) \(local.stderr)")

        // A manager returns (on the same ports, as a restarted manager or the next leader would be reached): the
        // workers reconnect and every peer learns the membership again.
        try await g.grid.startManager(gridPort: gridPort, httpPort: httpPort)
        try await g.waitForMembership(peers)
    }
}
