import CGridSpawn
import Foundation
public import GridCore
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Warm Python interpreters for function tasks (`CPU_TASK`). Each interpreter runs many tasks, each in a fresh
/// namespace (see `FunctionExecutor`), and serves one user only: a user's tasks never share a process with another
/// user's. A task that overruns its time limit, crashes its interpreter, or closes its pipe costs that interpreter: it
/// is killed with its process group and replaced. One is also replaced after `recycleAfter` tasks.
///
/// The interpreter starts under `Launch.wrapper` (empty for the restricted tier; a sandbox tier puts its own command
/// there, e.g. `bwrap … --`), with only `environment`, in a working folder of its own under `directory`: an interpreter
/// serves one user, and its folder is emptied whenever a fresh process starts in it (after a recycle, a crash, an
/// overrun, or before it serves another user), so no user's task ever sees files another user's task wrote.
public final class FunctionPool: FunctionRunner {
    /// How to start an interpreter: the sandbox tier's wrapper command, then `python -I -c <executor>`.
    public struct Launch: Sendable {
        public var python: String
        public var wrapper: [String]
        public var directory: String
        public var environment: [String: String]
        /// A cgroup of its own for each interpreter (the bwrap tier), with these limits; nil: none.
        public var cgroup: (root: String, limits: CgroupLayout.Limits)?
        /// Python that sets the interpreter's own rlimits before the executor runs (`RootlessLimits.interpreterPrelude`):
        /// where no cgroup holds it, its processes, memory, file sizes and open files. A task cannot raise them (no
        /// capabilities in the sandbox).
        public var prelude: String?
        /// Whether the interpreters' process limit holds: not for a root worker without cgroups whose sandboxes run as
        /// root outside (no `setpriv`, see `SandboxUser`), where RLIMIT_NPROC does not bind. Such a worker takes only
        /// its owner's tasks.
        public var holdsProcessLimit = true
        /// The wrapper for an interpreter whose working folder is the given one (a sandbox tier binds that folder as
        /// the task's `/job`); nil: `wrapper` as it is, and the folder becomes the interpreter's `HOME`.
        public var wrapperFor: (@Sendable (String) -> [String])?
        /// The same for an interpreter of a job-style Python environment (its `site` folder, mounted read-only at
        /// `EnvBuilder.mountPoint`); nil: the environment is used at its own path.
        public var wrapperForEnvironment: (@Sendable (String, String) -> [String])?
        /// What an interpreter's working folder may hold (tasks of one user after another write there, and files they
        /// hold open after deleting them count too): past it, or under the disk's floor, the interpreter is stopped,
        /// and the task it runs ends saying why. Measured about every 2 s (at most a tenth of a core); nil: not watched.
        public var disk: DiskLimits?
        public init(python: String, wrapper: [String] = [], directory: String, environment: [String: String]? = nil) {
            self.python = python
            self.wrapper = wrapper
            self.directory = directory
            self.environment = environment ?? Self.environment(home: directory)
        }

        /// What an interpreter sees of the environment: nothing of the worker's.
        public static func environment(home: String) -> [String: String] {
            [
                "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": home, "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1",
                "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
            ]
        }

        /// How to start interpreters under `runner`'s tier: inside bubblewrap, each in a cgroup of its own holding it
        /// to `memoryBytes` and the tier's process limit, for the bwrap tier; as plain children (the restricted tier)
        /// otherwise. Returns the launch and the tier the interpreters really get.
        public static func under(_ runner: any JobRunner, python: String, directory: String, memoryBytes: UInt64? = nil) -> (Launch, SandboxTier) {
            if let bwrap = runner as? BwrapRunner {
                let env = environment(home: BwrapRunner.jobDirectory)
                var launch = Launch(python: python, wrapper: bwrap.interpreterPrefix(directory: directory, environment: env), directory: directory)
                launch.wrapperFor = { folder in bwrap.interpreterPrefix(directory: folder, environment: env) }
                launch.wrapperForEnvironment = { folder, site in
                    bwrap.interpreterPrefix(directory: folder, environment: env, pythonEnvironment: site)
                }
                // Interpreters get a cgroup of their own only where the worker has root's cgroups (not rootless).
                if bwrap.configuration.limitSource == .cgroups {
                    launch.cgroup = (
                        bwrap.configuration.cgroupRoot,
                        CgroupLayout.Limits(memoryBytes: memoryBytes, pids: bwrap.configuration.limits.maxProcesses, cpus: nil)
                    )
                }
                // Without one (rootless), the interpreter holds itself to the tier's limits, set inside its user
                // namespace before any task runs; with one, file sizes and open files still.
                launch.holdsProcessLimit = bwrap.configuration.limitSource == .cgroups || !bwrap.isRoot || bwrap.switchesUser
                launch.prelude = RootlessLimits.interpreterPrelude(
                    limits: bwrap.configuration.limits, processes: bwrap.configuration.limitSource == .cgroups ? nil : bwrap.configuration.limits.maxProcesses,
                    addressSpace: bwrap.configuration.limitSource == .cgroups ? nil : memoryBytes.map { $0 + (1 << 30) })
                return (launch, .bwrap)
            }
            return (Launch(python: python, directory: directory), .restricted)
        }
    }

    /// A task for an interpreter: the `CPU_TASK` fields the executor reads.
    public struct Request: Sendable, Encodable {
        public var program: String
        public var function: String
        public var args: JSONValue?
        public var argsLiteral: String?
        public var timeout: Double
        public init(program: String, function: String, args: JSONValue?, argsLiteral: String?, timeout: Double) {
            self.program = program
            self.function = function
            self.args = args
            self.argsLiteral = argsLiteral
            self.timeout = timeout
        }
        enum CodingKeys: String, CodingKey {
            case program, function, args, timeout
            case argsLiteral = "args_literal"
        }
    }

