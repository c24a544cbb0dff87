import CGridSpawn
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A process forked by a thread of its own, which then waits for it: the one spawner of jobs (`JobExecution`) and
/// warm interpreters (`FunctionPool`). A parent-death signal (bwrap's `--die-with-parent`) fires when the forking
/// *thread* ends, and pool threads end when idle, so the fork happens on a thread that lives exactly as long as the
/// process. When the process ends, whatever it left in its process group is killed, and it is reaped.
final class ForkedProcess: Sendable {
    /// How it ended: its wait status and what it used.
    struct Ended: Sendable {
        var status: Int32
        var cpuSeconds: Double
        var peakMemoryKb: Int64
    }

    let pid: pid_t
    /// Its process group (it leads one), signalled only while it is not reaped.
    let group: GroupLeader
    private let ended = Mutex<Ended?>(nil)
    private let done = DispatchSemaphore(value: 0)

    private init(pid: pid_t) {
        self.pid = pid
        group = GroupLeader(pid: pid)
    }

    /// Forks `argv` (with `environment`) on a new thread through `spawn`, which gets the C strings and returns the pid
    /// (or -1 with `errno` set). Throws when it could not start.
    static func start(
        _ argv: [String], environment: [String: String],
        spawn: @escaping @Sendable (_ argv: [UnsafeMutablePointer<CChar>?], _ envp: [UnsafeMutablePointer<CChar>?]) -> pid_t
    ) throws -> ForkedProcess {
        let args = argv.map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            args.forEach { free($0) }
            envp.forEach { free($0) }
        }
        let strings = CStrings(argv: args, envp: envp)
        let started = Mutex<(process: ForkedProcess?, errno: Int32)?>(nil)
        let forked = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            let pid = spawn(strings.argv, strings.envp)
            let spawnErrno = errno
            let process = pid > 0 ? ForkedProcess(pid: pid) : nil
            started.withLock { $0 = (process, spawnErrno) }
            forked.signal()
            guard let process else { return }
            let (status, usage) = process.group.waitKillGroupAndReap()
            let cpu = Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6 + Double(usage.ru_stime.tv_sec)
                + Double(usage.ru_stime.tv_usec) / 1e6
            process.ended.withLock { $0 = Ended(status: status, cpuSeconds: cpu, peakMemoryKb: Int64(usage.ru_maxrss)) }
            process.done.signal()
        }
        forked.wait()
        let (process, spawnErrno) = started.withLock { $0 } ?? (nil, EINVAL)
        guard let process else { throw SpawnError(errno: spawnErrno, path: argv.first ?? "?") }
        return process
    }

    var isRunning: Bool { ended.withLock { $0 == nil } }

    /// Blocks until it has ended (and been reaped).
    func waitForExit() -> Ended {
        if let e = ended.withLock({ $0 }) { return e }
        done.wait()
        done.signal()
        return ended.withLock { $0 }!
    }

    /// Its wait status once it ended, waiting up to `seconds` for it; nil if it still runs.
    func waitForExit(seconds: Double) -> Int32? {
        if let e = ended.withLock({ $0 }) { return e.status }
        guard done.wait(timeout: .now() + (seconds.isFinite ? max(0, seconds) : 0)) == .success else { return nil }
        done.signal()
        return ended.withLock { $0 }?.status
    }
}
