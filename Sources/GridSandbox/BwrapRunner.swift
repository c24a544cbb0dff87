import CGridSpawn
import Foundation
public import GridCore

/// The Linux default tier: bubblewrap namespaces (no network, a read-only view of only what Python needs, uid 65534,
/// no capabilities, a fresh environment) plus a per-job cgroup (memory, processes, CPU quota) and file-size/core
/// rlimits. The whole job is killed through its cgroup on timeout or cancel, and the cgroup is always removed.
///
/// Without root (a student's laptop) or without a cgroup mount (inside `ip netns exec`), the same namespaces hold and
/// the limits come from a delegated cgroup v2 subtree or per-job rlimits (`RootlessLimits`); the job's PID namespace
/// is then its handle for the kill.
public struct BwrapRunner: JobRunner {
    /// Everything the runner needs to know about this machine, with defaults for a Debian host.
    public struct Configuration: Sendable {
        /// The bubblewrap binary (env `CAMPUSGRID_BWRAP`).
        public var bwrapPath: String = "/usr/bin/bwrap"
        /// The real interpreter (not a shim).
        public var python: String
        public var limits: RunnerLimits = RunnerLimits()
        /// Size cap of the job's private `/tmp`.
        public var tmpBytes: UInt64 = 256 << 20
        /// The cgroup mount.
        public var cgroupRoot: String = "/sys/fs/cgroup"
        /// Where the limits come from: the cgroups (root), a delegated cgroup v2 subtree, or rlimits.
        public var limitSource: RootlessLimits.Source = .cgroups
        /// For a delegated subtree: the cgroup (relative to `cgroupRoot`) job cgroups are made under.
        public var cgroupParent: String?
        /// The folder the jobs' folders are made in (the worker's `jobs`): with the cgroups, the next job's interpreter
        /// is then started ahead in its sandbox, its folder waiting there (`WarmStart`). Nil: standbys wait unexec'd.
        public var warmDirectory: String?
        /// How many next jobs' standbys are kept ready (1...64; a worker keeps its slots and one more). An idle warm
        /// standby is an interpreter waiting in its sandbox, about 10 MB.
        public var standbys: Int = 1

        public init(python: String) { self.python = python }
    }

    /// Where the job's scratch directory appears inside the sandbox (its working directory and `HOME`).
    public static let jobDirectory = "/job"

    public let configuration: Configuration
    /// Directories of the Python installation bound read-only at their own paths (prefix and base prefix).
    public let pythonRoots: [String]
    /// How `/bin`, `/lib`, ... look on this host: a symlink target (merged /usr) or nil (a real directory).
    let topLevel: [(name: String, symlink: String?)]
    public var tier: SandboxTier { .bwrap }
    /// Whether the worker runs as root (RLIMIT_NPROC does not bind root's sandboxes).
    let isRoot: Bool
    public var label: String { RootlessLimits.label(source: configuration.limitSource, isRoot: isRoot) }
    public var notes: [String] {
        // A root worker's sandboxes run as 65534 (`SandboxUser`): RLIMIT_NPROC binds them as it binds a rootless one's.
        RootlessLimits.notes(source: configuration.limitSource, isRoot: isRoot && !switchesUser, limits: configuration.limits)
            + (switchesUser
                ? ["user: jobs run as uid 65534 on this machine too, never root (a user namespace of their own per sandbox)"]
                : isRoot
                    ? ["user: jobs run as root outside their sandbox (" + (switchFailure.map { "running them as uid 65534 failed here: \($0)" } ?? "/usr/bin/setpriv is missing: install util-linux") + ")"]
                    : [])
    }
    /// The next job's first process, forked ahead into a cgroup of its own (`Standby`); made after the first job.
    let standbys: StandbySlot
    /// How the names of this runner's standby cgroups begin (`standby-PID-RUNNER-`).
    let standbyCgroupPrefix: String
    /// Whether its standbys are warm (`WarmStart`): a jobs folder is configured and the limits are the cgroups'.
    let warmStarts: Bool
    /// Whether its sandboxes run their jobs as 65534 outside, in user namespaces the worker makes (`SandboxUser`):
    /// a root worker's. A worker that is not root runs them as its own user (bubblewrap's own user namespace).
    let switchesUser: Bool
    /// Why a root worker's jobs do not run as 65534 (its probe job failed on that path); nil: they do, or it is not root.
    let switchFailure: String?