    /// What the interpreter answered.
    public typealias Answer = FunctionOutcome

    private let launch: Launch
    private let slots: Int
    private let capacity: Int
    private let recycleAfter: Int
    private let state: Mutex<PoolState>

    /// `slots` tasks run at once; up to `interpreters` interpreters are kept (default: twice the slots, at least
    /// slots + 2), each bound to the user it serves, so users taking turns do not start a fresh one per task.
    /// An interpreter is replaced after `recycleAfter` tasks.
    public init(launch: Launch, size slots: Int, interpreters: Int? = nil, recycleAfter: Int = 2_000) {
        signal(SIGPIPE, SIG_IGN)  // a pipe to an interpreter that died fails the write; it must not end the worker
        self.launch = launch
        self.slots = max(1, slots)
        self.capacity = max(self.slots, interpreters ?? max(self.slots * 2, self.slots + 2))
        self.recycleAfter = recycleAfter
        self.state = Mutex(PoolState())
        watch(disk: launch.disk)
    }

    /// Removes the interpreters' folders (`interpreter-…`, and those moved aside for removal, `….removed-…`) a worker
    /// that was killed left in `directory`: nothing else would ever delete them. Only for a caller that holds the data
    /// folder (`DataFolderLock`), before any pool there starts an interpreter; anything else in `directory` stays.
    /// Returns the names removed.
    @discardableResult
    public static func sweep(directory: String) -> [String] {
        var removed: [String] = []
        for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] where name.hasPrefix(folderPrefix) {
            let folder = URL(fileURLWithPath: directory).appendingPathComponent(name)
            DiskRule.remove(folder)
            if !FileManager.default.fileExists(atPath: folder.path) { removed.append(name) }
        }
        return removed
    }

    /// What an interpreter's folder is named after: `interpreter-ID`.
    static let folderPrefix = "interpreter-"

    /// Looks at every running interpreter until the pool shuts down: its folder (with `disk` limits) and whether it
    /// uses CPU while idle (`checkIdle`). A thread of its own, which ends with the pool: documented exception to "every
    /// task owned", as `JobExecution.watchDisk`.
    private func watch(disk: DiskLimits?) {
        Thread.detachNewThread { [weak self] in
            while true {
                guard let pool = self, !pool.state.withLock({ $0.stopped }) else { return }
                // The next look waits in proportion to the folders' walks alone (the processes' scan is bounded, and
                // one user's interpreter that slowed it put off every interpreter's look).
                var walked = 0.0
                for i in pool.state.withLock({ $0.all }) {
                    if let disk { walked += i.checkDisk(disk) }
                    i.checkIdle()
                }
                let until = JobExecution.monotonic() + DiskRule.interval(walkSeconds: walked)
                while JobExecution.monotonic() < until {
                    guard let pool = self, !pool.state.withLock({ $0.stopped }) else { return }
                    usleep(250_000)
                }
            }
        }
    }

    /// The CPU seconds an idle interpreter may use between two looks of the watch (at least 2 s apart).
    static let idleCPUAllowance = 0.25

    /// Whether an idle interpreter whose processes' CPU seconds went from `before` to `now` between two looks used
    /// more than it may (pure; a reading that went back, or is not a number, shows nothing).
    static func idleUse(before: Double, now: Double) -> Bool {
        guard before.isFinite, now.isFinite else { return false }
        return now - before > idleCPUAllowance
    }

    /// Starts one spare interpreter per slot now, so the first tasks do not pay for the start.
    public func warm() {
        let spares = state.withLock { s -> [Interpreter] in
            let fresh = (0..<max(0, slots - s.all.count)).map { _ in Interpreter() }
            s.idle += fresh
            s.all += fresh
            return fresh
        }
        for i in spares { _ = try? i.ensureStarted(launch) }
    }

    /// Runs one task of `user` on a free interpreter of theirs (waiting for one); never throws for the task's own
    /// failures.
    ///
    /// With `environment` (`key`, `site` folder), the task runs in an interpreter of that environment: interpreters are
    /// keyed by user *and* environment, so none serving another user or another environment ever runs it.
    ///
    /// At most `slots` tasks run at once; the others wait here, in the order they came, and start as interpreters
    /// free up. The thread that read a task's answer writes the next waiting task to the same interpreter at once when
    /// it may serve it (same user and environment), so a busy user's interpreter never waits for a round trip through
    /// the caller between two tasks (see `lookahead`).
    ///
    /// With `via` (the peer that forwarded the task), the interpreters are keyed by that peer too: a peer holding the
    /// user's forwarding ticket reaches none that serve the user's own tasks.
    public func run(_ request: Request, user: String, via: String? = nil, environment: (key: String, site: String)? = nil) async -> Answer {
        let line: Data
        do {
            line = try Self.encoder.encode(request) + Data([0x0A])
        } catch {
            return Answer(ok: false, result: nil, error: "bad_args", message: "the arguments could not be encoded: \(error)")
        }
        let person = TaskShare.key(user: user, via: via)
        let owner = environment.map { person + "\u{1F}env:" + $0.key } ?? person
        return await withCheckedContinuation { continuation in
            let job = Job(line: line, timeout: request.timeout, owner: owner, site: environment?.site, continuation: continuation)
            let (starts, spares, refused) = state.withLock { s -> ([Start], [Interpreter], Job?) in
                guard !s.stopped else { return ([], [], job) }
                s.waiting.append(job)
                let (starts, spares) = s.assign(slots: slots, capacity: capacity)
                return (starts, spares, nil)
            }
            if let refused { refused.continuation.resume(returning: Self.stoppedAnswer) }
            begin(starts, spares: spares, sendHere: true)
        }
    }

    /// How many tasks beyond `slots` a caller may hand over at once: they wait here and start the moment a slot frees,
    /// without the caller's round trip in between, and a user's next ones are written to their interpreter together.
    /// Adapted to how long tasks take (`lookahead(slots:averageSeconds:)`): none while they are long.
    public var lookahead: Int { Self.lookahead(slots: slots, averageSeconds: state.withLock { $0.averageSeconds }) }

    /// Tasks handed over beyond the slots can no longer be passed by a task of higher priority, which then waits for
    /// them: so only as many as run in `lookaheadBudget` seconds (at most `maxBatch` per slot), and none once tasks
    /// take that long. Pure.
    static func lookahead(slots: Int, averageSeconds: Double) -> Int {
        guard averageSeconds.isFinite, averageSeconds > 0 else { return 0 }
        let perSlot = min(Double(maxBatch), (lookaheadBudget / averageSeconds).rounded(.down))
        guard perSlot >= 1 else { return 0 }
        // Never traps, whatever the slots: a product past `Int.max / 2` stops there (a sum with the slots still fits).
        let (n, overflow) = max(0, slots).multipliedReportingOverflow(by: Int(perSlot))
        return overflow ? Int.max / 2 : min(n, Int.max / 2)
    }

    /// See `lookahead(slots:averageSeconds:)`.
    static let lookaheadBudget = 0.002
    /// The most tasks written to one interpreter together.
    static let maxBatch = 8

    /// Stops every interpreter; tasks still waiting for one end as crashed, and later ones are refused.
    public func shutdown() {
        let (all, waiting) = state.withLock { s -> ([Interpreter], [Job]) in
            s.stopped = true
            defer {
                s.all = []
                s.waiting = []
            }
            return (s.all, s.waiting)
        }
        for job in waiting { job.continuation.resume(returning: Self.stoppedAnswer) }
        for i in all { i.stop() }
    }

    static let stoppedAnswer = Answer(ok: false, error: "crashed", message: "the worker stopped before the task started")

    /// PIDs of the running interpreters (for tests and status pages).
    public var pids: [Int32] { state.withLock { $0.all }.compactMap(\.pid) }

    /// Which user each running interpreter serves (nil: a spare), by PID.
    public var owners: [Int32: String?] {
        state.withLock { s in s.all.compactMap { i in i.pid.map { ($0, i.owner) } } }.reduce(into: [:]) { $0[$1.0] = $1.1 }
    }

    /// One encoder and decoder for every task (never reconfigured, so sharing them is safe).
    private static let encoder = JSONEncoder()
    private static let decoder = JSONDecoder()

    static func seconds(_ t: Double) -> String { t == t.rounded() ? String(Int(t)) : String(t) }

    // MARK: - Running tasks

    /// Starts each assigned task on a thread of its own (the exchange blocks on the interpreter's pipe), and the new
    /// spares in the background. `sendHere`: a task whose interpreter is warm is written from this thread first, so
    /// the interpreter runs it while the reading thread wakes.
    private func begin(_ starts: [Start], spares: [Interpreter], sendHere: Bool = false) {
        for start in starts {
            let sent = sendHere && start.interpreter.sendIfWarm([start.job.line], recycleAfter: recycleAfter)
            start.interpreter.queue.async { [self] in drive(start, sent: sent) }
        }
        for spare in spares {
            spare.queue.async { [launch] in _ = try? spare.ensureStarted(launch) }
        }
    }

    /// Runs `start`'s task, hands over its answer, and then, while the next waiting task goes to the same interpreter,
    /// runs that one too on this thread: no hop between an answer and the next task's line. The user's tasks right
    /// behind it in the waiting line (up to `maxBatch`) are written with it, so the interpreter runs them back to back
    /// and neither side sleeps between them; their answers are read in order, each within its own time limit counted
    /// from the answer before it (when it started). A task that overruns or kills the interpreter ends as its own
    /// answer says; those written behind it never started, and go back to the head of the line.
    private func drive(_ start: Start, sent: Bool) {
        let interpreter = start.interpreter
        var next = [start.job]
        var written = sent
        while !next.isEmpty {
            var unstarted: [Job] = []
            if written {
                for (k, job) in next.enumerated() {
                    let began = DispatchTime.now().uptimeNanoseconds
                    let outcome = interpreter.answer(timeout: job.timeout)
                    if case .answer = outcome {} else { unstarted = Array(next.dropFirst(k + 1)) }
                    let reply = answer(to: job, outcome, on: interpreter) ?? Answer(ok: false, error: "crashed", message: "the interpreter failed")
                    finished(job, reply, began: began)
                    if !unstarted.isEmpty { break }
                }
            } else {
                let began = DispatchTime.now().uptimeNanoseconds
                finished(next[0], serve(next[0], on: interpreter, sent: false), began: began)
            }
            let (batch, others, spares, refused) = state.withLock { s -> ([Job], [Start], [Interpreter], [Job]) in
                s.executing -= 1
                // Shut down meanwhile: nothing more runs, and the tasks that never started end.
                if s.stopped { return ([], [], [], unstarted) }
                s.waiting.insert(contentsOf: unstarted, at: 0)
                s.tick += 1
                interpreter.lastUsed = s.tick
                // First among the idle: the next task of its user takes it (warm, and on this thread).
                s.idle.insert(interpreter, at: 0)
                var (starts, spares) = s.assign(slots: slots, capacity: capacity)
                guard let k = starts.firstIndex(where: { $0.interpreter === interpreter }) else { return ([], starts, spares, []) }
                var batch = [starts.remove(at: k).job]
                // Its user's tasks right behind it join it (never one of another user's, or of another environment).
                while batch.count < Self.maxBatch, let j = s.waiting.first, j.owner == batch[0].owner, j.site == batch[0].site {
                    batch.append(s.waiting.removeFirst())
                }
                return (batch, starts, spares, [])
            }
            for job in refused { job.continuation.resume(returning: Self.stoppedAnswer) }
            begin(others, spares: spares)
            next = batch
            written = false
            if batch.count > 1 {
                written = interpreter.sendIfWarm(batch.map(\.line), recycleAfter: recycleAfter)
                if !written {
                    // Not warm (due for recycling, say): the first goes the long way, the others back to the line.
                    next = [batch[0]]
                    let back = Array(batch.dropFirst())
                    let (starts, spares, refused) = state.withLock { s -> ([Start], [Interpreter], [Job]) in
                        if s.stopped { return ([], [], back) }
                        s.waiting.insert(contentsOf: back, at: 0)
                        let (starts, spares) = s.assign(slots: slots, capacity: capacity)
                        return (starts, spares, [])
                    }
                    for job in refused { job.continuation.resume(returning: Self.stoppedAnswer) }
                    begin(starts, spares: spares)
                }
            }
        }
    }

    /// Hands `job` its answer and counts how long it ran (since `began`, nanoseconds) in the average that sets the
    /// lookahead.
    private func finished(_ job: Job, _ answer: Answer, began: UInt64) {
        noteTaskSeconds(Double(DispatchTime.now().uptimeNanoseconds &- began) / 1e9)
        job.continuation.resume(returning: answer)
    }

    /// Counts a task that took `seconds` in the moving average.
    func noteTaskSeconds(_ seconds: Double) {
        state.withLock { s in s.averageSeconds = s.averageSeconds * 0.8 + min(max(0, seconds), 3600) * 0.2 }
    }

    /// One task on `interpreter` (blocking): restarts it first when it is due for recycling or its environment
    /// changed, and once more when it died idle. `sent`: the task was written already (`sendIfWarm`); its answer is read.
    private func serve(_ job: Job, on interpreter: Interpreter, sent: Bool) -> Answer {
        if sent { return answer(to: job, interpreter.answer(timeout: job.timeout), on: interpreter) ?? Answer(ok: false, error: "crashed", message: "the interpreter failed") }
        if interpreter.served >= recycleAfter { interpreter.stop() }
        interpreter.restartIfEnvironmentChanged()
        // An interpreter that died while idle never saw the task: start a fresh one and try once more.
        for attempt in 0..<2 {
            // Nothing starts once the pool is shut down (a task that was running when it was).
            if state.withLock({ $0.stopped }) { return Self.stoppedAnswer }
            do {
                try interpreter.ensureStarted(launch)
            } catch {
                return Answer(ok: false, error: "crashed", message: "no interpreter could be started: \(error)")
            }
            let outcome = interpreter.exchange(job.line, timeout: job.timeout)
            if let answer = answer(to: job, outcome, on: interpreter) { return answer }
            if attempt == 1, case .notDelivered(let why) = outcome {
                return Answer(ok: false, error: "crashed", message: "the interpreter failed: \(why)")
            }
        }
        return Answer(ok: false, error: "crashed", message: "the interpreter failed")
    }

    /// The task's answer from how its exchange ended (the interpreter stopped where it failed); nil: it never reached
    /// the interpreter, and may be tried once more.
    private func answer(to job: Job, _ outcome: Interpreter.Outcome, on interpreter: Interpreter) -> Answer? {
        switch outcome {
        case .answer(let reply):
            return (try? Self.decoder.decode(Answer.self, from: reply))
                ?? Answer(ok: false, error: "crashed", message: "the interpreter gave an unreadable answer")
        case .notDelivered:
            interpreter.stop()
            return nil
        case .timedOut:
            interpreter.stop()
            return Answer(ok: false, error: "timeout", message: "the task ran longer than \(Self.seconds(job.timeout)) s and was stopped")
        case .died(let why):
            interpreter.stop()
            return Answer(ok: false, error: "crashed", message: "the task's process \(why)")
        }
    }
}

