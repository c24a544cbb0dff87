import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Finding and killing every process of a job, even ones that left its process group.
///
/// Each job runs with a unique marker in its environment (`CAMPUSGRID_RUN=<nonce>`); processes inherit it, so a
/// scan of `/proc/*/environ` finds descendants that called `setsid` or double-forked. Best effort by nature: the
/// bwrap tier uses cgroups instead.
enum ProcessTree {
    static let markerName = "CAMPUSGRID_RUN"

    /// The pids whose environment carries `marker`.
    static func pids(withMarker marker: String) -> [pid_t] {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        let needle = Array("\(markerName)=\(marker)\0".utf8)
        var out: [pid_t] = []
        for entry in entries {
            guard let pid = pid_t(entry), pid != getpid() else { continue }
            // Read to its end: a process with a large environment must not hide its marker past the first page.
            guard var bytes = JobCgroup.readBytes("/proc/\(pid)/environ", limit: 8 << 20), !bytes.isEmpty else { continue }
            if bytes.last != 0 { bytes.append(0) }
            if contains(bytes, needle) { out.append(pid) }
        }
        return out
    }

    private static func contains(_ hay: [UInt8], _ needle: [UInt8]) -> Bool {
        guard hay.count >= needle.count else { return false }
        // Entries are NUL-separated: check each entry's start.
        var start = 0
        while start + needle.count <= hay.count {
            if hay[start..<(start + needle.count)].elementsEqual(needle) { return true }
            guard let next = hay[start...].firstIndex(of: 0) else { break }
            start = next + 1
        }
        return false
    }

    /// `root` and every process descended from it now (a process that left its parent is still a descendant inside a
    /// PID namespace: it is reparented to the namespace's first process, a child of bubblewrap). One read of each
    /// process's `stat`.
    static func descendants(of root: pid_t) -> [pid_t] {
        guard root > 0 else { return [] }
        var children: [pid_t: [pid_t]] = [:]
        for pid in JobNamespace.allPids() {
            if let s = JobNamespace.stat(pid) { children[s.ppid, default: []].append(pid) }
        }
        var out: [pid_t] = [root]
        var next = 0
        // Bounded: each pid once (a pid seen again, reused meanwhile, is not followed twice).
        var seen: Set<pid_t> = [root]
        while next < out.count && out.count < 1 << 16 {
            for c in children[out[next]] ?? [] where seen.insert(c).inserted { out.append(c) }
            next += 1
        }
        return out
    }

    /// Kills the process group of `group` (while its leader is not reaped: `GroupLeader`) and every process carrying
    /// `marker`, repeating until none is left (bounded).
    static func killAll(group: GroupLeader, marker: String) {
        var pause: UInt32 = 1_000
        for _ in 0..<30 {
            group.signalGroup(SIGKILL)
            let left = pids(withMarker: marker)
            for pid in left { kill(pid, SIGKILL) }
            if left.isEmpty { return }
            // Killed processes are usually gone within a millisecond: look again soon, then less often (~0.5 s in all).
            usleep(pause)
            pause = min(pause * 2, 20_000)
        }
    }
}