    /// Checks that bubblewrap runs and the limits hold (the cgroups are writable, or a probe job's rlimits bite);
    /// throws `SandboxUnavailable` with the reason otherwise.
    public init(configuration: Configuration) throws {
        isRoot = geteuid() == 0
        let roots = Self.pythonRoots(of: configuration.python)
        let top = Self.topLevel()
        // A root worker's jobs run as 65534 where a probe job shows that path works here; else as root outside, said
        // in the notes (`switchFailure`).
        var switchFailure: String?
        if SandboxUser.switches {
            switchFailure = SandboxUser.probe(bwrap: configuration.bwrapPath, arguments: { userns, folder in
                Self.arguments(
                    python: configuration.python, pythonRoots: roots, topLevel: top, scratch: folder, script: "probe.py",
                    environment: ["PATH": "/usr/bin:/bin", "HOME": Self.jobDirectory], tmpBytes: 16 << 20, gpuDevices: [], userns: userns)
            }, script: "probe.py")
        }
        self.switchFailure = switchFailure
        let switchesUser = SandboxUser.switches && switchFailure == nil
        self.switchesUser = switchesUser
        let (root, parent, pids) = (configuration.cgroupRoot, configuration.cgroupParent, configuration.limits.maxProcesses)
        let prefix = "standby-\(getpid())-\(UUID().uuidString.prefix(8))-"
        standbyCgroupPrefix = prefix
        self.configuration = configuration
        let fm = FileManager.default
        guard fm.isExecutableFile(atPath: configuration.bwrapPath) else {
            throw SandboxUnavailable(
                "the bwrap sandbox needs bubblewrap, and \(configuration.bwrapPath) does not exist or is not executable "
                    + "(install it: apt-get install bubblewrap; or choose --sandbox none for best-effort isolation)")
        }
        pythonRoots = roots
        topLevel = top
        warmStarts = configuration.warmDirectory != nil && configuration.limitSource == .cgroups
        if let jobs = configuration.warmDirectory, warmStarts {
            // The next job's interpreter waits in its sandbox, in a folder of its own among the jobs' folders.
            try? fm.createDirectory(atPath: jobs, withIntermediateDirectories: true)
            WarmStart.sweep(jobs: jobs)
            let (bwrap, python, tmpBytes, limits) = (configuration.bwrapPath, configuration.python, configuration.tmpBytes, configuration.limits)
            standbys = StandbySlot(capacity: configuration.standbys) {
                let folder = jobs + "/" + WarmStart.folderPrefix + "\(getpid())-" + UUID().uuidString.prefix(12).lowercased()
                return try Standby.makeWarm(
                    root: root, parent: parent, name: prefix + UUID().uuidString.prefix(8), pids: pids, directory: folder, bwrap: bwrap,
                    userNamespace: switchesUser,
                    arguments: { userns in
                        var args = Self.arguments(
                            python: python, pythonRoots: roots, topLevel: top, scratch: folder, script: "-",
                            environment: WarmStart.startupEnvironment(), tmpBytes: tmpBytes, gpuDevices: [], userns: userns.map { String($0) })
                        args.removeLast(3)
                        return args + [python, "-u", "-c", WarmStart.launcher]
                    }, limits: Self.rlimits(limits))
            }
        } else {
            standbys = StandbySlot(capacity: configuration.standbys) {
                try Standby.make(root: root, parent: parent, name: prefix + UUID().uuidString.prefix(8), pids: pids, userNamespace: switchesUser)
            }
        }
        switch configuration.limitSource {
        case .cgroups, .delegatedCgroup:
            if configuration.limitSource == .cgroups, let why = CgroupDelegation.unreachable(root: configuration.cgroupRoot, isRoot: isRoot, delegated: false) {
                throw SandboxUnavailable(why)
            }
            let probe = try JobCgroup(
                root: configuration.cgroupRoot, name: "probe-\(getpid())-\(UUID().uuidString.prefix(8))",
                limits: .init(memoryBytes: 64 << 20, pids: 8, cpus: 1), parent: configuration.cgroupParent)
            probe.remove()
            Standby.sweep(parents: probe.layout.parents)
        case .rlimits:
            try probeRlimits()
        }
    }