/// A task waiting for an interpreter: its request line, time limit, whose it is, and who waits for its answer.
private struct Job {
    let line: Data
    let timeout: Double
    /// The user, and the environment's key for a task with packages.
    let owner: String
    let site: String?
    let continuation: CheckedContinuation<FunctionPool.Answer, Never>
}

/// A task and the interpreter it runs on.
private struct Start {
    let interpreter: Interpreter
    let job: Job
}

/// The pool's bookkeeping, behind its mutex.
private struct PoolState {
    var all: [Interpreter] = []
    var idle: [Interpreter] = []
    var tick: UInt64 = 0
    /// Tasks waiting for an interpreter, in the order they came.
    var waiting: [Job] = []
    /// Interpreters running tasks now (at most the pool's slots).
    var executing = 0
    var stopped = false
    /// How long tasks took lately (seconds, a moving average); long until measured, so nothing is handed over early.
    var averageSeconds = 1.0

    /// Gives waiting tasks interpreters, in order, while fewer than `slots` run; returns them with the spares to
    /// start (one when the last was taken and there is room).
    mutating func assign(slots: Int, capacity: Int) -> ([Start], [Interpreter]) {
        var starts: [Start] = []
        var spares: [Interpreter] = []
        while executing < slots, let job = waiting.first, let i = pick(for: job.owner, site: job.site, capacity: capacity) {
            waiting.removeFirst()
            executing += 1
            starts.append(Start(interpreter: i, job: job))
            if let spare = spareIfNeeded(capacity: capacity) { spares.append(spare) }
        }
        return (starts, spares)
    }

