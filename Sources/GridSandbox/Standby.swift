import CGridSpawn
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A job's first process, forked ahead of its job into a cgroup of its own (issue 17).
///
/// Joining a cgroup is the slow part of starting a sandboxed job: a migration waits for an RCU grace period, about
/// 10 ms on this kind of machine, while the job's whole sandbox (bubblewrap's namespaces and mounts) takes about 5.
/// A standby pays it before the job is known: it is forked, joins a fresh cgroup and closes every descriptor it
/// inherited, then waits. When a job comes, its limits are written into that cgroup and the standby gets its exec
/// request (command, environment, directory, rlimits), as a cold start would have used them. So the job runs under
/// exactly the limits and in exactly the sandbox of a cold start; only the order differs: the cgroup's limits are
/// written after its first process joined, before that process runs anything of the job's.
///
/// A standby serves one job. One that is never used exits when discarded (its socket closes) or with the worker
/// (its parent-death signal), and its cgroup is removed.
final class Standby: Sendable {
    let process: ForkedProcess
    let cgroup: JobCgroup
    /// The read end of the job's output pipe (its standard output and error).
    let outputFD: Int32
    /// The request socket and the report pipe, until the exec request went out or the standby was discarded.
    private let channel: Mutex<(request: Int32, report: Int32)?>
    /// A warm standby's folder (`WarmStart`): its interpreter already runs in the sandbox with this folder at `/job`,
    /// waiting for a job. Nil: the standby waits unexec'd, for a job's exec request.
    let warmDirectory: String?
    /// The user namespace its sandbox is to start in (`SandboxUser`; -1: none), which the standby holds at this
    /// number until its exec; this process's copy is closed once the standby is spent.
    private let namespace: Mutex<Int32>
    /// A warm standby's feed (`WarmStart.openFeed`): the only write end of its launcher's FIFO, held by this process
    /// alone until the job's request goes out on it (-1: none, or taken). Closed, by a discard or by this process's
    /// death, it ends the launcher.
    private let feed = Mutex<Int32>(-1)

    private init(
        process: ForkedProcess, cgroup: JobCgroup, outputFD: Int32, request: Int32, report: Int32, warmDirectory: String?, namespace: Int32
    ) {
        self.process = process
        self.cgroup = cgroup
        self.outputFD = outputFD
        self.warmDirectory = warmDirectory
        self.namespace = Mutex(namespace)
        channel = Mutex((request, report))
    }

    /// The descriptor of its sandbox's user namespace, for bubblewrap's `--userns` (nil: none, or spent).
    var userNamespace: Int32? {
        let fd = namespace.withLock { $0 }
        return fd >= 0 ? fd : nil
    }

    private func closeNamespace() {
        let fd = namespace.withLock { fd in
            defer { fd = -1 }
            return fd
        }
        if fd >= 0 { close(fd) }
    }

    /// Takes the warm launcher's feed, to send the job's request on (and close): nil if there is none or it was taken.
    func takeFeed() -> Int32? {
        let fd = feed.withLock { fd in
            defer { fd = -1 }
            return fd
        }
        return fd >= 0 ? fd : nil
    }

    deinit {
        if let fd = takeFeed() { close(fd) }
    }

    /// Makes a cgroup named `name` (holding only the `pids` limit until a job's limits are applied) and forks a
    /// standby into it. `userNamespace`: it gets a user namespace of its own for its sandbox (`SandboxUser`).
    static func make(root: String, parent: String?, name: String, pids: Int, warmDirectory: String? = nil, userNamespace: Bool = false) throws -> Standby {
        let userns = userNamespace ? try SandboxUser.namespace() : -1
        let standby: Standby
        do {
            standby = try make(root: root, parent: parent, name: name, pids: pids, warmDirectory: warmDirectory, namespace: userns)
        } catch {
            if userns >= 0 { close(userns) }
            throw error
        }
        return standby
    }

    private static func make(root: String, parent: String?, name: String, pids: Int, warmDirectory: String?, namespace userns: Int32) throws -> Standby {
        let cgroup = try JobCgroup(root: root, name: name, limits: .init(memoryBytes: nil, pids: pids, cpus: nil), parent: parent)
        let procs: [Int32]
        do { procs = try cgroup.openProcs() } catch {
            cgroup.remove()
            throw error
        }
        defer { procs.forEach { close($0) } }
        var fds: [Int32] = [0, 0]
        guard grid_pipe_cloexec(&fds) == 0 else {
            cgroup.remove()
            throw SpawnError(errno: errno, path: "a standby's output pipe")
        }
        let outWrite = fds[1]
        let ends = Mutex<(Int32, Int32)>((-1, -1))
        let process: ForkedProcess
        do {
            process = try ForkedProcess.start(["standby"], environment: [:]) { _, _ in
                var request: Int32 = -1
                var report: Int32 = -1
                let pid = procs.withUnsafeBufferPointer { cp in
                    grid_standby_fork(cp.baseAddress, Int32(cp.count), outWrite, userns, &request, &report)
                }
                if pid > 0 { ends.withLock { $0 = (request, report) } }
                return pid
            }
        } catch {
            close(outWrite)
            close(fds[0])
            cgroup.remove()
            throw error
        }
        close(outWrite)
        let (request, report) = ends.withLock { $0 }
        return Standby(
            process: process, cgroup: cgroup, outputFD: fds[0], request: request, report: report, warmDirectory: warmDirectory, namespace: userns)
    }

