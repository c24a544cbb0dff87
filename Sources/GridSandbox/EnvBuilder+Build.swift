import CGridSpawn
import Foundation
import GridCore
import Synchronization

extension EnvBuilder {
    /// Where the build folder appears inside the installer's sandbox.
    static let buildDirectory = "/build"

    struct Meta: Codable {
        var digest: String
        var requirements: [String]
        var requiresPython: String?
        var bytes: Int64
        var builtAt: Double
        var seconds: Double
    }

    static func readMeta(_ folder: String) -> Meta? {
        guard let data = FileManager.default.contents(atPath: folder + "/meta.json") else { return nil }
        return try? JSONDecoder().decode(Meta.self, from: data)
    }

    /// What uv is asked beyond pip's defaults, which change what it builds: part of the environment's key too
    /// (`keyOptions`), so an environment built without one of them is never taken for one built with it.
    static let uvBuildFlags = ["--compile-bytecode"]

    /// The installer's command line (pure). `site` and `requirementsFile` are paths as the installer sees them.
    ///
    /// Both installers leave each module's bytecode beside it: pip always does, and uv is told to
    /// (`--compile-bytecode`). A job sees its environment read-only, so Python can never cache bytecode there itself:
    /// without it every import compiles its modules from source, every time (numpy with scikit-learn: 2.9 s against
    /// 1.15 s of CPU for one import; torch: 2.7 s against 1.2 s). The compile is paid once, when the environment is built.
    static func installCommand(configuration c: Configuration, site: String, requirementsFile: String) -> [String] {
        var a: [String]
        if let uv = c.uv {
            a = [uv, "pip", "install", "--no-config", "--python", c.python, "--target", site] + uvBuildFlags
        } else {
            a = [c.python, "-m", "pip", "install", "--no-input", "--disable-pip-version-check", "--no-cache-dir", "--progress-bar", "off", "--target", site]
        }
        if !c.allowSdist { a += ["--only-binary", ":all:"] }
        // The index URL goes in the environment (`installerEnvironment`): it may carry a password.
        if c.noIndex { a.append("--no-index") }
        for link in c.findLinks { a += ["--find-links", link] }
        a += ["-r", requirementsFile]
        return a
    }