    /// How `/bin`, `/lib`, ... look on this host: a symlink target (merged /usr) or nil (a real directory).
    static func topLevel() -> [(name: String, symlink: String?)] {
        let fm = FileManager.default
        return ["bin", "sbin", "lib", "lib32", "lib64", "libx32"].compactMap { name in
            let path = "/" + name
            if let target = try? fm.destinationOfSymbolicLink(atPath: path) { return (name, target) }
            var isDir: ObjCBool = false
            return fm.fileExists(atPath: path, isDirectory: &isDir) && isDir.boolValue ? (name, nil) : nil
        }
    }

    /// The Python installation's directories outside `/usr` (a pyenv or venv prefix), which the sandbox must see.
    static func pythonRoots(of python: String) -> [String] {
        let asked = Command.output(
            python, ["-c", "import sys, os; print(os.path.realpath(sys.prefix)); print(os.path.realpath(sys.base_prefix))"], timeout: 30)
        var roots = (asked ?? "").split(separator: "\n").map(String.init)
        if roots.isEmpty {
            roots = [URL(fileURLWithPath: python).resolvingSymlinksInPath().deletingLastPathComponent().deletingLastPathComponent().path]
        }
        return Array(Set(roots.filter { $0.hasPrefix("/") && $0 != "/usr" && !$0.hasPrefix("/usr/") && $0 != "/" })).sorted()
    }

    /// The bubblewrap command line for one job (pure). Never binds `/` itself: only `/usr`, the Python roots, a few
    /// files of `/etc`, and the scratch directory; the sandbox's own root is made read-only at the end.
    ///
    /// `userns`: a root worker's sandbox (`SandboxUser`), set up as root in that user namespace, whose job switches to
    /// 65534 (`setpriv`) before Python starts; its folders made for the binds are opened to everyone (a Python root's
    /// parents may be root's alone), `/tmp` and `/dev/shm` too. Nil: bubblewrap's own user namespace, whose 65534 is
    /// the worker's user outside (a worker that is not root).
    static func arguments(
        python: String, pythonRoots: [String], topLevel: [(name: String, symlink: String?)], scratch: String, script: String,
        environment: [String: String], tmpBytes: UInt64, gpuDevices: [String], processes: Int? = nil, pythonEnvironment: String? = nil,
        userns: String? = nil
    ) -> [String] {
        var a = isolation(userns: userns)
        a += ["--ro-bind", "/usr", "/usr"]
        for entry in topLevel {
            if let target = entry.symlink {
                a += ["--symlink", target, "/" + entry.name]
            } else {
                a += ["--ro-bind", "/" + entry.name, "/" + entry.name]
            }
        }
        // bubblewrap makes a folder above a bind 0700 when it sets up as root: `/etc` would be closed to the job.
        if userns != nil { a += ["--perms", "0755", "--dir", "/etc"] }
        for file in ["ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "localtime", "nsswitch.conf", "passwd", "group"] {
            a += ["--ro-bind-try", "/etc/" + file, "/etc/" + file]
        }
        for root in pythonRoots {
            if userns != nil { a += openFolders(above: root) }
            a += ["--ro-bind", root, root]
        }
        // The kernel's settings read-only: bubblewrap started by root maps the sandbox's user to root outside, and the
        // kernel lets root's uid write /proc/sys whatever its capabilities (core_pattern runs a program as root on the
        // host). /dev/shm is a tmpfs of its own, bounded like /tmp (bubblewrap's /dev holds half the machine's RAM,
        // outside the rootless tier's address-space limit).
        a += procAndDev(shmBytes: tmpBytes, openToAll: userns != nil)
        for device in gpuDevices { a += ["--dev-bind-try", device, device] }
        if userns != nil { a += ["--perms", "1777"] }
        a += ["--size", String(tmpBytes), "--tmpfs", "/tmp"]
        a += ["--bind", scratch, jobDirectory]
        // The job's packages: read-only, so no job can change a cached environment another job will use.
        if let pythonEnvironment { a += (userns == nil ? [] : openFolders(above: EnvBuilder.mountPoint)) + ["--ro-bind", pythonEnvironment, EnvBuilder.mountPoint] }
        a += ["--chdir", jobDirectory] + readOnlyRoot + ["--clearenv"]
        for key in environment.keys.sorted() { a += ["--setenv", key, environment[key]!] }
        if let userns { a += SandboxUser.dropPrefix(closing: userns) }
        if let processes {
            // RLIMIT_NPROC must be set inside the user namespace, where it counts only the job's processes.
            a += [python, "-S", "-c", RootlessLimits.prelude(processes: processes), script]
        } else {
            a += [python, "-u", script]
        }
        return a
    }