    /// `user` is the interpreter's owner key (the user, and the environment's key for a task with packages); `site`
    /// the environment an interpreter must have: a spare or another owner's interpreter is restarted with it.
    mutating func pick(for user: String, site: String?, capacity: Int) -> Interpreter? {
        if let k = idle.firstIndex(where: { $0.owner == user }) { return idle.remove(at: k) }
        if let k = idle.firstIndex(where: { $0.owner == nil }) {
            let i = idle.remove(at: k)
            i.owner = user
            if i.site != site {
                i.site = site
                i.needsReset = true
            }
            return i
        }
        if all.count < capacity {
            let i = Interpreter()
            i.owner = user
            i.site = site
            all.append(i)
            return i
        }
        guard let k = idle.indices.min(by: { idle[$0].lastUsed < idle[$1].lastUsed }) else { return nil }
        let i = idle.remove(at: k)
        i.owner = user
        i.site = site
        i.needsReset = true
        return i
    }

    /// A new spare when none is left and there is room for one; the caller starts it.
    mutating func spareIfNeeded(capacity: Int) -> Interpreter? {
        guard all.count < capacity, !idle.contains(where: { $0.owner == nil }) else { return nil }
        let i = Interpreter()
        all.append(i)
        idle.append(i)
        return i
    }
}