    /// Makes a warm standby (`WarmStart`): a standby whose folder `directory` (made here, with its FIFO) is bound at
    /// `/job` and which execs `bwrap` with `arguments(userns)` at once, the interpreter then waiting for its job there.
    /// `userNamespace`: its sandbox starts in a user namespace of its own (`SandboxUser`, the descriptor passed to
    /// `arguments`), and its folder is handed to the sandbox's user.
    static func makeWarm(
        root: String, parent: String?, name: String, pids: Int, directory: String, bwrap: String, userNamespace: Bool = false,
        arguments: (Int32?) -> [String], limits: [grid_rlimit]
    ) throws -> Standby {
        try? FileManager.default.removeItem(atPath: directory)
        guard mkdir(directory, 0o755) == 0 else { throw SpawnError(errno: errno, path: directory) }
        guard mkfifo(directory + "/" + WarmStart.fifoName, 0o600) == 0 else {
            let e = errno
            try? FileManager.default.removeItem(atPath: directory)
            throw SpawnError(errno: e, path: directory + "/" + WarmStart.fifoName)
        }
        // The feed is open before the standby exists, so the launcher never waits on a FIFO nobody will write: bubblewrap
        // arms its sandbox's death signal only once the sandbox is set up, so a worker killed before then (or a
        // standby's first process killed by it) leaves the sandbox running; its launcher then reads the end of the
        // feed, and exits.
        guard let feed = WarmStart.openFeed(directory + "/" + WarmStart.fifoName) else {
            let e = errno
            try? FileManager.default.removeItem(atPath: directory)
            throw SpawnError(errno: e, path: directory + "/" + WarmStart.fifoName)
        }
        let standby: Standby
        do {
            if userNamespace { try SandboxUser.handOver(directory) }
            standby = try make(root: root, parent: parent, name: name, pids: pids, warmDirectory: directory, userNamespace: userNamespace)
        } catch {
            close(feed)
            try? FileManager.default.removeItem(atPath: directory)
            throw error
        }
        standby.feed.withLock { $0 = feed }
        do {
            try standby.go(path: bwrap, arguments: arguments(standby.userNamespace), environment: [:], directory: directory, limits: limits)
        } catch {
            standby.discard()
            throw error
        }
        return standby
    }

    /// The exec request as `grid_standby_go` reads it (pure).
    static func request(
        path: String, arguments: [String], environment: [String: String], directory: String, limits: [grid_rlimit], newSession: Bool
    ) -> [UInt8] {
        var out: [UInt8] = []
        func field(_ s: String) {
            out += Array(s.utf8)
            out.append(0)
        }
        field(path)
        field(directory)
        field(newSession ? "1" : "0")
        field(String(arguments.count + 1))
        field(path)
        arguments.forEach(field)
        field(String(environment.count))
        for key in environment.keys.sorted() { field("\(key)=\(environment[key]!)") }
        field(String(limits.count))
        for limit in limits {
            field(String(limit.resource))
            field(String(limit.value))
        }
        return out
    }

    /// Starts the job in this standby: `path` with `arguments` (argv[0] is `path`). Throws `SpawnError` when it
    /// could not (the standby died, or the exec failed); the standby is spent either way.
    func go(path: String, arguments: [String], environment: [String: String], directory: String, limits: [grid_rlimit]) throws {
        guard let (request, report) = takeChannel() else { throw SpawnError(errno: EALREADY, path: path) }
        for s in [path, directory] + arguments + environment.map({ $0.key + $0.value }) where s.utf8.contains(0) {
            close(request)
            close(report)
            throw SpawnError(errno: EINVAL, path: path)
        }
        try send(
            Self.request(path: path, arguments: arguments, environment: environment, directory: directory, limits: limits, newSession: true),
            request: request, report: report, path: path)
    }

    /// Sends an exec request as it is (`go` builds it; a test sends a malformed one) and waits for the exec.
    func send(_ bytes: [UInt8]) throws {
        guard let (request, report) = takeChannel() else { throw SpawnError(errno: EALREADY, path: "a standby") }
        try send(bytes, request: request, report: report, path: "a standby")
    }

