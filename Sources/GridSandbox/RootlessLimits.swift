import CGridSpawn
import Foundation
public import GridCore

/// Which limits a bwrap sandbox without root can hold, and how (pure, so every case is tested anywhere).
///
/// Strongest first: a delegated cgroup v2 subtree (memory.max, pids.max, cpu.max, cgroup.kill), else per-job rlimits:
/// RLIMIT_NPROC set *inside* the sandbox's user namespace (there it counts only the job's processes; set outside it
/// would count every process of the worker's user), RLIMIT_AS for a CPU job's memory (never for a GPU job: it breaks
/// CUDA), RLIMIT_CPU, RLIMIT_FSIZE, RLIMIT_NOFILE, no core dumps; the job's PID namespace is killed as a whole.
public enum RootlessLimits {
    /// Where the limits come from.
    public enum Source: String, Sendable, Hashable {
        /// A cgroup the worker may write as root (the `bwrap` tier proper).
        case cgroups
        /// A cgroup v2 subtree delegated to the worker's user (systemd user delegation).
        case delegatedCgroup = "cgroup v2"
        /// Per-process rlimits set for each job.
        case rlimits
    }

    /// The label shown everywhere: which limits hold (`bwrap+cgroups`, `bwrap, rootless, rlimits`, ...).
    public static func label(source: Source, isRoot: Bool) -> String {
        switch source {
        case .cgroups: return SandboxTier.bwrap.label
        case .delegatedCgroup, .rlimits: return "bwrap" + (isRoot ? "" : ", rootless") + ", " + source.rawValue
        }
    }

    /// What a worker's owner should know about the limits of this source (shown with the tier).
    public static func notes(source: Source, isRoot: Bool, limits: RunnerLimits) -> [String] {
        switch source {
        case .cgroups, .delegatedCgroup:
            return []
        case .rlimits:
            var out = [
                "memory: each process's address space (RLIMIT_AS = the job's RAM + 1 GB), not the job's total; none for GPU jobs (RLIMIT_AS breaks CUDA)",
                "CPU: no share is enforced (no cgroup); RLIMIT_CPU caps each process at cpus × minutes of CPU time",
            ]
            out.append(
                isRoot
                    ? "processes: RLIMIT_NPROC does not bind a sandbox started by root, so the worker counts the job's processes and stops it above \(limits.maxProcesses)"
                    : "processes: RLIMIT_NPROC = \(limits.maxProcesses) inside the job's user namespace")
            return out
        }
    }

    /// A job's rlimits under the `rlimits` source.
    public struct Plan: Sendable, Hashable {
        /// Set on the sandbox's first process (inherited by everything in it).
        public var outside: [Limit]
        /// RLIMIT_NPROC, set by the job's first process inside the user namespace before the script runs.
        public var processes: Int
        /// The address-space cap in bytes, when there is one (CPU jobs that ask for RAM).
        public var addressSpace: UInt64?
        /// Limits left out for this job, with the reason (for the log).
        public var leftOut: [String]
    }

    /// One rlimit: soft = hard = `value`.
    public struct Limit: Sendable, Hashable {
        public var resource: Int32
        public var value: UInt64
    }

    /// The rlimits for one job (pure).
    public static func plan(spec: JobSpec, limits: RunnerLimits) -> Plan {
        var outside = [
            Limit(resource: RLimit.core, value: 0),
            Limit(resource: RLimit.fsize, value: limits.maxFileBytes),
            Limit(resource: RLimit.nofile, value: limits.maxOpenFiles),
            Limit(resource: RLimit.cpu, value: UInt64(max(1, spec.cpus)) * UInt64(max(1, spec.minutes)) * 60 + 5),
        ]
        var leftOut: [String] = []
        var addressSpace: UInt64?
        if spec.gpus > 0 {
            leftOut.append("memory limit (RLIMIT_AS) left out: it breaks CUDA, and this job uses \(spec.gpus) GPU(s)")
        } else {
            addressSpace = UInt64(spec.memoryLimitGb + 1) << 30
            outside.append(Limit(resource: RLimit.addressSpace, value: addressSpace!))
        }
        return Plan(outside: outside, processes: limits.maxProcesses, addressSpace: addressSpace, leftOut: leftOut)
    }

    /// The Python prelude that sets RLIMIT_NPROC inside the sandbox and then execs the job (`python -S -c PRELUDE SCRIPT`).
    public static func prelude(processes: Int) -> String {
        "import os,resource,sys\nresource.setrlimit(resource.RLIMIT_NPROC,(\(processes),\(processes)))\n"
            + "os.execv(sys.executable,[sys.executable,'-u']+sys.argv[1:])"
    }

