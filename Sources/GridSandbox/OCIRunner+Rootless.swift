import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A rootless Podman's containers write as the worker's user's subordinate uids: what a job makes in its folder (a
/// folder of mode 0700, say) is out of the worker's reach, so a walk of the folder would miss it, and the worker could
/// not delete it. Such a folder is looked at, and removed, as root of Podman's user namespace (`podman unshare`), where
/// those uids are the namespace's own and root may read and remove everything. Started about every 2 s a running job
/// (a `podman unshare` takes about 0.15 s here).
struct RootlessFolders: Sendable {
    let podman: String

    /// The helper for a worker that is not root and whose engine is a rootless Podman; nil otherwise.
    static func make(host: OCIRunner.EngineHost?) -> RootlessFolders? {
        guard getuid() != 0, host?.rootless == true, host?.podman == true,
            let podman = PodmanUserService.podman(environment: ProcessInfo.processInfo.environment)
        else { return nil }
        return RootlessFolders(podman: podman)
    }

    /// The folder's blocks (`du`, one file system, no link followed) and entries (`find`), seen as the namespace's root.
    /// A file that vanished as they walked (a job's temporary files) makes `du` and `find` exit 1 with their totals
    /// still printed: those count.
    static let measureScript = #"""
        b=$(du -s -x -B1 -- "$1" 2>/dev/null)
        n=$(find "$1" -xdev 2>/dev/null | wc -l)
        printf '%s\n%s\n' "${b%%[[:space:]]*}" "$n"
        """#

    /// The folder measured in the namespace; where `podman unshare` itself fails (the worker's trouble, not the job's),
    /// the worker's own walk (`DiskRule.measure`).
    func measure(_ folder: String, limits: DiskLimits) -> DiskRule.Measure {
        let free = DiskRule.freeBytes(folder)
        guard let r = try? Command.run(podman, ["unshare", "sh", "-c", Self.measureScript, "sh", folder], timeout: 60), !r.timedOut,
            let counted = Self.parse(r.stdout)
        else { return DiskRule.measure(folder, limits: limits) }
        return DiskRule.Measure(bytes: counted.bytes, entries: counted.entries, free: free)
    }

    /// The two numbers the script prints (pure); nil unless it printed exactly two non-negative integers.
    static func parse(_ output: String) -> (bytes: Int64, entries: Int64)? {
        let lines = output.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        guard lines.count == 2, let bytes = Int64(lines[0]), let entries = Int64(lines[1]), bytes >= 0, entries >= 0 else { return nil }
        return (bytes, entries)
    }

    /// Removes what the worker could not (`DiskRule.remove` first, then this).
    func remove(_ folder: String) {
        _ = try? Command.run(podman, ["unshare", "rm", "-rf", "--", folder], timeout: 120)
    }
}