    /// The request socket and report pipe, taken out so that only one caller (a start or a discard) ever uses them.
    private func takeChannel() -> (request: Int32, report: Int32)? {
        channel.withLock { c in
            defer { c = nil }
            return c
        }
    }

    private func send(_ bytes: [UInt8], request: Int32, report: Int32, path: String) throws {
        let ok = bytes.withUnsafeBufferPointer { b in
            b.withMemoryRebound(to: CChar.self) { c in grid_standby_go(request, report, c.baseAddress, c.count) }
        }
        // Exec'd (holding its own copy) or failed: this process's copy of the namespace is no longer needed.
        let e = errno
        closeNamespace()
        guard ok == 0 else { throw SpawnError(errno: e, path: path) }
    }

    /// Gives the standby up: it exits having run nothing (or is killed), and its cgroup is removed. Blocks a few ms.
    func discard() {
        if let (request, report) = takeChannel() {
            close(request)
            close(report)
        }
        close(outputFD)
        closeNamespace()
        if let fd = takeFeed() { close(fd) }
        cgroup.remove()
        _ = process.waitForExit(seconds: 2)
        // A warm standby's folder, unless a job took it (it was renamed to the job's then).
        if let warmDirectory { try? FileManager.default.removeItem(atPath: warmDirectory) }
    }
}

extension Standby {
    /// How a cold-started job's cgroup is named: `cold-PID-JOB-ATTEMPT-…`, its worker's PID first, as a standby's.
    static let coldPrefix = "cold-"

    /// Removes the standby and cold-start cgroups (`standby-PID-…`, `cold-PID-…`) under `parents` whose worker PID is
    /// gone: a worker that exits leaves its unused standby's cgroup, usually empty (the standby died with it). What one
    /// still holds outlived its worker, and is killed first: a sandbox whose death signal bubblewrap had not armed yet
    /// when the worker died (a job, cold or from a standby, or a warm launcher). A live worker's cgroups are left alone.
    static func sweep(parents: [String]) {
        for parent in parents {
            for name in (try? FileManager.default.contentsOfDirectory(atPath: parent)) ?? [] {
                guard let prefix = ["standby-", coldPrefix].first(where: { name.hasPrefix($0) }),
                    let pid = pid_t(name.dropFirst(prefix.count).prefix { $0.isNumber }), pid > 0
                else { continue }
                if kill(pid, 0) == 0 || errno == EPERM { continue }
                let dir = parent + "/" + name
                // A v1 freezer cgroup left frozen (its worker died mid-kill) holds its processes from their SIGKILL.
                _ = JobCgroup.write("THAWED", to: dir + "/freezer.state")
                for _ in 0..<100 {
                    let left = (JobCgroup.read(dir + "/cgroup.procs") ?? "").split(whereSeparator: \.isNewline).compactMap { pid_t($0) }
                    if left.isEmpty { break }
                    for p in left where p > 0 { kill(p, SIGKILL) }
                    usleep(2_000)
                }
                rmdir(dir)
            }
        }
    }
}

/// Keeps standbys ready for the next jobs (up to `capacity`: a worker's slots, so that each running job's successor
/// can wait warm), and makes the next one, off the caller's path, when one is taken.
final class StandbySlot: Sendable {
    private struct State {
        /// Ready standbys, oldest first.
        var ready: [Standby] = []
        /// Standbys being made.
        var making = 0
        var closed = false
        /// Jobs started from a standby of this slot.
        var served = 0
        /// Of those, the jobs started in a warm standby's interpreter.
        var servedWarm = 0
    }
    private let state = Mutex(State())
    private let make: @Sendable () throws -> Standby
    /// How many standbys are kept ready or being made (1...64).
    let capacity: Int
    /// Standbys are made here, one at a time: a make blocks its thread for the cgroup join and the exec (tens of ms),
    /// and up to `capacity` of them must not hold the threads of the shared global queue.
    private let maker = DispatchQueue(label: "campusgrid.standby.make")

    init(capacity: Int = 1, make: @escaping @Sendable () throws -> Standby) {
        self.capacity = min(max(capacity, 1), 64)
        self.make = make
    }

    /// The oldest ready standby that `usable` says can serve now (the others stay ready, and nothing new is made
    /// if none can).
    func take(if usable: (Standby) -> Bool) -> Standby? {
        let taken = state.withLock { s -> Standby? in
            guard let i = s.ready.firstIndex(where: usable) else { return nil }
            return s.ready.remove(at: i)
        }
        if taken != nil { refill() }
        return taken
    }