    /// The bubblewrap arguments around the installer (pure): the same read-only view of the system as a job, without
    /// the home folder; the build folder read-write at `/build`; the network only when an index must be reached;
    /// local `--find-links` folders read-only at their own paths.
    /// The installer's environment is bubblewrap's own (`installerEnvironment`, set at spawn), never `--setenv`
    /// arguments, which anyone on the machine could read with `ps`.
    ///
    /// `userns`: a root worker's (`SandboxUser`): the installer then runs as 65534 outside, after the prefix the
    /// caller puts before its command (`SandboxUser.dropPrefix`), and the build folder must be 65534's.
    static func sandboxArguments(_ s: Sandbox, configuration c: Configuration, buildFolder: String, userns: String? = nil) -> [String] {
        var a = BwrapRunner.isolation(userns: userns, shareNet: !c.noIndex)
        a += ["--ro-bind", "/usr", "/usr"]
        for entry in s.topLevel {
            if let target = entry.symlink { a += ["--symlink", target, "/" + entry.name] } else { a += ["--ro-bind", "/" + entry.name, "/" + entry.name] }
        }
        var etc = ["ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "localtime", "nsswitch.conf", "passwd", "group"]
        if !c.noIndex { etc += ["resolv.conf", "hosts", "ssl", "ca-certificates", "pki", "gai.conf"] }
        if userns != nil { a += ["--perms", "0755", "--dir", "/etc"] }
        for file in etc { a += ["--ro-bind-try", "/etc/" + file, "/etc/" + file] }
        let open = { (path: String) in userns == nil ? [] : BwrapRunner.openFolders(above: path) }
        for root in s.pythonRoots { a += open(root) + ["--ro-bind", root, root] }
        if let uv = c.uv { a += open(uv) + ["--ro-bind", uv, uv] }
        // The kernel's settings read-only here too: a package's build script runs in it.
        a += BwrapRunner.procAndDev(shmBytes: 256 << 20, openToAll: userns != nil)
        a += (userns == nil ? [] : ["--perms", "1777"]) + ["--size", String(1 << 30), "--tmpfs", "/tmp"]
        // After the private /tmp, so that a wheel folder under /tmp is seen.
        for link in c.findLinks where link.hasPrefix("/") { a += open(link) + ["--ro-bind", link, link] }
        a += ["--bind", buildFolder, buildDirectory, "--chdir", buildDirectory] + BwrapRunner.readOnlyRoot
        return a
    }

    /// Where a sandboxed installer keeps its temporary files and uv's cache: in the build folder, on the worker's disk,
    /// not the sandbox's private `/tmp` (a 1 GiB tmpfs): both hold the unpacked packages, which for torch-sized
    /// environments approach or pass 1 GiB. Removed before the environment is put in place.
    static let scratchDirectory = buildDirectory + "/tmp"

    /// The installer's environment: nothing of the worker's (no tokens, no pip configuration of its user); the index,
    /// which may carry a password, is set here rather than on the command line.
    static func installerEnvironment(_ c: Configuration, home: String, sandboxed: Bool) -> [String: String] {
        let scratch = sandboxed ? scratchDirectory : home
        var env = [
            "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": home, "TMPDIR": scratch, "LANG": "C.UTF-8",
            "PIP_CONFIG_FILE": "/dev/null", "PYTHONDONTWRITEBYTECODE": "1", "UV_CACHE_DIR": scratch + "/uv-cache", "UV_NO_PROGRESS": "1",
        ]
        if let index = c.indexURL, !c.noIndex {
            env["PIP_INDEX_URL"] = index
            env["UV_DEFAULT_INDEX"] = index
        }
        if sandboxed, FileManager.default.fileExists(atPath: "/etc/ssl/certs/ca-certificates.crt") {
            env["SSL_CERT_FILE"] = "/etc/ssl/certs/ca-certificates.crt"
        }
        return env
    }

    /// Builds `requirements` into `<root>/<key>` through a temporary folder; returns its size in bytes.
    static func build(
        _ requirements: PythonRequirements, key: String, configuration c: Configuration, log: @escaping @Sendable ([UInt8]) async -> Void
    ) async throws -> Int64 {
        let fm = FileManager.default
        let temp = c.root + "/.build-" + key + "-" + UUID().uuidString.prefix(8)
        let final = c.root + "/" + key
        try fm.createDirectory(atPath: temp + "/site", withIntermediateDirectories: true)
        var keepTemp = false
        // Removed as a job's folder is (`DiskRule.remove`): a build may leave folders without permissions, which a worker
        // that is not root could not delete otherwise.
        defer { if !keepTemp { DiskRule.remove(URL(fileURLWithPath: temp)) } }
        try Data((requirements.lines.joined(separator: "\n") + "\n").utf8).write(to: URL(fileURLWithPath: temp + "/requirements.txt"))
        let installer = c.uv == nil ? "pip" : "uv"
        await log(Array("[installing \(requirements.lines.count) package(s) with \(installer): \(requirements.lines.joined(separator: " "))]\n".utf8))
        let started = Date()
        let execution: JobExecution
        /// Why the watcher stopped a sandboxed build (`overLimit`), if it did.
        let stopped = Mutex<String?>(nil)
        let limits = [grid_rlimit(resource: RLimit.core, value: 0), grid_rlimit(resource: RLimit.fsize, value: UInt64(max(0, c.maxEnvironmentBytes)))]
        if let sandbox = c.sandbox {
            try fm.createDirectory(atPath: temp + "/tmp", withIntermediateDirectories: true)
            let env = installerEnvironment(c, home: "/tmp", sandboxed: true)
            let command = installCommand(configuration: c, site: buildDirectory + "/site", requirementsFile: buildDirectory + "/requirements.txt")
            // A root worker's installer (a package's build script runs in it) is 65534 outside too (`SandboxUser`).
            let switches = sandbox.switchesUser
            if switches { try SandboxUser.handOver(temp) }
            let userns = switches ? try SandboxUser.namespace() : -1
            defer { if userns >= 0 { close(userns) } }
            let prefix = userns >= 0 ? SandboxUser.dropPrefix(closing: String(userns)) : []
            // Its processes and memory are bounded: RLIMIT_NPROC set inside its user namespace (where it counts only the
            // build's), and a watcher of its PID namespace that stops it past either limit (a fork between two looks, or
            // memory, which no rlimit bounds in all). Before, a build script could fork and allocate without bound.
            // (Only where the kernel counts it per namespace: before Linux 5.14 it counted every task of the user.)
            let nproc =
                RootlessLimits.nprocCountsPerNamespace(release: RootlessLimits.kernelRelease)
                ? [c.python, "-S", "-c", RootlessLimits.execPrelude(processes: max(1, c.maxBuildProcesses))] : []
            let namespace = JobNamespace()
            let (most, mostMemory) = (c.maxBuildProcesses, c.maxBuildMemoryBytes)
            let hooks = JobExecution.Hooks(
                killAll: { namespace.killAll() },
                check: {
                    let tasks = namespace.sample()
                    // Resident memory summed over processes counts pages they share (a parent's, after a fork) once per
                    // process: over the limit, it is measured again by each process's share of them (PSS).
                    var resident = namespace.peakResidentBytes
                    if resident > mostMemory { resident = JobNamespace.proportionalBytes(namespace.members().map(\.pid)) ?? resident }
                    guard let why = overLimit(tasks: tasks, residentBytes: resident, maxProcesses: most, maxMemoryBytes: mostMemory)
                    else { return nil }
                    stopped.withLock { $0 = why }
                    return .init(outcome: .failed, reason: why)
                },
                finish: { report in
                    _ = namespace.waitGone(seconds: 10)
                    return report
                },
                processes: { namespace.members().map(\.pid) })
            execution = try JobExecution.spawn(
                path: sandbox.bwrapPath,
                arguments: sandboxArguments(sandbox, configuration: c, buildFolder: temp, userns: userns >= 0 ? String(userns) : nil) + prefix + nproc
                    + command,
                environment: env, directory: temp, limits: limits, deadline: c.timeLimitSeconds, hooks: hooks, inherit: userns)
            namespace.attach(execution.pid)
        } else {
            try fm.createDirectory(atPath: temp + "/home", withIntermediateDirectories: true)
            let command = installCommand(configuration: c, site: temp + "/site", requirementsFile: temp + "/requirements.txt")
            execution = try JobExecution.spawn(
                path: command[0], arguments: Array(command.dropFirst()), environment: installerEnvironment(c, home: temp + "/home", sandboxed: false),
                directory: temp, limits: limits, deadline: c.timeLimitSeconds)
        }
        // Measured as it goes: the size check below comes only once the installer is done, and a package of 50 GB
        // would have filled the disk by then. Its folder holds the environment and the installer's downloads.
        let most = c.maxEnvironmentBytes > Int64.max / 4 ? Int64.max / 2 : max(0, c.maxEnvironmentBytes) * 2 + (1 << 30)
        execution.watchDisk(folder: temp, limits: DiskLimits(maxBytes: most, maxEntries: 1_000_000, floorBytes: c.diskFloorBytes))
        var tail: [UInt8] = []
        await withTaskCancellationHandler {
            for await chunk in execution.output {
                tail += chunk
                if tail.count > 16_384 { tail.removeFirst(tail.count - 16_384) }
                await log(chunk)
            }
        } onCancel: {
            execution.cancel()
        }
        let report = await execution.wait()
        let seconds = Date().timeIntervalSince(started)
        // The installer's scratch (its temporary files, uv's cache) is not part of the environment.
        DiskRule.remove(URL(fileURLWithPath: temp + "/tmp"))
        switch report.outcome {
        case .completed: break
        case .timedOut:
            throw GridError(
                .invalidRequirements,
                "building the environment took longer than this worker's limit of \(Self.minutes(c.timeLimitSeconds)) and was stopped")
        case .cancelled:
            throw GridError(.invalidRequirements, "building the environment was cancelled")
        case .failed:
            if let why = stopped.withLock({ $0 }) { throw GridError(.invalidRequirements, "building the environment was stopped: \(why)") }
            if let reason = report.reason, DiskRule.isVerdict(reason) {
                throw GridError(.invalidRequirements, "building the environment was stopped: \(reason)")
            }
            throw GridError(.invalidRequirements, failureReason(
                    String(decoding: tail, as: UTF8.self), allowSdist: c.allowSdist, signal: report.signal, maxBytes: c.maxEnvironmentBytes))
        }
        // The installer wrote in this folder (a package's build script, with --env-allow-sdist, runs code there): what
        // the worker reads or writes in it next must be what it made, not a link the build left to the worker's files.
        if let why = plantedLink(in: temp) { throw GridError(.invalidRequirements, "building the environment left \(why); it is not kept") }
        // Only the environment is kept: whatever else the build left in its folder (a build script can write gigabytes
        // beside `site`, or a `last-used` stamp from the future) went into the cache uncounted, for good.
        for name in (try? fm.contentsOfDirectory(atPath: temp)) ?? [] where name != "site" {
            DiskRule.remove(URL(fileURLWithPath: temp + "/" + name))
        }
        let bytes = folderSize(temp)
        if bytes > c.maxEnvironmentBytes {
            throw GridError(
                .invalidRequirements,
                "the environment is \(bytes >> 20) MB, over this worker's limit of \(c.maxEnvironmentBytes >> 20) MB for one environment")
        }
        let meta = Meta(
            digest: requirements.digest, requirements: requirements.lines, requiresPython: requirements.requiresPython, bytes: bytes,
            builtAt: Date().timeIntervalSince1970, seconds: seconds)
        try writeNew(temp + "/meta.json", JSONEncoder().encode(meta))
        DiskRule.remove(URL(fileURLWithPath: final))
        try fm.moveItem(atPath: temp, toPath: final)
        keepTemp = true
        await log(Array("[environment \(key.prefix(12)) built in \(String(format: "%.1f", seconds)) s, \(bytes >> 10) KB]\n".utf8))
        return bytes
    }

    /// Why a sandboxed build must stop (pure), or nil: its processes (threads, as RLIMIT_NPROC counts them) or their
    /// resident memory together over the worker's limits. A limit below 1 is taken as 1.
    static func overLimit(tasks: Int, residentBytes: Int64, maxProcesses: Int, maxMemoryBytes: Int64) -> String? {
        if tasks >= max(1, maxProcesses) { return "it ran \(tasks) processes, this worker's limit is \(max(1, maxProcesses))" }
        let memory = max(1, maxMemoryBytes)
        if residentBytes > memory { return "it used \(residentBytes >> 20) MB of memory, over this worker's limit of \(memory >> 20) MB for a build" }
        return nil
    }

    /// The installer's own error, from its first error line on (pip's `ERROR:`, uv's `error:`/`×` and the `╰─▶`
    /// explanation after it), else its last lines, with a hint when a package seems to have no wheel and sdists are off.
    static func failureReason(_ output: String, allowSdist: Bool, signal: Int32?, maxBytes: Int64 = 0) -> String {
        // A file over RLIMIT_FSIZE: SIGXFSZ, or EFBIG where the installer ignores the signal (Python does).
        if signal == 25 || output.contains("[Errno 27]") || output.contains("File too large") {
            return "the environment grew over this worker's limit of \(maxBytes >> 20) MB for one environment"
        }
        let lines = output.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty && !$0.hasPrefix("[") }
        let isError: (String) -> Bool = { $0.hasPrefix("ERROR:") || $0.hasPrefix("error:") || $0.hasPrefix("×") }
        var picked = lines.firstIndex(where: isError).map { Array(lines[$0...].prefix(6)) } ?? Array(lines.suffix(3))
        picked = picked.filter { !$0.hasPrefix("hint:") }.map { line in
            var l = Substring(line)
            for prefix in ["╰─▶", "×", "│"] where l.hasPrefix(prefix) { l = l.dropFirst(prefix.count) }
            return l.trimmingCharacters(in: .whitespaces)
        }
        var reason = "could not install the job's packages: " + picked.joined(separator: " ").prefix(800)
        let noVersion = [
            "No matching distribution", "from versions: none", "no usable wheels", "building from source is disabled",
            "not found in the provided package locations", "not found in the package registry",
        ].contains { output.contains($0) }
        if !allowSdist, noVersion {
            reason += " (this worker installs wheels only: a package or version that is published only as source (sdist) is refused;"
                + " check the name and version, or ask the worker's owner to allow sdists with --env-allow-sdist)"
        }
        return reason
    }

