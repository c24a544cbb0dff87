import Foundation
import GridSandbox

#if canImport(Glibc)
import Glibc
#endif

/// The reference for everything that starts a process: `posix_spawn` and `waitpid`, nothing else. Output goes to
/// /dev/null; the environment is the same minimal one a job gets (so both start the interpreter the same way).
public enum PlainSpawn {
    /// Runs `path arguments…` in `directory` and returns the seconds from spawn to exit. Throws when it cannot start
    /// or exits non-zero.
    public static func run(_ path: String, _ arguments: [String], directory: String? = nil) throws -> Double {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        // (The working directory is not changed: Glibc's addchdir is not visible to Swift here; pass absolute paths.)
        _ = directory
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK))
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        let environment: [String] = [
            "PATH=/usr/local/bin:/usr/bin:/bin", "HOME=\(directory ?? "/tmp")", "TMPDIR=/tmp", "LANG=C.UTF-8", "PYTHONUNBUFFERED=1",
            "PYTHONDONTWRITEBYTECODE=1",
        ]
        let env = environment.map { strdup($0) } + [nil]
        defer {
            argv.forEach { free($0) }
            env.forEach { free($0) }
        }
        var pid: pid_t = 0
        let start = Stats.now()
        let rc = posix_spawn(&pid, path, &actions, &attributes, argv, env)
        guard rc == 0 else { throw BenchError("cannot start \(path): \(String(cString: strerror(rc)))") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let elapsed = Stats.now() - start
        guard status == 0 else { throw BenchError("\(path) \(arguments.joined(separator: " ")) exited with status \(status)") }
        return elapsed
    }

    /// Runs `count` copies of the same command, `concurrency` at a time; returns the whole wall time in seconds.
    public static func runMany(_ path: String, _ arguments: [String], directory: String? = nil, count: Int, concurrency: Int) throws -> Double {
        let next = Counter()
        let failure = Collected()
        let group = DispatchGroup()
        let start = Stats.now()
        for _ in 0..<max(1, concurrency) {
            group.enter()
            Thread.detachNewThread {
                defer { group.leave() }
                while next.take() < count {
                    do { _ = try run(path, arguments, directory: directory) } catch {
                        failure.set(Data("\(error)".utf8))
                        return
                    }
                }
            }
        }
        group.wait()
        let elapsed = Stats.now() - start
        let f = failure.get()
        if !f.isEmpty { throw BenchError(String(decoding: f, as: UTF8.self)) }
        return elapsed
    }
}

/// A shared counter handing out 0, 1, 2, …
final class Counter: @unchecked Sendable {
    // Safe: every access holds `lock`.
    private let lock = NSLock()
    private var value = 0
    func take() -> Int {
        lock.lock()
        defer { lock.unlock() }
        value += 1
        return value - 1
    }
}
