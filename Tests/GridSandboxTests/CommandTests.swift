import Foundation
import Testing

@testable import GridSandbox

/// One-shot commands never wait without a bound (`Command`): what the worker's start-up probes (its Python, bubblewrap,
/// nvidia-smi) and the bench run. Real processes; each test's commands are bounded by its own limits.
@Suite struct CommandTests {
    @Test func aCommandsOutputAndStatusComeBack() throws {
        let r = try Command.run("/bin/sh", ["-c", "echo out; echo err >&2; exit 3"], timeout: 30)
        #expect(r.status == 3 && !r.timedOut && !r.succeeded)
        #expect(r.stdout == "out\n" && r.stderr == "err\n")
        #expect(Command.output("/bin/sh", ["-c", "echo fine"], timeout: 30) == "fine\n")
        #expect(Command.output("/bin/sh", ["-c", "echo no; exit 1"], timeout: 30) == nil)
    }

    @Test func aCommandThatOutlivesItsLimitIsKilledAndSaysSo() throws {
        let started = ContinuousClock.now
        let r = try Command.run("/bin/sh", ["-c", "echo before; exec sleep 60"], timeout: 0.5)
        #expect(r.timedOut && !r.succeeded)
        #expect(r.stdout == "before\n", "what came before the stop is kept")
        #expect(ContinuousClock.now - started < .seconds(30))
        #expect(Command.output("/bin/sh", ["-c", "exec sleep 60"], timeout: 0.2) == nil)
    }

    @Test func aCommandThatIgnoresSIGTERMIsKilled() throws {
        let started = ContinuousClock.now
        let r = try Command.run("/bin/sh", ["-c", "trap '' TERM; while :; do sleep 0.1; done"], timeout: 0.3)
        #expect(r.timedOut)
        #expect(ContinuousClock.now - started < .seconds(30))
    }

    @Test func aDaemonLeftHoldingTheOutputDoesNotHoldTheCaller() throws {
        // The command exits at once; the daemon it started keeps its stdout open for a minute (Foundation's own wait
        // would have waited for the daemon). Its output so far comes back.
        let started = ContinuousClock.now
        let r = try Command.run("/bin/sh", ["-c", "echo ready; sleep 60 & echo $!; exit 0"], timeout: 30)
        let lines = r.stdout.split(separator: "\n")
        // The daemon is this test's own: stopped by its pid.
        if lines.count == 2, let pid = Int32(lines[1]) { kill(pid, SIGKILL) }
        #expect(r.succeeded && lines.first == "ready" && lines.count == 2, "\(r)")
        #expect(ContinuousClock.now - started < .seconds(20))
    }

    @Test(arguments: [0.0, -1.0, Double.nan, -Double.infinity])
    func aNonsenseLimitStopsTheCommandAtOnceWithoutATrap(_ limit: Double) throws {
        let r = try Command.run("/bin/sh", ["-c", "exec sleep 60"], timeout: limit)
        #expect(r.timedOut)
    }

    @Test func aMissingProgramThrows() {
        #expect(throws: (any Error).self) { try Command.run("/nonexistent/cg-no-such-program", [], timeout: 5) }
    }
}
