import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// One job's cgroup on this machine: created with its limits before the job starts, joined by the job's first process
/// before it runs anything, killed as a whole, read for counters, and always removed.
final class JobCgroup: Sendable {
    let layout: CgroupLayout
    let limits: CgroupLayout.Limits

    /// The host's cgroup version: v2 when the mount's root has `cgroup.controllers`, else v1.
    static func hostVersion(root: String) -> CgroupLayout.Version {
        FileManager.default.fileExists(atPath: root + "/cgroup.controllers") ? .v2 : .v1
    }

    /// Creates the job's cgroup and writes its limits; throws `SandboxUnavailable` when it cannot.
    /// `parent` replaces the worker's own v2 cgroup path (a delegated subtree the worker moved itself out of).
    init(root: String, name: String, limits: CgroupLayout.Limits, parent: String? = nil) throws {
        let version = Self.hostVersion(root: root)
        let selfCgroup = parent.map { "0::\($0)\n" } ?? (try? String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8)) ?? ""
        layout = CgroupLayout.make(version: version, root: root, selfCgroup: selfCgroup, name: name)
        self.limits = limits
        let fm = FileManager.default
        for parent in layout.parents where !fm.fileExists(atPath: parent) {
            do {
                try fm.createDirectory(atPath: parent, withIntermediateDirectories: true)
            } catch {
                throw SandboxUnavailable("cannot create the cgroup \(parent) (\(error.localizedDescription)); the bwrap tier needs write access to \(root)")
            }
            if version == .v2 { Self.enableControllers(parent) }
        }
        for dir in layout.jobDirectories {
            guard mkdir(dir, 0o755) == 0 || errno == EEXIST else {
                let why = String(cString: strerror(errno))
                remove()
                throw SandboxUnavailable("cannot create the job cgroup \(dir) (\(why))")
            }
        }
        do { try apply(limits) } catch {
            remove()
            throw error
        }
    }

    /// Writes `limits` into the cgroup's files (again, for a cgroup made ahead of its job: `Standby`). Throws
    /// `SandboxUnavailable` naming the limit that did not take.
    func apply(_ limits: CgroupLayout.Limits) throws {
        for (path, value) in layout.limitWrites(limits) {
            // memsw exists only with swap accounting; everything else must take.
            if path.hasSuffix("memory.memsw.limit_in_bytes") || path.hasSuffix("memory.swap.max"),
                !FileManager.default.fileExists(atPath: path)
            {
                continue
            }
            if !Self.write(value, to: path) {
                let why = String(cString: strerror(errno))
                throw SandboxUnavailable("cannot set the job limit \(path) = \(value) (\(why))")
            }
        }
    }

    private static func enableControllers(_ parent: String) {
        let up = (parent as NSString).deletingLastPathComponent
        for dir in [up, parent] { _ = write("+memory +pids +cpu", to: dir + "/cgroup.subtree_control") }
    }

    /// Opens the `cgroup.procs` files for the child to join; the caller closes them after the spawn.
    func openProcs() throws -> [Int32] {
        var fds: [Int32] = []
        for path in layout.procsFiles {
            let fd = open(path, O_WRONLY | O_CLOEXEC)
            guard fd >= 0 else {
                let why = String(cString: strerror(errno))
                fds.forEach { close($0) }
                throw SandboxUnavailable("cannot open \(path) (\(why))")
            }
            fds.append(fd)
        }
        return fds
    }

    /// Every process in the job's cgroups.
    func pids() -> [pid_t] {
        var all = Set<pid_t>()
        for dir in layout.jobDirectories {
            all.formUnion(CgroupCounters.pids(Self.read(dir + "/cgroup.procs") ?? ""))
        }
        return all.sorted()
    }

    /// Kills every process of the job: `cgroup.kill` on v2; on v1 freeze, SIGKILL each, thaw; repeats until the
    /// cgroup is empty (at most ~2 s), looking again after 1, 2, 4… ms, then every 20 ms.
    func killAll() {
        let freezer = layout.version == .v1 ? layout.directories["freezer"].map { $0 + "/freezer.state" } : nil
        let v2dir = layout.directories["unified"]
        var pause: UInt32 = 1_000
        for _ in 0..<110 {
            let left = pids()
            if left.isEmpty { return }
            let killedByKernel = v2dir.map { Self.write("1", to: $0 + "/cgroup.kill") } ?? false
            if !killedByKernel {
                if let freezer { _ = Self.write("FROZEN", to: freezer) }
                for pid in pids() { kill(pid, SIGKILL) }
                if let freezer { _ = Self.write("THAWED", to: freezer) }
            }
            // Look again soon (killed processes usually go within a millisecond), then every 20 ms.
            usleep(pause)
            pause = min(pause * 2, 20_000)
        }
    }

    /// What the job used and hit, read from the counters.
    struct Usage: Sendable, Hashable {
        var oomKills: Int64 = 0
        var memoryLimitHits: Int64 = 0
        var pidsLimitHits: Int64 = 0
        var cpuSeconds: Double?
        var peakMemoryBytes: Int64?
    }

    func usage() -> Usage {
        var u = Usage()
        switch layout.version {
        case .v1:
            if let m = layout.directories["memory"] {
                u.oomKills = Self.read(m + "/memory.oom_control").flatMap { CgroupCounters.value("oom_kill", in: $0) } ?? 0
                u.memoryLimitHits = Self.read(m + "/memory.failcnt").flatMap(CgroupCounters.single) ?? 0
                u.peakMemoryBytes = Self.read(m + "/memory.max_usage_in_bytes").flatMap(CgroupCounters.single)
            }
            if let p = layout.directories["pids"] {
                u.pidsLimitHits = Self.read(p + "/pids.events").flatMap { CgroupCounters.value("max", in: $0) } ?? 0
            }
            if let c = layout.directories["cpuacct"], let ns = Self.read(c + "/cpuacct.usage").flatMap(CgroupCounters.single) {
                u.cpuSeconds = Double(ns) / 1e9
            }
        case .v2:
            guard let d = layout.directories["unified"] else { return u }
            let events = Self.read(d + "/memory.events") ?? ""
            u.oomKills = CgroupCounters.value("oom_kill", in: events) ?? 0
            u.memoryLimitHits = CgroupCounters.value("max", in: events) ?? 0
            u.peakMemoryBytes = Self.read(d + "/memory.peak").flatMap(CgroupCounters.single)
            u.pidsLimitHits = Self.read(d + "/pids.events").flatMap { CgroupCounters.value("max", in: $0) } ?? 0
            if let us = Self.read(d + "/cpu.stat").flatMap({ CgroupCounters.value("usage_usec", in: $0) }) { u.cpuSeconds = Double(us) / 1e6 }
        }
        return u
    }

    /// Kills what is left and removes the job's directories (retrying briefly while the kernel lets go of them).
    func remove() {
        killAll()
        for dir in layout.jobDirectories {
            var pause: UInt32 = 1_000
            for _ in 0..<55 {
                if rmdir(dir) == 0 || errno == ENOENT { break }
                usleep(pause)
                pause = min(pause * 2, 20_000)
            }
        }
    }

    /// Whether any of the job's directories still exists.
    var exists: Bool { layout.jobDirectories.contains { FileManager.default.fileExists(atPath: $0) } }

    static func read(_ path: String) -> String? {
        readBytes(path).map { String(decoding: $0, as: UTF8.self) }
    }

    /// A kernel file (`/proc`, `/sys`) read to its end, at most `limit` bytes. Such files say they are empty (size 0),
    /// and Foundation's `String(contentsOfFile:)` and `FileManager.contents(atPath:)` then return only their first
    /// page: the rest of `/proc/net/tcp` on a busy machine, or of a large environment in `/proc/PID/environ`.
    static func readBytes(_ path: String, limit: Int = 1 << 20) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var out = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = Glibc.read(fd, &buf, buf.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            out += buf[0..<n]
            if out.count > limit { break }
        }
        return out
    }

    @discardableResult
    static func write(_ value: String, to path: String) -> Bool {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        let bytes = Array(value.utf8)
        return Glibc.write(fd, bytes, bytes.count) == bytes.count
    }
}

/// The sandbox a worker was asked for cannot work on this machine; the message says what is missing.
public struct SandboxUnavailable: Error, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
