import Foundation
public import GridCore
import Synchronization

/// Builds the Python environments jobs declare (`JobSpec.requirements`) and keeps them, addressed by content, under
/// `<data>/envs/<key>`: each is built once, in a temporary folder renamed into place when complete, so a job never sees
/// a half-built one; jobs that need an environment being built wait for that one build. Least recently used
/// environments are deleted when the cache is over its limit (`EnvironmentCache`), never one in use.
///
/// The installer is `uv pip install` when `uv` is found, else `python -m pip install`, always `--target` a folder that
/// the job's sandbox mounts read-only and puts first on `sys.path` (`PYTHONPATH`), so the worker's own packages stay
/// visible beneath it. Wheels only unless the owner allows sdists. In the bwrap tier the installer runs in a sandbox
/// of its own (`EnvBuilder.sandboxArguments`): uid 65534, the home folder hidden, the network only when an index must
/// be reached, and the build folder the only place it may write besides its private `/tmp`.
public actor EnvBuilder {
    /// What the worker's owner decides about environments (worker options `--env-*`, `--index-url`, `--find-links`).
    public struct Configuration: Sendable {
        /// `<data>/envs`.
        public var root: String
        /// The real interpreter jobs run with.
        public var python: String
        /// `uv` to use, when installed (the executable finds it); nil: `python -m pip`.
        public var uv: String?
        /// The package index (`--index-url`); nil: PyPI.
        public var indexURL: String?
        /// Use no index at all, only `findLinks` (`--no-index`).
        public var noIndex = false
        /// Folders (or URLs) of wheels to look in as well (`--find-links`).
        public var findLinks: [String] = []
        /// Build packages that have no wheel from source (`--env-allow-sdist`): this runs the package's own code.
        public var allowSdist = false
        /// A build longer than this is killed and the job fails (`--env-build-minutes`, default 10).
        public var timeLimitSeconds: Double = 600
        /// An environment larger than this is refused (`--env-max-gb`, default 5).
        public var maxEnvironmentBytes: Int64 = 5 << 30
        /// Free space the data disk keeps while an environment is built: below it, the build is stopped (an installer's
        /// extraction is measured as it goes, not only once it is done; `DiskRule`).
        public var diskFloorBytes: Int64 = 256 << 20
        /// The cache's size limit (`--env-cache-gb`, default 10).
        public var cacheLimitBytes: Int64 = 10 << 30
        /// The sandbox the installer runs in; nil: none (the restricted tier), with a cleared environment and a private HOME.
        public var sandbox: Sandbox?
        /// The most processes (threads, as RLIMIT_NPROC counts them) a sandboxed build may run, and the most resident
        /// memory they may hold together (the worker sets the RAM it offers). A build script (`--env-allow-sdist`) or an
        /// installer's resolver that forks or allocates past them is stopped, and says so. Threads count, and uv runs
        /// about two per core: 1,024 leaves a machine of hundreds of cores room, and still bounds a fork bomb.
        public var maxBuildProcesses = 1_024
        public var maxBuildMemoryBytes: Int64 = 4 << 30

        public init(root: String, python: String) {
            self.root = root
            self.python = python
        }
    }

    /// The bubblewrap sandbox of the bwrap tier, as its runner sees this machine.
    public struct Sandbox: Sendable {
        public var bwrapPath: String
        public var pythonRoots: [String]
        var topLevel: [(name: String, symlink: String?)]
        /// Whether the installer runs as 65534 on the host (`SandboxUser`): decided once, as the bwrap tier's runner
        /// decided it for its jobs (its probe job), so a machine where that path fails builds as it runs jobs.
        var switchesUser = false
    }

    /// The interpreter an environment is built for: part of its key.
    public struct Interpreter: Sendable, Hashable {
        /// `3.11.7`.
        public var version: String
        /// `linux-x86_64` and the implementation tag (`cp311`).
        public var platform: String
    }

    /// An environment ready for a job: the folder to mount read-only and put on `sys.path`.
    public struct Ready: Sendable, Hashable {
        public var key: String
        public var digest: String
        public var sitePath: String
        /// Built for this job (false: found in the cache, or built for another job that was waiting at the same time).
        public var built: Bool
    }

    struct Cached {
        var digest: String
        var bytes: Int64
        var lastUsed: Double
    }

    public nonisolated let configuration: Configuration
    public nonisolated let interpreter: Interpreter
    /// The environments on disk and their use, behind a lock rather than the actor: a task of a cached environment
    /// takes and gives back its environment without a hop onto this actor and back (two hops cost a function task's
    /// round trip about a third more than a task without packages; issue 17). Builds stay on the actor.
    private nonisolated let shelf: Mutex<Shelf>
    private var building: [String: [CheckedContinuation<Ready, any Error>]] = [:]
    private var buildTasks: [String: Task<Int64, any Error>] = [:]

    struct Shelf: ~Copyable {
        var cached: [String: Cached] = [:]
        var inUse: [String: Int] = [:]
        /// When each environment's `last-used` stamp was last written (`use`).
        var stamped: [String: Double] = [:]
        /// Each requirement set's key and digest, once computed (three SHA-256s of a task with packages otherwise).
        /// Bounded: cleared when full.
        var addresses: [PythonRequirements: (key: String, digest: String)] = [:]
    }
    static let addressLimit = 256
    /// The stamp is rewritten at most this often per environment.
    static let stampSeconds: Double = 60
    /// How many environments this worker built since it started (tests and the status page read it).
    public private(set) var builds = 0

    /// Where a job sees its environment.
    public static let mountPoint = "/grid-env"

    public init(configuration: Configuration, interpreter: Interpreter) {
        self.configuration = configuration
        self.interpreter = interpreter
        let fm = FileManager.default
        try? fm.createDirectory(atPath: configuration.root, withIntermediateDirectories: true)
        var cached: [String: Cached] = [:]
        for name in (try? fm.contentsOfDirectory(atPath: configuration.root)) ?? [] {
            let path = configuration.root + "/" + name
            if name.hasPrefix(".") {
                // A build that never finished (the worker stopped mid-build): never used, so removed (its folders
                // made deletable first, as a job's are).
                DiskRule.remove(URL(fileURLWithPath: path))
                continue
            }
            guard let meta = Self.readMeta(path) else { continue }
            let used = (try? fm.attributesOfItem(atPath: path + "/last-used")[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
            cached[name] = Cached(digest: meta.digest, bytes: meta.bytes, lastUsed: used)
        }
        shelf = Mutex(Shelf(cached: cached))
    }

    /// Asks the interpreter its version and platform.
    public static func probe(python: String) throws -> Interpreter {
        let r = try Command.run(
            python,
            ["-c", "import sys, sysconfig; print('%d.%d.%d' % sys.version_info[:3]); print(sysconfig.get_platform() + '-' + sys.implementation.cache_tag)"],
            timeout: 30)
        let lines = r.stdout.split(separator: "\n").map(String.init)
        guard r.succeeded, lines.count == 2 else {
            throw GridError(.internal, "cannot ask \(python) its version and platform")
        }
        return Interpreter(version: lines[0], platform: lines[1])
    }

    /// `uv`, when installed: next to the interpreter (`pip install uv` puts it there), else in the system's bin folders.
    public static func findUV(python: String) -> String? {
        let beside = URL(fileURLWithPath: python).deletingLastPathComponent().appendingPathComponent("uv").path
        for candidate in [beside, "/usr/local/bin/uv", "/usr/bin/uv"] where FileManager.default.isExecutableFile(atPath: candidate) {
            return URL(fileURLWithPath: candidate).resolvingSymlinksInPath().path
        }
        return nil
    }

    /// The sandbox for the installer: the bwrap tier's own; for a worker in another tier (OCI, restricted), bubblewrap
    /// at `bwrapPath` when it works here (a probe runs the interpreter in it), so that a build never runs as the
    /// worker's user with its home visible where this machine can prevent it; nil when it cannot.
    public static func sandbox(of runner: any JobRunner, bwrapPath: String = "/usr/bin/bwrap", python: String) -> Sandbox? {
        if let bwrap = runner as? BwrapRunner {
            return Sandbox(bwrapPath: bwrap.configuration.bwrapPath, pythonRoots: bwrap.pythonRoots, topLevel: bwrap.topLevel, switchesUser: bwrap.switchesUser)
        }
        guard FileManager.default.isExecutableFile(atPath: bwrapPath) else { return nil }
        var sandbox = Sandbox(bwrapPath: bwrapPath, pythonRoots: BwrapRunner.pythonRoots(of: python), topLevel: BwrapRunner.topLevel())
        let probe = NSTemporaryDirectory() + "campusgrid-env-probe-\(getpid())-\(UUID().uuidString.prefix(8))"
        guard (try? FileManager.default.createDirectory(atPath: probe, withIntermediateDirectories: true)) != nil else { return nil }
        defer { try? FileManager.default.removeItem(atPath: probe) }
        var c = Configuration(root: probe, python: python)
        c.noIndex = true
        let args = sandboxArguments(sandbox, configuration: c, buildFolder: probe) + [python, "-c", "open('/build/ok', 'w').write('ok')"]
        guard let r = try? Command.run(bwrapPath, args, timeout: 30) else { return nil }
        guard r.succeeded && FileManager.default.fileExists(atPath: probe + "/ok") else { return nil }
        // A root worker's installer runs as 65534 where a probe through that very path shows it works.
        if SandboxUser.switches {
            sandbox.switchesUser =
                SandboxUser.probe(
                    bwrap: bwrapPath,
                    arguments: { userns, folder in
                        sandboxArguments(sandbox, configuration: c, buildFolder: folder, userns: userns) + SandboxUser.dropPrefix(closing: userns)
                            + [python, "probe.py"]
                    }, script: "probe.py") == nil
        }
        return sandbox
    }

    /// The options that change what an install produces: part of the key.
    nonisolated var keyOptions: [String] {
        var o = ["sdist \(configuration.allowSdist)"]
        if configuration.noIndex { o.append("no-index") } else if let i = configuration.indexURL { o.append("index " + i) }
        o += configuration.findLinks.map { "find-links " + $0 }
        // uv's own flags (`uvBuildFlags`): an environment an older worker built without bytecode is not taken for one
        // built with it (pip's always held it, and its keys stay as they were).
        if configuration.uv != nil { o.append("uv " + Self.uvBuildFlags.joined(separator: " ")) }
        return o
    }

    /// `requirements`' folder name here (`key(for:)`) and its digest, computed once per set.
    nonisolated func address(of requirements: PythonRequirements) -> (key: String, digest: String) {
        if let known = shelf.withLock({ $0.addresses[requirements] }) { return known }
        let address = (key: key(for: requirements), digest: requirements.digest)
        shelf.withLock { shelf in
            if shelf.addresses.count >= Self.addressLimit { shelf.addresses.removeAll(keepingCapacity: true) }
            shelf.addresses[requirements] = address
        }
        return address
    }

    /// How many sets' addresses are remembered (tests).
    nonisolated var rememberedAddresses: Int { shelf.withLock { $0.addresses.count } }

    /// Whether `path` is a directory, by one `stat` (`FileManager.fileExists` costs several times that).
    static func isDirectory(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
    }

    /// The folder name of `requirements`' environment on this worker.
    public nonisolated func key(for requirements: PythonRequirements) -> String {
        requirements.environmentKey(python: interpreter.version, platform: interpreter.platform, options: keyOptions)
    }

    /// The digests of the environments cached here, reported to the manager for placement.
    /// The digests of the environments cached here, the most recently used first, at most `limit` (what the manager
    /// keeps of a worker's report: `WorkerClaims.envsKept`).
    public nonisolated func cachedDigests(limit: Int = 4_096) -> [String] {
        shelf.withLock { shelf in
            var seen = Set<String>()
            var out: [String] = []
            for entry in shelf.cached.values.sorted(by: { ($0.lastUsed, $0.digest) > ($1.lastUsed, $1.digest) }) where out.count < limit {
                if seen.insert(entry.digest).inserted { out.append(entry.digest) }
            }
            return out
        }
    }

    /// The environment for `requirements` if it is cached here, now counted as in use until `release(_:)`; nil if it
    /// must be built (`prepare`). Throws as `prepare` does when this worker's Python does not fit.
    public nonisolated func cachedEnvironment(for requirements: PythonRequirements) throws -> Ready? {
        if let spec = requirements.requiresPython, !PythonVersionSpec.allows(spec, version: interpreter.version) {
            throw GridError(.invalidRequirements, "the job requires Python \(spec); this worker has Python \(interpreter.version)")
        }
        let (key, digest) = address(of: requirements)
        let site = configuration.root + "/" + key + "/site"
        // The folder's check is made under the lock, so no eviction moves it between the check and the use.
        // nil: not here; .some(nil): taken, no stamp due; .some(now): taken, stamp due.
        let taken = shelf.withLock { shelf -> Double?? in
            guard shelf.cached[key] != nil, Self.isDirectory(site) else { return nil }
            return .some(use(key, &shelf))
        }
        guard let due = taken else { return nil }
        if let now = due { stamp(key, now) }
        return Ready(key: key, digest: digest, sitePath: site, built: false)
    }

    /// The environment for `requirements`, built if it is not cached; `log` receives the installer's output. The
    /// environment counts as in use until `release(_:)`. Throws a `GridError` (`invalidRequirements`) whose message
    /// says why it could not be built, for the job's reason.
    public func prepare(_ requirements: PythonRequirements, log: @escaping @Sendable ([UInt8]) async -> Void) async throws -> Ready {
        if let ready = try cachedEnvironment(for: requirements) {
            await log(Array("[environment \(ready.key.prefix(12)) is cached on this worker]\n".utf8))
            return ready
        }
        let key = key(for: requirements)
        let site = configuration.root + "/" + key + "/site"
        if building[key] != nil {
            await log(Array("[waiting for environment \(key.prefix(12)), being built for another job]\n".utf8))
            var ready = try await withCheckedThrowingContinuation { building[key]!.append($0) }
            ready.built = false
            take(key)
            return ready
        }
        building[key] = []
        let result: Result<Ready, any Error>
        do {
            // A task of its own so that `stopBuilds()` can end it (and the installer) when the worker stops.
            let configuration = configuration
            let task = Task { try await Self.build(requirements, key: key, configuration: configuration, log: log) }
            buildTasks[key] = task
            defer { buildTasks[key] = nil }
            let bytes = try await task.value
            builds += 1
            shelf.withLock { $0.cached[key] = Cached(digest: requirements.digest, bytes: bytes, lastUsed: Date().timeIntervalSince1970) }
            result = .success(Ready(key: key, digest: requirements.digest, sitePath: site, built: true))
        } catch {
            result = .failure(error)
        }
        for waiter in building.removeValue(forKey: key) ?? [] { waiter.resume(with: result) }
        let ready = try result.get()
        take(key)
        evict()
        return ready
    }

    /// The worker is stopping: kill every installer still running (their jobs fail, and run elsewhere later).
    public func stopBuilds() {
        for task in buildTasks.values { task.cancel() }
    }

    /// The job or task that used `key` ended.
    public nonisolated func release(_ key: String) {
        let idle = shelf.withLock { shelf -> Bool in
            guard let n = shelf.inUse[key] else { return false }
            shelf.inUse[key] = n > 1 ? n - 1 : nil
            return n == 1
        }
        if idle { evict() }
    }

    /// Counts `key` as in use once more (under the lock); the time to write in its `last-used` stamp, when one is due.
    private nonisolated func use(_ key: String, _ shelf: inout Shelf) -> Double? {
        shelf.inUse[key, default: 0] += 1
        let now = Date().timeIntervalSince1970
        shelf.cached[key]?.lastUsed = now
        // The stamp on disk orders evictions only after a restart: a minute's precision is plenty there, and a file
        // written for every use would cost each function task of a cached environment a write (about half its round trip).
        guard now - (shelf.stamped[key] ?? -.infinity) >= Self.stampSeconds else { return nil }
        shelf.stamped[key] = now
        return now
    }

    /// Takes `key` into use, writing its stamp (outside the lock) when one is due.
    private nonisolated func take(_ key: String) {
        if let now = shelf.withLock({ use(key, &$0) }) { stamp(key, now) }
    }

    private nonisolated func stamp(_ key: String, _ now: Double) {
        _ = FileManager.default.createFile(atPath: configuration.root + "/" + key + "/last-used", contents: Data("\(now)\n".utf8))
    }

    /// Deletes least recently used environments while the cache is over its limit. Each leaves the shelf and its
    /// folder is moved aside under the lock (so no task takes it meanwhile, and no build puts a new one where the old
    /// one is being moved); the folder is deleted after.
    private nonisolated func evict() {
        let trashed = shelf.withLock { shelf -> [String] in
            let entries = shelf.cached.map {
                EnvironmentCache.Entry(key: $0.key, bytes: $0.value.bytes, lastUsed: $0.value.lastUsed, inUse: shelf.inUse[$0.key] != nil)
            }
            return EnvironmentCache.evictions(entries, limitBytes: configuration.cacheLimitBytes).compactMap { key in
                shelf.cached[key] = nil
                shelf.stamped[key] = nil
                let trash = configuration.root + "/.evicted-" + key + "-" + UUID().uuidString.prefix(8)
                return rename(configuration.root + "/" + key, trash) == 0 ? trash : nil
            }
        }
        for trash in trashed { DiskRule.remove(URL(fileURLWithPath: trash)) }
    }
}
