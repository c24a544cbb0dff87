import CGridSpawn
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A rootless bwrap job's processes, found through its PID namespace (its processes carry no environment marker:
/// `--clearenv`). Everything in the namespace dies with the namespace's first process, `setsid` or not, so killing
/// every member is a complete teardown; members are found by the namespace's inode, even after the job's first
/// process was reparented away from bwrap.
final class JobNamespace: Sendable {
    /// The bwrap process this worker started (0 until it has started).
    private let sandboxPid = Mutex<pid_t>(0)
    private let inode = Mutex<String?>(nil)
    /// A pidfd on the namespace's first process (-1: none yet). It becomes readable only once that process has ended,
    /// and the kernel ends it only after every other process of the namespace is gone (reaped).
    private let first = Mutex<Int32>(-1)
    private static let own = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/ns/pid")) ?? ""

    init() {}

    deinit {
        let fd = first.withLock { $0 }
        if fd >= 0 { close(fd) }
    }

    /// Names the bwrap process once it has started.
    func attach(_ pid: pid_t) { sandboxPid.withLock { $0 = pid } }

    /// The namespace (`pid:[N]`), found through the first child of bwrap in another PID namespace.
    func namespace() -> String? {
        if let known = inode.withLock({ $0 }) { return known }
        let parent = sandboxPid.withLock { $0 }
        guard parent > 0 else { return nil }
        for pid in Self.children(of: parent) {
            if let ns = Self.namespace(of: pid), ns != Self.own {
                // Held from now on, so that the namespace's end can be waited for (and a reused pid is never taken for
                // it): checked to still be that process once the descriptor is open, and kept before the namespace is
                // known to anyone (a caller that finds it known finds the descriptor too). Two callers may find it at
                // once: the first descriptor stays, the other is closed.
                var fd = grid_pidfd_open(pid)
                if fd >= 0, Self.namespace(of: pid) != ns {
                    close(fd)
                    fd = -1
                }
                if fd >= 0 {
                    let kept = first.withLock { held -> Bool in
                        guard held < 0 else { return false }
                        held = fd
                        return true
                    }
                    if !kept { close(fd) }
                }
                inode.withLock { $0 = ns }
                return ns
            }
        }
        return nil
    }

    /// Every live process in the job's namespace, with its thread count (zombies waiting for a reaper that is not
    /// the worker are already dead: a kill cannot remove them, and they hold nothing).
    func members() -> [(pid: pid_t, threads: Int)] {
        guard let ns = namespace() else { return [] }
        var out: [(pid_t, Int)] = []
        for pid in Self.allPids() where Self.namespace(of: pid) == ns {
            guard let s = Self.stat(pid), s.state != "Z", s.state != "X" else { continue }
            out.append((pid, s.threads))
        }
        return out
    }

    private let peak = Mutex<Int64>(0)

    /// Counts the tasks (threads) in the namespace, what RLIMIT_NPROC counts, and records their resident memory
    /// (the job's peak, as far as samples see it: bwrap's own resource usage does not include the job's).
    func sample() -> Int {
        let all = members()
        var resident: Int64 = 0
        for m in all {
            if let statm = JobCgroup.read("/proc/\(m.pid)/statm"), let pages = statm.split(separator: " ").dropFirst().first.flatMap({ Int64($0) }) {
                resident += pages * Int64(getpagesize())
            }
        }
        peak.withLock { $0 = max($0, resident) }
        return all.reduce(0) { $0 + $1.threads }
    }

    /// The memory `pids` hold, each page shared between processes counted once in all (the sum of their `Pss` in
    /// `/proc/PID/smaps_rollup`); nil where that cannot be read (a kernel before 4.14).
    static func proportionalBytes(_ pids: [pid_t]) -> Int64? {
        var total: Int64 = 0
        for pid in pids {
            guard let text = JobCgroup.read("/proc/\(pid)/smaps_rollup") else { continue }
            guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("Pss:") }),
                let kb = line.split(separator: " ").dropFirst().first.flatMap({ Int64($0) })
            else { return nil }
            let (bytes, over) = kb.multipliedReportingOverflow(by: 1024)
            let (sum, overSum) = total.addingReportingOverflow(bytes)
            total = over || overSum ? .max : sum
        }
        return total
    }

    /// The largest resident memory of the job seen by `sample`, in bytes.
    var peakResidentBytes: Int64 { peak.withLock { $0 } }

    /// SIGKILLs every member until none is left (about 2 s at most). `waitGone` then waits for the teardown.
    func killAll() {
        guard namespace() != nil else { return }
        var pause: UInt32 = 1_000
        for _ in 0..<110 {
            let left = members()
            if left.isEmpty { break }
            for m in left { kill(m.pid, SIGKILL) }
            usleep(pause)
            pause = min(pause * 2, 20_000)
        }
    }

    /// Waits until the namespace's first process has ended, at most `seconds`, which the kernel allows only once every
    /// other process of it has been reaped: called before a run's report, so that the report, and the next job, come
    /// after all of a job's processes are gone (a fork bomb's thousand killed processes may still be being torn down
    /// when the last live one is). True when it has (or when it was never held: nothing to wait for).
    func waitGone(seconds: Double) -> Bool {
        let fd = first.withLock { $0 }
        guard fd >= 0 else { return true }
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        var clock = timespec()
        clock_gettime(CLOCK_MONOTONIC, &clock)
        let end = Double(clock.tv_sec) + Double(clock.tv_nsec) / 1e9 + max(0, seconds)
        while true {
            clock_gettime(CLOCK_MONOTONIC, &clock)
            let left = end - (Double(clock.tv_sec) + Double(clock.tv_nsec) / 1e9)
            let r = poll(&p, 1, Int32(max(0, min(left, 3_600)) * 1000))
            if r > 0 { return true }
            if r == 0 || errno != EINTR { return false }
        }
    }

    static func namespace(of pid: pid_t) -> String? {
        var buf = [CChar](repeating: 0, count: 64)
        let n = readlink("/proc/\(pid)/ns/pid", &buf, buf.count - 1)
        guard n > 0 else { return nil }
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func allPids() -> [pid_t] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { pid_t($0) }
    }

    static func children(of parent: pid_t) -> [pid_t] {
        allPids().filter { stat($0)?.ppid == parent }
    }

    /// The state, parent and thread count from `/proc/PID/stat` (the fields after the command's closing parenthesis).
    static func stat(_ pid: pid_t) -> (state: Character, ppid: pid_t, threads: Int)? {
        guard let text = JobCgroup.read("/proc/\(pid)/stat"), let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        // fields[0] = state, [1] = ppid, ..., [17] = num_threads
        guard fields.count > 17, let state = fields[0].first, let ppid = pid_t(fields[1]), let threads = Int(fields[17]) else { return nil }
        return (state, ppid, threads)
    }
}
