import Foundation
import GridTestSupport
import Testing

/// The four client examples of seed 003, as written there (with `campusgrid` for `python client.py`).
@Suite(.serialized) struct SeedExampleTests {
    /// In plain text (loopback, as `up` runs it) and over TLS (every port; the CLI given the grid's CA).
    @Test(arguments: [false, true])
    func theFourSeedExamplesWorkAsWritten(tls: Bool) async throws {
        let g = try await PeerGrid(label: tls ? "seed-tls" : "seed", managerExtra: tls ? ["--tls"] : [])
        defer { g.shutdown() }
        let peers = try await g.startPeers(2)
        let p1 = "\(peers[0].port)", p2 = "\(peers[1].port)"
        let ca = tls ? ["--ca", g.grid.root + "/manager/ca.pem"] : []
        func cli(_ args: [String]) async throws -> CLIResult { try await g.cli(args + ca) }

        // Example 1: remote CPU execution.
        let r1 = try await cli(["--port", p1, "cpu", "--program", "def main(a, b): return a + b", "--args", "[10, 32]"])
        #expect(r1.status == 0, "\(r1.stderr)\n\(g.grid.logs())")
        #expect(r1.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "Result: 42")

        // Example 2: confidential execution (a Python literal as --args).
        let r2 = try await cli(["--port", p1, "cpu", "--program", "def main(s): return s.upper()", "--args", "['secret']", "--confidential"])
        #expect(r2.status == 0, "\(r2.stderr)")
        #expect(r2.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "Result: SECRET")

        // Example 3: set and get a memory value.
        let r3 = try await cli(["--port", p1, "set-mem", "--key", "user:id", "--value", "101"])
        #expect(r3.status == 0, "\(r3.stderr)")
        let r4 = try await cli(["--port", p1, "get-mem", "--key", "user:id"])
        #expect(r4.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "Memory value: 101", "\(r4.stderr)")

        // Example 4: upload and download a file.
        let dir = g.grid.root + "/client"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try "hello distributed world\n".write(toFile: dir + "/my_file.txt", atomically: true, encoding: .utf8)
        let r5 = try await cli(["--port", p2, "put-file", "--filename", "remote_copy.txt", "--filepath", dir + "/my_file.txt"])
        #expect(r5.status == 0, "\(r5.stderr)")
        let r6 = try await cli(["--port", p2, "get-file", "--filename", "remote_copy.txt", "--save", dir + "/downloaded_copy.txt"])
        #expect(r6.status == 0, "\(r6.stderr)")
        #expect(try String(contentsOfFile: dir + "/downloaded_copy.txt", encoding: .utf8) == "hello distributed world\n")
    }
}