extension FunctionPool {
    /// The inode of `path`, by one `stat` (checked before every task of an environment); nil when it is not there.
    /// `FileManager.attributesOfItem` also looks up the owner's and group's names: a tenth of a millisecond that a
    /// function task's round trip felt.
    static func inode(_ path: String) -> UInt64? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return UInt64(info.st_ino)
    }
}

/// The pipes of one interpreter process and what has been read from them. An exchange takes a reference under the
/// interpreter's lock and then works on it alone; `stop()` only drops the interpreter's reference (after killing the
/// process, which ends any read in progress), so the descriptors close when the last holder lets go and a descriptor
/// number is never reused under an exchange still reading it.
private final class Pipes: @unchecked Sendable {
    // Safe: one exchange at a time uses it (the pool hands an interpreter to one task); made and dropped under the
    // interpreter's lock; the descriptors are closed only in deinit.
    let input: Int32
    let output: Int32
    var buffer: [UInt8] = []
    /// How much of `buffer` holds no newline (searched already).
    var searched = 0
    var chunk = [UInt8](repeating: 0, count: 65536)
    var ready = false

    init(input: Int32, output: Int32) {
        self.input = input
        self.output = output
    }

    deinit {
        close(input)
        close(output)
    }
}

/// One warm interpreter. Runs one task at a time (the pool hands it to one task); `owner`, `lastUsed` and
/// `needsReset` change only under the pool's mutex; `lock` guards the process, its pipes and `served` against
/// `stop()` from `shutdown()`, which may come from another thread while a task runs.
private final class Interpreter: @unchecked Sendable {
    // Safe: see above.
    var owner: String?
    /// The Python environment (`site` folder) this interpreter runs with; nil: the worker's Python only.
    var site: String?
    var lastUsed: UInt64 = 0
    var needsReset = false
    /// Names this interpreter's working folder under the launch directory.
    private let folderName = UUID().uuidString.prefix(12).lowercased()
    /// Where its exchanges run (they block on its pipe): a serial queue of its own, which always gets a thread. On
    /// Linux the global queue runs as many blocks as there are cores and then adds a thread about once a second
    /// while they block (measured: the 3rd, 4th, 5th of six blocked blocks started after 1, 2, 3 s on 2 cores), so
    /// two long tasks there held back every other interpreter's task by seconds.
    let queue = DispatchQueue(label: "campusgrid.interpreter")
    private var servedCount = 0
    private let lock = NSLock()
    private var process: Child?
    private var pipes: Pipes?
    private var cgroup: JobCgroup?
    /// The running process's working folder.
    private var folder: String?
    /// Why the disk watch stopped the running process (its task says so).
    private var diskStop: String?
    /// Measures of its folder in a row that could not be completed (`DiskRule.incompleteLimit` stop it).
    private var incompleteMeasures = 0
    /// The disk's free bytes when the running process started.
    private var freeAtStart: Int64?

    var served: Int { lock.withLock { servedCount } }

    enum Outcome {
        case answer(Data)
        /// The task never reached the interpreter (it was gone, or did not start).
        case notDelivered(String)
        case timedOut
        /// The interpreter ended while running the task; why, in words.
        case died(String)
    }

    var pid: Int32? {
        lock.lock()
        defer { lock.unlock() }
        return process?.isRunning == true ? process?.pid : nil
    }