    /// `/proc` with the kernel's settings read-only, and `/dev` with a `/dev/shm` of `shmBytes`: for every bubblewrap
    /// sandbox the worker makes (jobs, function-task interpreters, the Python installer).
    /// The namespaces, the user and the capabilities of a sandbox (`arguments`): with `userns` (a root worker's,
    /// `SandboxUser`), set up as root in that user namespace (`--unshare-user`, which bubblewrap refuses beside
    /// `--userns`, is left out, and so is `--disable-userns`, which needs it: the namespace forbids user namespaces
    /// itself), keeping only the capabilities `setpriv` needs; else in bubblewrap's own user namespace as 65534, with
    /// none. `shareNet`: the host's network (the Python installer's, to reach an index).
    static func isolation(userns: String?, shareNet: Bool = false) -> [String] {
        var a: [String]
        if let userns {
            a = ["--userns", userns, "--unshare-ipc", "--unshare-pid"] + (shareNet ? [] : ["--unshare-net"]) + ["--unshare-uts", "--unshare-cgroup-try"]
            a += ["--die-with-parent", "--new-session", "--uid", "0", "--gid", "0", "--cap-drop", "ALL"]
            for capability in SandboxUser.switchCapabilities { a += ["--cap-add", capability] }
        } else {
            a = ["--unshare-all"] + (shareNet ? ["--share-net"] : [])
            a += ["--die-with-parent", "--new-session", "--unshare-user", "--uid", "65534", "--gid", "65534", "--cap-drop", "ALL", "--disable-userns"]
        }
        return a
    }

    /// The folders above `path`, made in the sandbox open to all (`--perms 0755 --dir`) before `path` is bound there:
    /// bubblewrap setting up as root makes them 0700, which would hide a pyenv Python (or `/etc`'s files) from a root
    /// worker's sandbox user.
    static func openFolders(above path: String) -> [String] {
        var parent = (path as NSString).deletingLastPathComponent
        var parents: [String] = []
        while parent != "/", !parent.isEmpty {
            parents.append(parent)
            parent = (parent as NSString).deletingLastPathComponent
        }
        return parents.reversed().flatMap { ["--perms", "0755", "--dir", $0] }
    }

    /// The sandbox's root and its `/dev` made read-only, once everything is mounted in them. bubblewrap's `/dev` is a
    /// tmpfs of no size of its own, and in its own user namespace (the rootless tier, and a rootless worker's Python
    /// installer) the job owns it: a job could fill the machine's memory with `/dev/junk` files, outside its limits.
    /// (`--remount-ro` is not recursive: `/dev/shm`, `/dev/pts` and the device nodes bound in stay as they were.)
    static let readOnlyRoot = ["--remount-ro", "/dev", "--remount-ro", "/"]

    /// `openToAll`: `/dev/shm` is writable by every user (a sandbox set up as root whose job runs as another).
    static func procAndDev(shmBytes: UInt64, openToAll: Bool = false) -> [String] {
        [
            "--proc", "/proc", "--ro-bind", "/proc/sys", "/proc/sys", "--ro-bind-try", "/proc/sysrq-trigger", "/proc/sysrq-trigger",
            "--dev", "/dev",
        ] + (openToAll ? ["--perms", "1777"] : []) + ["--size", String(shmBytes), "--tmpfs", "/dev/shm"]
    }

    /// The device files a GPU job may use: its assigned `/dev/nvidiaN` (from `CUDA_VISIBLE_DEVICES`) and the shared
    /// control devices; none for a CPU job.
    static func gpuDevices(gpus: Int, visible: String?) -> [String] {
        guard gpus > 0, let visible, !visible.isEmpty else { return [] }
        let indices = visible.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !indices.isEmpty else { return [] }
        return indices.map { "/dev/nvidia\($0)" } + ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"]
    }

    /// The command prefix that starts a long-lived interpreter in this tier's sandbox (the peer services' function-task
    /// interpreters, see `FunctionPool`): the same namespaces and binds as a job, with `directory` as its read-write `/job`;
    /// `python` and its arguments follow. No cgroup: a task is bounded by its time limit (its interpreter is killed when it overruns).
    /// A root worker's (`switchesUser`) names its user namespace `userNamespacePlaceholder`: the pool makes one per
    /// interpreter and puts its descriptor there.
    public func interpreterPrefix(directory: String, environment: [String: String], pythonEnvironment: String? = nil) -> [String] {
        let args = Self.arguments(
            python: configuration.python, pythonRoots: pythonRoots, topLevel: topLevel, scratch: directory, script: "-",
            environment: environment, tmpBytes: configuration.tmpBytes, gpuDevices: [], pythonEnvironment: pythonEnvironment,
            userns: switchesUser ? Self.userNamespacePlaceholder : nil)
        return [configuration.bwrapPath] + args.dropLast(3)
    }