    /// Whether the kernel release `release` (`uname -r`: "6.1.0-18-amd64") counts RLIMIT_NPROC per user namespace
    /// (Linux 5.14 and later), so that one set inside a sandbox's namespace counts only the sandbox's tasks (pure).
    /// Before, it counted every task of the user on the machine: the worker's own threads and its other jobs.
    public static func nprocCountsPerNamespace(release: String) -> Bool {
        let parts = release.split(whereSeparator: { !$0.isNumber }).prefix(2).compactMap { Int($0) }
        guard parts.count == 2 else { return false }
        return parts[0] > 5 || (parts[0] == 5 && parts[1] >= 14)
    }

    /// This machine's kernel release (`uname -r`), read once.
    public static let kernelRelease: String = {
        var u = utsname()
        guard uname(&u) == 0 else { return "" }
        return withUnsafeBytes(of: &u.release) { raw in String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self) }
    }()

    /// The Python that sets RLIMIT_NPROC (run inside the sandbox's user namespace, where it counts only what follows)
    /// and then execs its arguments: `python -S -c PRELUDE COMMAND ARGS…` (an environment build's installer).
    public static func execPrelude(processes: Int) -> String {
        "import os,resource,sys\nresource.setrlimit(resource.RLIMIT_NPROC,(\(processes),\(processes)))\nos.execv(sys.argv[1],sys.argv[1:])"
    }

    /// The Python that a function-task interpreter runs before its executor: its open files and file sizes, and where
    /// no cgroup holds it, its processes (RLIMIT_NPROC, counted inside its user namespace) and its memory (RLIMIT_AS),
    /// soft and hard alike, so no task can raise them. A task once forked without bound on a rootless worker.
    public static func interpreterPrelude(limits: RunnerLimits, processes: Int?, addressSpace: UInt64?) -> String {
        var lines = [
            "import resource as _r",
            "_r.setrlimit(_r.RLIMIT_CORE, (0, 0))",
            "_r.setrlimit(_r.RLIMIT_FSIZE, (\(limits.maxFileBytes), \(limits.maxFileBytes)))",
            "_r.setrlimit(_r.RLIMIT_NOFILE, (\(limits.maxOpenFiles), \(limits.maxOpenFiles)))",
        ]
        if let processes { lines.append("_r.setrlimit(_r.RLIMIT_NPROC, (\(processes), \(processes)))") }
        if let addressSpace { lines.append("_r.setrlimit(_r.RLIMIT_AS, (\(addressSpace), \(addressSpace)))") }
        lines.append("del _r")
        return lines.joined(separator: "\n") + "\n"
    }

    /// Whether a failed run under an address-space cap ran out of memory: Python raises MemoryError when an
    /// allocation passes RLIMIT_AS, and (uncaught) prints it as the last line of its traceback and exits 1.
    public static func outOfMemory(report: RunReport, addressSpace: UInt64?, outputTail: String) -> Bool {
        guard addressSpace != nil, report.outcome == .failed, report.signal == nil, report.exitCode != 0 else { return false }
        let last = outputTail.split(separator: "\n").last { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
        return last.map { $0.hasPrefix("MemoryError") } ?? false
    }
}

extension RootlessLimits {
    /// What the rootless probe job showed.
    public enum ProbeVerdict: Sendable, Hashable {
        case ok
        case failed(String)
    }

    /// Judges the probe job's output (pure): uid 65534, no network, and forks stopped by RLIMIT_NPROC (6, of which
    /// the probe's interpreter is one) unless the worker is root, where the process watcher does that job instead.
    public static func judgeProbe(output: String, errors: String, status: Int32, isRoot: Bool) -> ProbeVerdict {
        let lines = Set(output.split(separator: "\n").map(String.init))
        guard status == 0, lines.contains("uid 65534") else {
            let detail = errors.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "\n").last.map(String.init) ?? "exit status \(status)"
            var why = "bwrap cannot build its sandbox as this user (\(detail))"
            if detail.contains("namespace") || detail.contains("Operation not permitted") || detail.contains("uid map") {
                why += "; unprivileged user namespaces look disabled (sysctl kernel.unprivileged_userns_clone=1 or user.max_user_namespaces > 0; "
                    + "on Ubuntu 24.04+ an AppArmor profile must allow bwrap)"
            }
            return .failed(why)
        }
        if !lines.contains("net no") { return .failed("the rootless probe job reached the network: the network namespace did not hold") }
        let forked = output.split(separator: "\n").first { $0.hasPrefix("forked ") }.flatMap { Int($0.dropFirst(7)) } ?? -1
        if !isRoot && !(0..<12).contains(forked) {
            return .failed("RLIMIT_NPROC did not stop the rootless probe job's forks (\(forked) of 12 went through)")
        }
        return .ok
    }
}