    func ensureStarted(_ launch: FunctionPool.Launch) throws {
        lock.lock()
        defer { lock.unlock() }
        if needsReset {
            needsReset = false
            stopLocked()
        }
        if let p = process, p.isRunning { return }
        stopLocked()
        // A fresh process starts in an empty folder of its own: nothing an earlier task (maybe another user's) left.
        let folder = (launch.directory as NSString).appendingPathComponent(FunctionPool.folderPrefix + folderName)
        DiskRule.remove(URL(fileURLWithPath: folder))
        // A new folder, made here: never one a process of the last sandbox may still be writing in (it is handed to
        // the sandbox's user next, `SandboxUser.handOver`).
        try FileManager.default.createDirectory(atPath: launch.directory, withIntermediateDirectories: true)
        guard mkdir(folder, 0o755) == 0 else { throw SpawnError(errno: errno, path: folder) }
        self.folder = folder
        diskStop = nil
        incompleteMeasures = 0
        freeAtStart = DiskRule.freeBytes(folder)
        var environment = launch.environment
        if launch.wrapperFor == nil { environment["HOME"] = folder }
        var wrapper = launch.wrapperFor?(folder) ?? launch.wrapper
        var script = (launch.prelude ?? "") + FunctionExecutor.script
        if let site {
            // `-I` ignores PYTHONPATH: the environment goes first on sys.path from the executor itself.
            var path = site
            if let withEnvironment = launch.wrapperForEnvironment {
                wrapper = withEnvironment(folder, site)
                path = EnvBuilder.mountPoint
            }
            let encoder = JSONEncoder()
            encoder.outputFormatting = .withoutEscapingSlashes
            let literal = String(decoding: (try? encoder.encode([path])) ?? Data("[]".utf8), as: UTF8.self)
            script = "import sys; sys.path[0:0] = \(literal)\n" + script
        }
        var argv = wrapper + [launch.python, "-I", "-c", script]
        if let (root, limits) = launch.cgroup {
            // The shell joins the cgroup, then becomes the sandbox: everything the interpreter starts is inside.
            let group = try JobCgroup(root: root, name: "task-interpreter-\(getpid())-\(UUID().uuidString.prefix(8))", limits: limits)
            cgroup = group
            let files = group.layout.procsFiles.map { "'\($0)'" }.joined(separator: " ")
            argv = ["/bin/sh", "-c", "for f in \(files); do echo $$ > \"$f\" || exit 97; done; exec \"$@\"", "sh"] + argv
        }
        // A root worker's sandbox (`SandboxUser`): a user namespace of its own, the folder its user's.
        var userns: Int32 = -1
        defer { if userns >= 0 { close(userns) } }
        do {
            if argv.contains(BwrapRunner.userNamespacePlaceholder) {
                try SandboxUser.handOver(folder)
                userns = try SandboxUser.namespace()
                argv = argv.map { $0 == BwrapRunner.userNamespacePlaceholder ? String(userns) : $0 }
            }
            let (child, input, output) = try Child.start(argv, environment: environment, directory: folder, inherit: userns)
            siteInode = site.flatMap(FunctionPool.inode)
            process = child
            pipes = Pipes(input: input, output: output)
        } catch {
            cgroup?.remove()
            cgroup = nil
            throw error
        }
        servedCount = 0
    }

    /// Sends one request line and waits for its answer line (blocking: the pool calls it on a thread of its own).
    func exchange(_ line: Data, timeout: Double) -> Outcome {
        guard let pipes = lock.withLock({ self.pipes }) else { return .notDelivered("the interpreter is not running") }
        if !pipes.ready {
            switch readLine(pipes, deadline: Date().addingTimeInterval(60)) {
            case .line(let l) where l == Array("ready".utf8):
                pipes.ready = true
                // What runs while it waits (a sandbox's own processes): more than this after a task is a process the
                // task left behind.
                lock.withLock { if let p = process { baseline = Int(grid_count_descendants(p.pid, 64)) } }
            case .line: return .notDelivered("the interpreter started with an unexpected line")
            case .timedOut: return .notDelivered("the interpreter did not start within 60 s")
            case .closed, .tooLong: return .notDelivered("the interpreter ended as it started")
            }
        }
        // Busy from before the write: the idle watch must not take this task's work for a leftover's.
        lock.withLock {
            idleMark = nil
            unanswered += 1
        }
        guard Self.writeAll(line, to: pipes.input) else {
            lock.withLock { unanswered = max(0, unanswered - 1) }
            return .notDelivered("the interpreter was gone")
        }
        lock.withLock { servedCount += 1 }
        return answer(timeout: timeout)
    }

    /// Writes `lines` (tasks, one a line) now, in one write, if this interpreter is ready for them as it is: running,
    /// past its `ready` line, not due for a reset or for recycling within them (`recycleAfter` tasks), and with its
    /// Python environment, if it has one, still the folder it started with (one `stat`, as
    /// `restartIfEnvironmentChanged` checks). True: the tasks are on their way, and `answer(timeout:)` reads their
    /// answers in order; false: nothing was written.
    func sendIfWarm(_ lines: [Data], recycleAfter: Int) -> Bool {
        let warm = lock.withLock { () -> Pipes? in
            guard !needsReset, servedCount + lines.count <= recycleAfter, let p = self.pipes, p.ready, process?.isRunning == true,
                site.map({ FunctionPool.inode($0) == siteInode && siteInode != nil }) ?? true
            else { return nil }
            servedCount += lines.count
            unanswered += lines.count
            idleMark = nil
            return p
        }
        // A write that fails finds the interpreter gone: the thread that reads the answer sees its pipe closed.
        guard let warm else { return false }
        _ = Self.writeAll(lines.count == 1 ? lines[0] : lines.reduce(into: Data()) { $0.append($1) }, to: warm.input)
        return true
    }

    /// The answer to the task last written, within `timeout` seconds.
    func answer(timeout: Double) -> Outcome {
        guard let pipes = lock.withLock({ self.pipes }) else { return .died("was stopped") }
        switch readLine(pipes, deadline: Date().addingTimeInterval(timeout)) {
        case .line(let l):
            // A task that answered but left a process running (forked, double-forked out of its process group) had
            // it run for ever, outside its time limit: the interpreter goes, and every process of its sandbox with it.
            // Looked at once no task written to it is still unanswered (one running behind it may have a child now).
            lock.withLock {
                unanswered = max(0, unanswered - 1)
                if unanswered == 0, let p = process, let baseline, Int(grid_count_descendants(p.pid, Int32(baseline + 1))) > baseline {
                    stopLocked()
                } else if unanswered == 0 {
                    // Idle from here: the watch measures its CPU time from its next look (`checkIdle`).
                    idleSpell &+= 1
                    idleMark = (cpu: nil, spell: idleSpell)
                }
            }
            return .answer(Data(l))
        case .timedOut: return .timedOut
        case .closed: return .died(exitDescription())
        case .tooLong:
            // Written by the task itself (the answer pipe is in its process): the interpreter goes, and what it held.
            lock.withLock { stopLocked() }
            return .answer(Self.tooLongAnswer)
        }
    }

    /// The longest answer line read: a result of the executor's limit (1 MiB), its captured output (64 Ki characters,
    /// JSON-escaped) and its traceback fit well within it. A task that writes more to the answer pipe without a line
    /// end (it is the task's own descriptor) had the worker hold all of it, and search it whole again each read.
    static let maxAnswerBytes = 4 << 20