    /// What stands for an interpreter's user namespace descriptor in `interpreterPrefix`.
    public static let userNamespacePlaceholder = "{userns}"


    public func start(_ request: RunRequest) throws -> JobExecution {
        if configuration.limitSource == .rlimits { return try startWithRlimits(request) }
        let spec = request.spec
        let limits = configuration.limits
        let memoryBytes: UInt64? = UInt64(spec.memoryLimitGb) << 30
        let cgroupLimits = CgroupLayout.Limits(memoryBytes: memoryBytes, pids: limits.maxProcesses, cpus: spec.cpus)
        var env = JobEnvironment.make(for: request, home: Self.jobDirectory)
        env["TMPDIR"] = "/tmp"
        let gpuDevices = Self.gpuDevices(gpus: spec.gpus, visible: request.environment["CUDA_VISIBLE_DEVICES"])
        let args = { (fd: Int32?) in
            Self.arguments(
                python: self.configuration.python, pythonRoots: self.pythonRoots, topLevel: self.topLevel, scratch: request.scratch.path,
                script: request.script, environment: env, tmpBytes: self.configuration.tmpBytes, gpuDevices: gpuDevices,
                pythonEnvironment: request.pythonEnvironment, userns: fd.map { String($0) })
        }
        // A root worker's job writes its folder as 65534 (`SandboxUser`).
        if switchesUser { try SandboxUser.handOver(request.scratch.path) }
        let rlimits = Self.rlimits(limits)
        // A warm standby (its interpreter already in the job's sandbox) for a job whose Python start-up would be the
        // same: the job's folder becomes its `/job` and the launcher gets the job. Anything else starts as below.
        let warmable = warmStarts
            && WarmStart.eligible(
                environment: env, pythonEnvironment: request.pythonEnvironment, gpus: spec.gpus, script: request.script,
                files: (try? FileManager.default.contentsOfDirectory(atPath: request.scratch.path)) ?? [])
        if warmable {
            // Only a standby whose launcher already waits: one still starting is left for a later job, and this one
            // starts cold, instead of holding the caller's thread until Python is up. Nor one whose bubblewrap has
            // ended: its launcher may still read for a moment (it dies with bubblewrap, but not at once), and would take
            // the job down with it (`ensureMaking` below discards it).
            if let standby = standbys.take(if: { $0.process.isRunning && ($0.warmDirectory.map(WarmStart.isReady) ?? false) }) {
                if let execution = startWarm(standby, request: request, environment: env, cgroupLimits: cgroupLimits) { return execution }
            } else {
                standbys.ensureMaking()
            }
        } else if !warmStarts, let standby = standbys.take() {
            // A standby forked ahead into a cgroup of its own, if one is ready: the same start, without waiting for
            // the cgroup join. Any failure discards it and starts cold, which fails again with its own reason if it must.
            do {
                try standby.cgroup.apply(cgroupLimits)
                guard standby.userNamespace != nil || !switchesUser else { throw SpawnError(errno: EBADF, path: "a standby's user namespace") }
                let execution = try JobExecution.spawn(
                    standby: standby, path: configuration.bwrapPath, arguments: args(standby.userNamespace), environment: [:],
                    directory: request.scratch.path,
                    limits: rlimits, deadline: request.timeLimitSeconds, hooks: hooks(request, cgroup: standby.cgroup))
                standbys.countServed()
                return execution
            } catch {
                standby.discard()
            }
        }
        let cgroup = try JobCgroup(
            root: configuration.cgroupRoot, name: Standby.coldPrefix + "\(getpid())-\(request.job.jobId)-\(request.job.attempt)-\(UUID().uuidString.prefix(8))",
            limits: cgroupLimits, parent: configuration.cgroupParent)
        let procs: [Int32]
        do { procs = try cgroup.openProcs() } catch {
            cgroup.remove()
            throw error
        }
        defer { procs.forEach { close($0) } }
        var hooks = hooks(request, cgroup: cgroup)
        hooks.cgroupProcs = procs
        do {
            let userns = switchesUser ? try SandboxUser.namespace() : -1
            defer { if userns >= 0 { close(userns) } }
            return try JobExecution.spawn(
                path: configuration.bwrapPath, arguments: args(userns >= 0 ? userns : nil), environment: [:], directory: request.scratch.path,
                limits: rlimits, deadline: request.timeLimitSeconds, hooks: hooks, inherit: userns)
        } catch {
            cgroup.remove()
            throw error
        }
    }