    /// Makes standbys now up to the capacity (for a job that could not use those there are); ready ones whose
    /// process has ended (a warm launcher that died) are discarded first, so the slot is never stuck with them.
    func ensureMaking() {
        let dead = state.withLock { s -> [Standby] in
            let dead = s.ready.filter { !$0.process.isRunning }
            s.ready.removeAll { !$0.process.isRunning }
            return dead
        }
        for standby in dead { standby.discard() }
        refill()
    }

    /// The oldest ready standby, if there is one; a new one is made for the job after.
    func take() -> Standby? {
        let taken = state.withLock { s -> Standby? in s.ready.isEmpty ? nil : s.ready.removeFirst() }
        refill()
        return taken
    }

    /// Makes standbys, one after another on the slot's own queue, until the ready and the ones being made reach the
    /// capacity. A failure
    /// leaves its place empty until the next take or `ensureMaking` (jobs then start cold, and say why if a cold start
    /// fails too).
    func refill() {
        let count = state.withLock { s -> Int in
            guard !s.closed else { return 0 }
            let missing = max(0, capacity - s.ready.count - s.making)
            s.making += missing
            return missing
        }
        let make = self.make
        for _ in 0..<count {
            maker.async { [weak self] in
                // A make still queued when the slot closes is dropped, not made and then discarded: `close` waits only
                // for the one in progress (one after another, a queue of them outlasted its bound under load).
                guard let self, self.stillWanted() else { return }
                self.finishMaking(try? make())
            }
        }
    }

    /// Whether a queued make should run: no once the slot has closed (its place in `making` is given back).
    private func stillWanted() -> Bool {
        state.withLock { s in
            guard s.closed else { return true }
            s.making -= 1
            return false
        }
    }

    /// Keeps `made` ready, or discards it if the slot closed meanwhile; then counts its making as over. A discarded
    /// standby counts as being made until its cgroup and process are gone: `close` waits for that, and a caller that
    /// looks right after `close` finds nothing of it.
    private func finishMaking(_ made: Standby?) {
        let kept = state.withLock { s -> Bool in
            guard !s.closed else { return false }
            s.making -= 1
            if let made { s.ready.append(made) }
            return true
        }
        guard !kept else { return }
        made?.discard()
        state.withLock { $0.making -= 1 }
    }

    /// How many jobs started from a standby of this slot (`countServed`).
    var served: Int { state.withLock { $0.served } }

    /// Jobs started in a warm standby's interpreter (`countServed(warm: true)`).
    var servedWarm: Int { state.withLock { $0.servedWarm } }

    /// Counts a job that started from a standby this slot handed out.
    func countServed(warm: Bool = false) {
        state.withLock {
            $0.served += 1
            if warm { $0.servedWarm += 1 }
        }
    }

    /// The oldest ready standby's pid, if one is ready.
    var readyPid: pid_t? { state.withLock { $0.ready.first?.process.pid } }

    /// How many standbys are ready.
    var readyCount: Int { state.withLock { $0.ready.count } }

    /// Makes a standby now unless one is ready, waiting (at most 10 s) for one being made: so the next `take` finds
    /// one. Throws what making it threw.
    func prepare() throws {
        let deadline = JobExecution.monotonic() + 10
        while JobExecution.monotonic() < deadline {
            let mine = state.withLock { s -> Bool? in
                if !s.ready.isEmpty || s.closed { return nil }
                if s.making > 0 { return false }
                s.making += 1
                return true
            }
            switch mine {
            case nil: return
            case false?: usleep(1_000)
            case true?:
                let made: Standby
                do { made = try make() } catch {
                    state.withLock { $0.making -= 1 }
                    throw error
                }
                finishMaking(made)
                return
            }
        }
    }

    /// Waits (at most 60 s) until the oldest ready standby, if warm, has its launcher waiting for a job (tests: the
    /// next plain job then starts warm). Throws if it never did.
    func waitUntilWarm() throws {
        let deadline = JobExecution.monotonic() + 60
        while JobExecution.monotonic() < deadline {
            let folder = state.withLock { $0.ready.first?.warmDirectory }
            guard let folder else { return }
            if WarmStart.isReady(folder) { return }
            usleep(2_000)
        }
        throw SpawnError(errno: ETIMEDOUT, path: "a warm standby's launcher")
    }

    /// Discards the ready standbys, waits (at most 10 s) for those being made to be discarded too, and makes no more.
    func close() {
        let ready = state.withLock { s -> [Standby] in
            s.closed = true
            defer { s.ready = [] }
            return s.ready
        }
        for standby in ready { standby.discard() }
        let deadline = JobExecution.monotonic() + 10
        while state.withLock({ $0.making > 0 }) && JobExecution.monotonic() < deadline { usleep(1_000) }
    }

    deinit {
        for standby in state.withLock({ $0.ready }) { standby.discard() }
    }
}