    static let tooLongAnswer = Data(
        #"{"ok":false,"error":"result_too_large","message":"the task wrote an answer line of more than 4 MiB to the executor's pipe"}"#.utf8)

    private static func writeAll(_ line: Data, to fd: Int32) -> Bool {
        line.withUnsafeBytes { raw -> Bool in
            var offset = 0
            while offset < raw.count {
                let n = write(fd, raw.baseAddress! + offset, raw.count - offset)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return false }
                offset += n
            }
            return true
        }
    }

    private enum Read {
        case line([UInt8]), timedOut, closed
        /// Over `maxAnswerBytes` with no line end.
        case tooLong
    }

    private func readLine(_ pipes: Pipes, deadline: Date) -> Read {
        let fd = pipes.output
        while true {
            // Searched from where the last search stopped: a line arriving 64 KiB at a time is searched once.
            if let nl = pipes.buffer[min(pipes.searched, pipes.buffer.count)...].firstIndex(of: 0x0A) {
                let line = Array(pipes.buffer[..<nl])
                pipes.buffer.removeSubrange(...nl)
                pipes.searched = 0
                return .line(line)
            }
            pipes.searched = pipes.buffer.count
            if pipes.buffer.count > Self.maxAnswerBytes {
                pipes.buffer = []
                pipes.searched = 0
                return .tooLong
            }
            let left = deadline.timeIntervalSinceNow
            if left <= 0 { return .timedOut }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&pfd, 1, Int32(min(left, 1) * 1000) + 1)
            if ready < 0 && errno != EINTR { return .closed }
            if ready <= 0 { continue }
            let n = read(fd, &pipes.chunk, pipes.chunk.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return .closed }
            pipes.buffer.append(contentsOf: pipes.chunk[0..<n])
        }
    }

    /// Measures the running process's folder (and the deleted files its processes hold open: those of its cgroup, or
    /// the interpreter itself without one); past `limits`, or under the disk's floor, stops it, and the task it runs
    /// ends with the verdict. The folder is cleared before the next process starts in it (`ensureStarted`).
    /// Returns how long the folder's walk took (seconds).
    @discardableResult
    func checkDisk(_ limits: DiskLimits) -> Double {
        guard let (folder, pid, group, freeAtStart) = lock.withLock({ () -> (String, Int32, JobCgroup?, Int64?)? in
            guard let folder, let p = process, p.isRunning else { return nil }
            return (folder, p.pid, cgroup, self.freeAtStart)
        }) else { return 0 }
        let began = JobExecution.monotonic()
        var measure = DiskRule.measure(folder, limits: limits)
        let walked = JobExecution.monotonic() - began
        // Its cgroup's processes, or (a rootless sandbox, the restricted tier) every descendant of the interpreter's
        // process: inside bubblewrap, the Python is a grandchild in another PID namespace.
        if let open = DiskRule.openDeletedBytes(of: group?.pids() ?? ProcessTree.descendants(of: pid), onDiskOf: folder) {
            measure.openDeleted = open
        } else {
            measure.incomplete = true
        }
        // The disk's floor counts only once the free space fell by more than the folder may hold since the process
        // started (a disk the contributor's own files fill would stop every interpreter as it starts; one that the
        // tasks fill with what no look finds, a deleted file mapped a page at a time, is caught so).
        var limits = limits
        if !DiskRule.floorCounts(freeAtStart: freeAtStart, freeNow: measure.free, maxBytes: limits.maxBytes) { limits.floorBytes = 0 }
        let trash = lock.withLock { () -> String? in
            // Still the process measured (it may have been replaced meanwhile).
            guard process?.pid == pid, process?.isRunning == true else { return nil }
            incompleteMeasures = measure.incomplete ? incompleteMeasures + 1 : 0
            guard let verdict = DiskRule.verdict(measure, limits: limits, incompleteInARow: incompleteMeasures) else { return nil }
            diskStop = verdict
            stopLocked()
            // What the tasks wrote goes now, not when the next task starts one here: moved aside under the lock (the
            // next process starts in an empty folder), deleted after it (a large tree takes a while).
            let trash = folder + ".removed-" + UUID().uuidString.prefix(8)
            return rename(folder, trash) == 0 ? trash : nil
        }
        if let trash { DiskRule.remove(URL(fileURLWithPath: trash)) }
        return walked
    }

    /// How the interpreter ended, for a task that was running in it (waits up to a second for its exit).
    private func exitDescription() -> String {
        let (p, group, disk) = lock.withLock { (process, cgroup, diskStop) }
        if let disk { return "was stopped: \(disk)" }
        guard let p else { return "was stopped" }
        let status = p.waitForExit(seconds: 1)
        if let group {
            let usage = group.usage()
            if usage.oomKills > 0 {
                let limit = group.limits.memoryBytes.map { " (\($0 >> 20) MiB per interpreter)" } ?? ""
                return "ran out of memory\(limit) and was killed"
            }
            if usage.pidsLimitHits > 0 { return "hit the limit of \(group.limits.pids) processes and threads and was killed" }
        }
        guard let status else { return "closed its answer pipe without answering" }
        let signal = status & 0x7f
        return signal != 0 ? "was killed by signal \(signal)" : "exited with status \((status >> 8) & 0xff) without an answer"
    }

    /// The inode of the environment folder the running process was started with.
    private var siteInode: UInt64?
    /// How many processes descended from the running process once it was ready (its sandbox's own).
    private var baseline: Int?
    /// Tasks written to the running process and not answered yet.
    private var unanswered = 0
    /// While nothing is unanswered: which idle spell this is, and the CPU seconds its processes had used at the watch's
    /// first look in it (nil until then). An idle interpreter uses none.
    private var idleMark: (cpu: Double?, spell: Int)?
    private var idleSpell = 0

    /// Stops the interpreter if it used CPU while idle: a task that answered and left work running (a thread that
    /// keeps a core busy, or a forged answer line written to the executor's pipe while the task goes on) ran on for as
    /// long as the interpreter lived, outside any time limit, billed as a task of milliseconds. Looked at by the pool's
    /// watch; the next task starts a fresh interpreter.
    func checkIdle() {
        guard let (pid, group, spell) = lock.withLock({ () -> (Int32, JobCgroup?, Int)? in
            guard unanswered == 0, let mark = idleMark, let p = process, p.isRunning else { return nil }
            return (p.pid, cgroup, mark.spell)
        }) else { return }
        let cpu = Self.cpuSeconds(pid: pid, group: group)
        lock.withLock {
            guard unanswered == 0, let mark = idleMark, mark.spell == spell, process?.pid == pid else { return }
            guard let before = mark.cpu else {
                idleMark = (cpu: cpu, spell: spell)
                return
            }
            if FunctionPool.idleUse(before: before, now: cpu) { stopLocked() }
        }
    }

    /// The CPU seconds the interpreter's processes used: its cgroup's, else those of its process and descendants
    /// (threads included) from `/proc`.
    static func cpuSeconds(pid: Int32, group: JobCgroup?) -> Double {
        if let seconds = group?.usage().cpuSeconds { return seconds }
        let tick = Double(max(1, sysconf(Int32(_SC_CLK_TCK))))
        var total = 0.0
        for p in [pid] + ProcessTree.descendants(of: pid) {
            guard let stat = JobCgroup.read("/proc/\(p)/stat"), let close = stat.range(of: ") ", options: .backwards) else { continue }
            let fields = stat[close.upperBound...].split(separator: " ")
            guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { continue }
            total += (user + system) / tick
        }
        return total
    }



    /// Replaces the process when its environment was deleted (evicted) or built again since it started: the old
    /// one's mount or path no longer holds the packages.
    func restartIfEnvironmentChanged() {
        lock.lock()
        defer { lock.unlock() }
        guard let site, process?.isRunning == true, FunctionPool.inode(site) != siteInode else { return }
        stopLocked()
    }

    func stop() {
        lock.lock()
        defer { lock.unlock() }
        stopLocked()
    }

    private func stopLocked() {
        if let p = process, p.isRunning {
            // The interpreter leads its own process group: whatever a task started goes with it. Never by pid once it
            // is reaped (the number may be another program's by then): `GroupLeader`.
            p.group.signalGroup(SIGKILL)
            _ = p.waitForExit(seconds: 10)
        }
        cgroup?.killAll()
        cgroup?.remove()
        cgroup = nil
        process = nil
        baseline = nil
        unanswered = 0
        idleMark = nil
        // Closed when the last holder lets go: an exchange in progress sees the end of its pipe, not another file.
        pipes = nil
    }
}

