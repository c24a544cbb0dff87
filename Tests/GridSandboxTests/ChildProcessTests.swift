import Foundation
import Testing

@testable import GridSandbox

/// The one child-process supervisor: real children, each stopped by its own pid, every wait bounded.
@Suite struct ChildProcessTests {
    @Test func linesComeAsPrintedAndStandardErrorIsKept() async throws {
        let c = try ChildProcess(name: "talker", path: "/bin/sh", arguments: ["-c", "echo one; echo oops >&2; echo two; sleep 60"])
        defer { c.stop(grace: 1) }
        #expect(await c.nextLine(timeout: 30) == "one")
        #expect(await c.nextLine(timeout: 30) == "two")
        #expect(await c.nextLine(timeout: 0.2) == nil, "nothing more within the bound")
        #expect(c.output == ["one", "two"])
        #expect(c.isRunning)
        var kept = false
        for _ in 0..<300 where !kept {
            kept = c.errorLog == "oops\n"
            if !kept { try await Task.sleep(for: .milliseconds(10)) }
        }
        #expect(kept, "\(c.errorLog)")
    }

    @Test func standardErrorGoesToItsFile() async throws {
        let path = NSTemporaryDirectory() + "cg-child-\(UUID().uuidString).log"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let c = try ChildProcess(name: "logger", path: "/bin/sh", arguments: ["-c", "echo to-the-file >&2; exit 4"], errors: .file(path))
        #expect(await c.waitForExit(timeout: 30) == 4)
        #expect(c.stderrPath == path && c.errorLog == "to-the-file\n")
        #expect(await c.nextLine(timeout: 5) == nil, "an exited child with nothing printed has no next line")
    }

    @Test func aChildThatIgnoresSIGTERMIsKilledWithinTheGrace() throws {
        let c = try ChildProcess(name: "stubborn", path: "/bin/sh", arguments: ["-c", "trap '' TERM; echo up; while :; do sleep 0.1; done"])
        #expect(c.nextLine(timeout: 30) == "up")
        let started = ContinuousClock.now
        c.stop(grace: 0.3)
        #expect(c.hasExited)
        #expect(ContinuousClock.now - started < .seconds(20))
    }

    @Test(arguments: [0.0, -1.0, Double.nan, -Double.infinity])
    func aNonsenseBoundNeitherTrapsNorWaitsForEver(_ bound: Double) async throws {
        let c = try ChildProcess(name: "sleeper", path: "/bin/sleep", arguments: ["60"])
        #expect(Self.syncNextLine(c, bound) == nil)
        #expect(await c.nextLine(timeout: bound) == nil)
        #expect(await c.waitForExit(timeout: bound) == 128 + SIGKILL, "not exited within the bound: killed")
        #expect(c.hasExited)
    }

    /// The blocking form, as synchronous callers (the bench's reference servers) use it.
    static func syncNextLine(_ c: ChildProcess, _ bound: Double) -> String? { c.nextLine(timeout: bound) }

    @Test func aProgramThatCannotStartSaysWhich() {
        #expect(throws: GridChildError.self) { try ChildProcess(name: "ghost", path: "/nonexistent/cg-ghost", arguments: []) }
    }
}