    /// The rlimits of every job of this tier. RLIMIT_AS is never used here: the memory cgroup limits RAM, and RLIMIT_AS
    /// breaks CUDA.
    static func rlimits(_ limits: RunnerLimits) -> [grid_rlimit] {
        [
            grid_rlimit(resource: RLimit.core, value: 0),
            grid_rlimit(resource: RLimit.fsize, value: limits.maxFileBytes),
            grid_rlimit(resource: RLimit.nofile, value: limits.maxOpenFiles),
        ]
    }

    /// Starts `request` in the warm standby `standby`; nil (the standby discarded, the job's folder as it was) when it
    /// could not, and the job then starts cold.
    private func startWarm(_ standby: Standby, request: RunRequest, environment: [String: String], cgroupLimits: CgroupLayout.Limits) -> JobExecution? {
        guard let folder = standby.warmDirectory,
            (folder as NSString).deletingLastPathComponent == request.scratch.deletingLastPathComponent().path
        else {
            standby.discard()
            return nil
        }
        // The launcher has its FIFO open once it runs in its sandbox (it said it is about to): not before may its
        // folder be renamed, since bubblewrap binds it by its name.
        guard WarmStart.waitUntilReading(folder, seconds: 2, alive: { standby.process.isRunning }), let fd = standby.takeFeed() else {
            standby.discard()
            return nil
        }
        let scratch = request.scratch.path
        do {
            try standby.cgroup.apply(cgroupLimits)
        } catch {
            close(fd)
            standby.discard()
            return nil
        }
        guard WarmStart.adopt(scratch: scratch, warm: folder) else {
            close(fd)
            standby.discard()
            // The folder made again for the cold start is the job's user's too.
            if switchesUser { try? SandboxUser.handOver(scratch) }
            return nil
        }
        // From here the job's folder is the standby's `/job` (the launcher removes the FIFO before the job runs).
        guard WarmStart.send(WarmStart.request(script: request.script, environment: environment), to: fd) else {
            // The launcher is gone: the folder, the job's under its own name, stays for the cold start, without the
            // launcher's two files (they would be taken for the job's outputs).
            unlink(scratch + "/" + WarmStart.fifoName)
            unlink(scratch + "/" + WarmStart.readyName)
            standby.discard()
            return nil
        }
        standbys.countServed(warm: true)
        return JobExecution.warm(standby: standby, deadline: request.timeLimitSeconds, hooks: hooks(request, cgroup: standby.cgroup))
    }

    /// The cgroup tier's hold on a job: killed through its cgroup, checked for its limits, explained and removed at
    /// the end.
    private func hooks(_ request: RunRequest, cgroup: JobCgroup) -> JobExecution.Hooks {
        let spec = request.spec
        let limits = configuration.limits
        let ram = spec.memoryLimitGb
        return JobExecution.Hooks(
            killAll: { cgroup.killAll() },
            cgroupHoldsEveryProcess: true,
            check: {
                let u = cgroup.usage()
                if u.pidsLimitHits > 0 { return .init(outcome: .failed, reason: Reasons.tooManyProcesses(limits.maxProcesses)) }
                if u.oomKills > 0 { return .init(outcome: .failed, reason: Reasons.outOfMemory(gb: ram)) }
                return nil
            },
            finish: { report in
                let u = cgroup.usage()
                cgroup.remove()
                let usage = Reasons.Usage(
                    oomKilled: u.oomKills > 0, pidsLimitHit: u.pidsLimitHits > 0,
                    fileLimitHit: report.outcome == .failed && Reasons.fileLimitHit(in: request.scratch, limit: limits.maxFileBytes),
                    cpuSeconds: u.cpuSeconds, peakMemoryBytes: u.peakMemoryBytes)
                return Reasons.explain(report, usage: usage, spec: spec, limits: limits)
            },
            processes: { cgroup.pids() })
    }
}