    static func minutes(_ seconds: Double) -> String {
        seconds >= 60 && seconds.truncatingRemainder(dividingBy: 60) == 0 ? "\(Int(seconds / 60)) min" : "\(Int(seconds)) s"
    }

    /// What a build left in its folder `folder` that the worker must not follow, or nil: `site` not a folder of its
    /// own (a link to one of the worker's, which every job of this environment would then be shown), or a
    /// `meta.json` already there (a link the worker's write would follow). Checked with `lstat`, which follows none.
    static func plantedLink(in folder: String) -> String? {
        var st = stat()
        guard lstat(folder + "/site", &st) == 0, st.st_mode & S_IFMT == S_IFDIR else { return "its site folder as something other than a folder" }
        if lstat(folder + "/meta.json", &st) == 0 { return "a file named meta.json in its folder" }
        return nil
    }

    /// Writes `data` to a new file at `path`, never through a link nor over a file already there.
    static func writeNew(_ path: String, _ data: Data) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw GridError(.internal, "could not write \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let written = data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard written == data.count else { throw GridError(.internal, "could not write \(path) whole") }
    }

    static func folderSize(_ path: String) -> Int64 {
        var total: Int64 = 0
        guard let e = FileManager.default.enumerator(atPath: path) else { return 0 }
        while let name = e.nextObject() as? String {
            if let attrs = try? FileManager.default.attributesOfItem(atPath: path + "/" + name), attrs[.type] as? FileAttributeType == .typeRegular {
                total += (attrs[.size] as? Int64) ?? Int64((attrs[.size] as? Int) ?? 0)
            }
        }
        return total
    }
}
