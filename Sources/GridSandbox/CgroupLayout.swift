import Foundation

/// Where a job's cgroup lives and which files set its limits: pure, so both hierarchies are tested anywhere.
///
/// cgroup v1 (this project's reference host): one directory per controller (memory, pids, cpu, cpuacct, freezer), each
/// under the worker's own cgroup in that hierarchy. cgroup v2: one directory under the worker's own cgroup.
public struct CgroupLayout: Sendable, Hashable {
    public enum Version: String, Sendable, Hashable {
        case v1
        case v2
    }

    /// What a job may use.
    public struct Limits: Sendable, Hashable {
        /// Memory including swap, in bytes; nil = no limit.
        public var memoryBytes: UInt64?
        /// Processes and threads.
        public var pids: Int
        /// CPUs' worth of time per period; nil or 0 = no quota.
        public var cpus: Int?

        public init(memoryBytes: UInt64?, pids: Int, cpus: Int?) {
            self.memoryBytes = memoryBytes
            self.pids = pids
            self.cpus = cpus
        }
    }

    /// The v1 controllers a job's cgroup uses.
    public static let v1Controllers = ["memory", "pids", "cpu", "cpuacct", "freezer"]
    /// The scheduler period for the CPU quota, in microseconds.
    public static let cpuPeriodMicros = 100_000

    public var version: Version
    /// Controller → the job's directory (v1); `"unified"` → the job's directory (v2).
    public var directories: [String: String]
    /// The directories to create, parents first (the shared `campusgrid` parent, then the job's).
    public var parents: [String]

    /// The layout for a job cgroup called `name` under the worker's own cgroups.
    /// `selfCgroup` is the text of `/proc/self/cgroup`; `root` is the cgroup mount (`/sys/fs/cgroup`).
    public static func make(version: Version, root: String, selfCgroup: String, name: String) -> CgroupLayout {
        let own = ownPaths(selfCgroup)
        switch version {
        case .v1:
            var dirs: [String: String] = [:]
            var parents: [String] = []
            for c in v1Controllers {
                let base = join(root, c, own[c] ?? "/", "campusgrid")
                parents.append(base)
                dirs[c] = join(base, name)
            }
            return CgroupLayout(version: .v1, directories: dirs, parents: parents)
        case .v2:
            let base = join(root, own[""] ?? "/", "campusgrid")
            return CgroupLayout(version: .v2, directories: ["unified": join(base, name)], parents: [base])
        }
    }

    /// The worker's own cgroup path per v1 controller, and under `""` its v2 path, from `/proc/self/cgroup`.
    public static func ownPaths(_ text: String) -> [String: String] {
        var out: [String: String] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count == 3 else { continue }
            let path = String(parts[2])
            if parts[1].isEmpty {
                out[""] = path
            } else {
                for c in parts[1].split(separator: ",") { out[String(c)] = path }
            }
        }
        return out
    }

    /// The limit files to write, in order, as (path, value).
    public func limitWrites(_ limits: Limits) -> [(path: String, value: String)] {
        var out: [(String, String)] = []
        switch version {
        case .v1:
            if let m = limits.memoryBytes, let dir = directories["memory"] {
                out.append((dir + "/memory.limit_in_bytes", String(m)))
                out.append((dir + "/memory.memsw.limit_in_bytes", String(m)))
            }
            if let dir = directories["pids"] { out.append((dir + "/pids.max", String(limits.pids))) }
            if let cpus = limits.cpus, cpus > 0, let dir = directories["cpu"] {
                out.append((dir + "/cpu.cfs_period_us", String(Self.cpuPeriodMicros)))
                out.append((dir + "/cpu.cfs_quota_us", String(cpus * Self.cpuPeriodMicros)))
            }
        case .v2:
            guard let dir = directories["unified"] else { return [] }
            if let m = limits.memoryBytes {
                out.append((dir + "/memory.max", String(m)))
                out.append((dir + "/memory.swap.max", "0"))
            }
            out.append((dir + "/pids.max", String(limits.pids)))
            if let cpus = limits.cpus, cpus > 0 { out.append((dir + "/cpu.max", "\(cpus * Self.cpuPeriodMicros) \(Self.cpuPeriodMicros)")) }
        }
        return out
    }

    /// The `cgroup.procs` files a new job process writes itself into.
    public var procsFiles: [String] {
        switch version {
        case .v1: Self.v1Controllers.compactMap { directories[$0].map { $0 + "/cgroup.procs" } }
        case .v2: [directories["unified"]! + "/cgroup.procs"]
        }
    }

    /// Every directory of the job (to list processes, freeze, remove).
    public var jobDirectories: [String] { directories.values.sorted() }

    static func join(_ parts: String...) -> String {
        var out = ""
        for p in parts {
            for piece in p.split(separator: "/") where !piece.isEmpty { out += "/" + piece }
        }
        return out.isEmpty ? "/" : out
    }
}

/// Reading a job cgroup's counters: pure parsers of the kernel's text files.
public enum CgroupCounters {
    /// The value of `key` in a flat keyed file (`memory.events`, `pids.events`, `memory.oom_control`, `cpu.stat`).
    public static func value(_ key: String, in text: String) -> Int64? {
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ")
            if parts.count == 2, parts[0] == key, let v = Int64(parts[1]) { return v }
        }
        return nil
    }

    /// The number in a single-value file (`memory.max_usage_in_bytes`, `cpuacct.usage`); nil for `max` or junk.
    public static func single(_ text: String) -> Int64? {
        Int64(text.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// Process ids listed in a `cgroup.procs` file.
    public static func pids(_ text: String) -> [Int32] {
        text.split(separator: "\n").compactMap { Int32($0.trimmingCharacters(in: .whitespaces)) }
    }
}