/// An interpreter's process, started with `grid_spawn_io` (every descriptor of the worker closed, its own session) by
/// the one spawner, `ForkedProcess`.
private typealias Child = ForkedProcess

extension ForkedProcess {
    /// Starts `argv` with its standard input and output on new pipes; returns the child and this side's ends (the
    /// writing end of its input, the reading end of its output), both close-on-exec.
    fileprivate static func start(_ argv: [String], environment: [String: String], directory: String, inherit: Int32 = -1) throws -> (ForkedProcess, Int32, Int32) {
        var toChild: [Int32] = [-1, -1]
        var fromChild: [Int32] = [-1, -1]
        guard grid_pipe_cloexec(&toChild) == 0 else { throw SpawnError(errno: errno, path: argv[0]) }
        guard grid_pipe_cloexec(&fromChild) == 0 else {
            let e = errno
            toChild.forEach { close($0) }
            throw SpawnError(errno: e, path: argv[0])
        }
        let (childIn, childOut) = (toChild[0], fromChild[1])
        let path = argv[0]
        let child: ForkedProcess
        do {
            child = try ForkedProcess.start(argv, environment: environment) { args, envp in
                grid_spawn_io(path, args, envp, directory, childIn, childOut, 1, inherit)
            }
        } catch {
            (toChild + fromChild).forEach { close($0) }
            throw error
        }
        close(childIn)
        close(childOut)
        return (child, toChild[1], fromChild[0])
    }
}

/// What runs a peer's function tasks: the pool of warm interpreters (`FunctionPool`), or, in the in-process test grid,
/// a scripted stand-in that starts no process.
public protocol FunctionRunner: Sendable {
    /// Gets ready for the first tasks (starts spare interpreters).
    func warm()
    /// Runs one task of `user` (in the Python environment given, if any); never throws for the task's own failures.
    /// `via`: the peer that forwarded it, if one did: such tasks run in interpreters of the user's that serve that
    /// peer's forwards only, never in those of the user's own tasks.
    func run(_ request: FunctionPool.Request, user: String, via: String?, environment: (key: String, site: String)?) async -> FunctionPool.Answer
    /// Stops everything it started.
    func shutdown()
    /// How many tasks beyond the peer's slots it takes at once, to start them the moment a slot frees (0: none; the
    /// caller then hands over a task only when a slot is free).
    var lookahead: Int { get }
}

extension FunctionRunner {
    public var lookahead: Int { 0 }

    public func run(_ request: FunctionPool.Request, user: String) async -> FunctionPool.Answer {
        await run(request, user: user, via: nil, environment: nil)
    }

    public func run(_ request: FunctionPool.Request, user: String, environment: (key: String, site: String)?) async -> FunctionPool.Answer {
        await run(request, user: user, via: nil, environment: environment)
    }
}
