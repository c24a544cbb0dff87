import Foundation
import GridSandbox
import GridTestSupport
import Synchronization
import Testing

/// `ProcessWatch`: the call comes once the watched process ends, whoever its parent is, and at once for a process
/// that does not exist.
@Suite struct ProcessWatchTests {
    final class Flag: Sendable {
        private let value = Atomic<Bool>(false)
        func raise() { value.store(true, ordering: .sequentiallyConsistent) }
        var raised: Bool { value.load(ordering: .sequentiallyConsistent) }
    }

    @Test func theCallComesWhenTheProcessEndsNotBefore() async throws {
        let sleeper = Process()
        sleeper.executableURL = URL(fileURLWithPath: "/bin/sleep")
        sleeper.arguments = ["60"]
        try sleeper.run()
        let pid = sleeper.processIdentifier
        let flag = Flag()
        ProcessWatch.whenEnded(pid) { flag.raise() }
        #expect(ProcessWatch.exists(pid))
        #expect(!flag.raised, "called while the process still runs")
        kill(pid, SIGKILL)
        sleeper.waitUntilExit()
        let called = await eventually(timeout: 10, interval: 0.02) { flag.raised }
        #expect(called)
        #expect(!ProcessWatch.exists(pid))
    }

    @Test func aProcessThatDoesNotExistIsCalledAtOnce() async {
        // Above the largest PID the kernel hands out (pid_max is at most 2^22).
        let flag = Flag()
        ProcessWatch.whenEnded(Int32(1 << 23)) { flag.raise() }
        let called = await eventually(timeout: 10, interval: 0.02) { flag.raised }
        #expect(called)
        // Init exists, and is not this process's to signal: it still counts as running.
        #expect(ProcessWatch.exists(1))
    }

    /// 0 and negative numbers name process groups (`kill(0, 0)` succeeds): never taken for a running process.
    @Test(arguments: [Int32(0), -1, Int32.min])
    func aNumberThatNamesNoSingleProcessHasEnded(pid: Int32) async {
        #expect(!ProcessWatch.exists(pid))
        let flag = Flag()
        ProcessWatch.whenEnded(pid) { flag.raise() }
        let called = await eventually(timeout: 10, interval: 0.02) { flag.raised }
        #expect(called)
    }
}
