import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Whether a worker can reach per-job cgroups: as root on the host's mount, or without root through a cgroup v2
/// subtree delegated to its user (`systemd-run --user --scope -p Delegate=yes campusgrid worker ...`).
enum CgroupDelegation {
    /// What the machine shows about its cgroups.
    struct Facts: Sendable, Hashable {
        var root: String
        /// Entries of the cgroup mount (empty inside `ip netns exec`, which remounts /sys).
        var entries: Int
        var version: CgroupLayout.Version
        var isRoot: Bool
        var uid: UInt32
        /// The worker's own v2 cgroup directory, and whether this user may write its `cgroup.subtree_control` and `cgroup.procs`.
        var ownDirectory: String
        var ownWritable: Bool
    }

    /// Why per-job cgroups are out of reach (nil when they are reachable), for the root tier or the delegated one (pure).
    static func reason(_ f: Facts, delegated: Bool) -> String? {
        if f.entries == 0 {
            return "\(f.root) is empty: no cgroup is mounted here (`ip netns exec` remounts /sys without them), so per-job cgroups are out of reach"
        }
        if delegated {
            guard f.version == .v2 else {
                return "no delegated cgroup v2 subtree: this host has cgroup v1 or hybrid hierarchies"
            }
            guard f.ownWritable else {
                return "no delegated cgroup v2 subtree: \(f.ownDirectory) is not writable by uid \(f.uid) "
                    + "(start the worker under `systemd-run --user --scope -p Delegate=yes`)"
            }
            return nil
        }
        if !f.isRoot {
            return "per-job cgroups under \(f.root) need root (this worker runs as uid \(f.uid)), or a delegated cgroup v2 subtree"
        }
        return nil
    }

    static func facts(root: String) -> Facts {
        let entries = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).count
        let version = JobCgroup.hostVersion(root: root)
        let selfCgroup = (try? String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8)) ?? ""
        let own = CgroupLayout.join(root, CgroupLayout.ownPaths(selfCgroup)[""] ?? "/")
        let writable = access(own + "/cgroup.subtree_control", W_OK) == 0 && access(own + "/cgroup.procs", W_OK) == 0
        return Facts(root: root, entries: entries, version: version, isRoot: geteuid() == 0, uid: getuid(), ownDirectory: own, ownWritable: writable)
    }

    /// Why the cgroups at `root` are out of reach for this worker, or nil.
    static func unreachable(root: String, isRoot: Bool, delegated: Bool) -> String? {
        reason(facts(root: root), delegated: delegated)
    }

    /// Makes the delegated subtree usable: cgroup v2 lets a cgroup hand controllers to its children only while it holds
    /// no process, so the worker moves itself into a `worker` leaf; jobs go under `campusgrid` beside it. Returns the
    /// path (relative to `root`) that job cgroups are made under.
    static func prepare(root: String) throws -> String {
        let f = facts(root: root)
        if let why = reason(f, delegated: true) { throw SandboxUnavailable(why) }
        let relative = String(f.ownDirectory.dropFirst(root.count))
        let leaf = f.ownDirectory + "/worker"
        guard mkdir(leaf, 0o755) == 0 || errno == EEXIST else {
            throw SandboxUnavailable("cannot create \(leaf) (\(String(cString: strerror(errno))))")
        }
        guard JobCgroup.write("0", to: leaf + "/cgroup.procs") else {
            throw SandboxUnavailable("cannot move the worker into \(leaf) (\(String(cString: strerror(errno))))")
        }
        guard JobCgroup.write("+memory +pids +cpu", to: f.ownDirectory + "/cgroup.subtree_control") else {
            throw SandboxUnavailable("the delegated subtree \(f.ownDirectory) does not offer the memory, pids and cpu controllers")
        }
        return relative.isEmpty ? "/" : relative
    }
}
