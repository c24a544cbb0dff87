import Foundation
import GridTestSupport
import Testing

/// `cpu --verify` (issue 15): a function task runs on two peers of different owners; its result is printed only when
/// they agree.
@Suite(.serialized) struct VerifiedTaskTests {
    @Test func aVerifiedTaskReturnsOnlyAnAgreedResultAndOtherwiseNamesBothPeers() async throws {
        let g = try await PeerGrid(label: "cpu-verify")
        defer { g.shutdown() }
        let mine = try await g.startPeer("alice-peer")
        // With one owner's peers only there is nobody to check against.
        let lonely = try await g.cli(["--port", "\(mine.port)", "cpu", "--verify", "--program", "def main(a, b): return a + b", "--args", "[10, 32]"])
        #expect(lonely.status != 0)
        #expect(lonely.stderr.contains("two online peers of different owners"), "\(lonely.stderr)")

        let bob = try await g.grid.user("bob")
        let theirs = try await g.startPeer("bob-peer", owner: bob)
        try await g.waitForMembership([mine, theirs])
        let agreed = try await g.cli(["--port", "\(mine.port)", "cpu", "--verify", "--program", "def main(a, b): return a + b", "--args", "[10, 32]"])
        #expect(agreed.status == 0, "\(agreed.stderr)\n\(g.grid.logs().suffix(3000))")
        #expect(agreed.stdout.contains("Result: 42 (agreed by alice-peer and bob-peer)"), "\(agreed.stdout)")

        // A function whose answer differs from machine to machine: no result, both peers named.
        let differing = try await g.cli([
            "--port", "\(mine.port)", "cpu", "--verify", "--program", "import os\ndef main(): return os.urandom(8).hex()", "--args", "[]",
        ])
        #expect(differing.status != 0)
        #expect(!differing.stdout.contains("Result:"))
        #expect(differing.stderr.contains("ERROR disagreement: peer alice-peer (alice) answered "), "\(differing.stderr)")
        #expect(differing.stderr.contains("; peer bob-peer (bob) answered "))
    }
}
