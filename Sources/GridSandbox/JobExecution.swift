import CGridSpawn
public import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// One running job: its merged output as a stream, cancellation, and its final report.
///
/// Two threads per job do the blocking work (reading the output, waiting for the end); when the main process ends,
/// whatever it left behind is killed, so a run never leaves processes behind. How the job's processes are reached
/// (a process group, a cgroup, a container) is the runner's business, given as a `Control`.
public final class JobExecution: Sendable {
    /// Output (stdout and stderr together) in chunks, as it is written; ends when the job's processes are gone.
    public let output: AsyncStream<[UInt8]>
    /// The main process on this machine, or 0 where an engine owns the job's processes (OCI).
    public let pid: Int32
    private let control: Control
    private let ending = Mutex<Stop?>(nil)
    private let exited = Mutex<Double?>(nil)
    private let report = OneShot<RunReport>()
    /// The last few KiB of output, for runners whose only sign of a limit is what the job printed (`explainTail`).
    private let tail = Mutex<[UInt8]>([])
    private let pumped = DispatchSemaphore(value: 0)
    static let tailBytes = 4096

    /// Why a run was stopped before its main process ended by itself.
    struct Stop: Sendable, Hashable {
        var outcome: RunReport.Outcome
        var reason: String?
    }

    /// How the main process (or container) ended.
    struct Exit: Sendable {
        var exitCode: Int32?
        var signal: Int32?
        var cpuSeconds: Double
        var peakMemoryKb: Int64
    }

    /// The runner's hold on a job's processes.
    struct Control: Sendable {
        /// Blocks until the main process (or container) has ended.
        var waitForExit: @Sendable () -> Exit
        /// Kills everything that belongs to the job; idempotent; called on stop and again after the end.
        var killAll: @Sendable () -> Void
        /// Polled about every 250 ms while the job runs; an answer stops the job with that outcome and reason.
        var check: (@Sendable () -> Stop?)? = nil
        /// Amends the final report (reasons, measurements) and releases what the run held (cgroup, container).
        var finish: @Sendable (RunReport) -> RunReport = { $0 }
        /// Amends the final report from the end of the job's output (read to its end first, waiting at most 2 s).
        var explainTail: (@Sendable (RunReport, String) -> RunReport)? = nil
        /// The job's processes now, for the disk watch (the files they hold open that were deleted take disk no walk
        /// of the folder sees); nil: not known (a container's).
        var processes: (@Sendable () -> [pid_t])? = nil
        /// Measures the job's folder in place of the worker's own walk (a rootless container's files are the user
        /// namespace's); nil: `DiskRule.measure`.
        var measure: (@Sendable (String, DiskLimits) -> DiskRule.Measure)? = nil
    }

    /// What a runner adds to a plain process start.
    struct Hooks: Sendable {
        /// Open `cgroup.procs` files the child joins before it runs anything.
        var cgroupProcs: [Int32] = []
        /// Kills the job's processes in addition to the process-group and marker kill.
        var killAll: (@Sendable () -> Void)? = nil
        /// `killAll` reaches every process of the job (its cgroup, which the first process joined before it ran
        /// anything, and which no process of the job can leave): the scan for the job's marker is then skipped.
        var cgroupHoldsEveryProcess = false
        var check: (@Sendable () -> Stop?)? = nil
        var finish: @Sendable (RunReport) -> RunReport = { $0 }
        var explainTail: (@Sendable (RunReport, String) -> RunReport)? = nil
        /// The job's processes (its cgroup's, its PID namespace's); nil: those of its process group and its marker.
        var processes: (@Sendable () -> [pid_t])? = nil
    }

    /// Starts `path` and returns its execution; `deadline` is the wall-clock limit in seconds. `inherit`: the one
    /// descriptor it keeps (a sandbox's user namespace; -1: none).
    static func spawn(
        path: String, arguments: [String], environment: [String: String], directory: String, limits: [grid_rlimit], deadline: Double,
        hooks: Hooks = Hooks(), inherit: Int32 = -1
    ) throws -> JobExecution {
        var fds: [Int32] = [0, 0]
        guard grid_pipe_cloexec(&fds) == 0 else { throw SpawnError(errno: errno, path: path) }
        let marker = UUID().uuidString
        var env = environment
        env[ProcessTree.markerName] = marker
        let outFD = fds[1]
        let cgroupProcs = hooks.cgroupProcs
        let process: ForkedProcess
        do {
            process = try ForkedProcess.start([path] + arguments, environment: env) { argv, envp in
                limits.withUnsafeBufferPointer { lp in
                    cgroupProcs.withUnsafeBufferPointer { cp in
                        grid_spawn(path, argv, envp, directory, outFD, lp.baseAddress, Int32(lp.count), 1, cp.baseAddress, Int32(cp.count), inherit)
                    }
                }
            }
        } catch {
            close(fds[1])
            close(fds[0])
            throw error
        }
        close(fds[1])
        return JobExecution(process: process, marker: marker, outputFD: fds[0], deadline: deadline, hooks: hooks)
    }

    /// Starts `path` in `standby` (forked ahead into the job's cgroup, whose limits the caller has written), as
    /// `spawn` would have started it: the same arguments, environment, directory, limits and new session.
    static func spawn(
        standby: Standby, path: String, arguments: [String], environment: [String: String], directory: String, limits: [grid_rlimit],
        deadline: Double, hooks: Hooks
    ) throws -> JobExecution {
        let marker = UUID().uuidString
        var env = environment
        env[ProcessTree.markerName] = marker
        try standby.go(path: path, arguments: arguments, environment: env, directory: directory, limits: limits)
        return JobExecution(process: standby.process, marker: marker, outputFD: standby.outputFD, deadline: deadline, hooks: hooks)
    }

    /// The job of a warm standby (`WarmStart`), whose start request the caller has sent: its interpreter already runs.
    static func warm(standby: Standby, deadline: Double, hooks: Hooks) -> JobExecution {
        JobExecution(process: standby.process, marker: UUID().uuidString, outputFD: standby.outputFD, deadline: deadline, hooks: hooks)
    }

    private convenience init(process: ForkedProcess, marker: String, outputFD: Int32, deadline: Double, hooks: Hooks) {
        let extraKill = hooks.killAll
        let everyProcessInCgroup = hooks.cgroupHoldsEveryProcess
        let control = Control(
            waitForExit: { Self.exit(process.waitForExit()) },
            killAll: {
                extraKill?()
                if everyProcessInCgroup {
                    // The cgroup kill above reached every process of the job; the group signal is for good measure,
                    // and the scan of every process's environment (about 1.5 ms) would find nothing.
                    process.group.signalGroup(SIGKILL)
                } else {
                    ProcessTree.killAll(group: process.group, marker: marker)
                }
            },
            check: hooks.check, finish: hooks.finish, explainTail: hooks.explainTail,
            processes: hooks.processes ?? { Array(Set(ProcessTree.pids(withMarker: marker) + [process.pid])) })
        self.init(pid: process.pid, outputFD: outputFD, deadline: deadline, control: control)
    }

    /// An execution whose output arrives on `outputFD` and whose processes `control` reaches.
    init(pid: pid_t, outputFD: Int32, deadline: Double, control: Control) {
        self.pid = pid
        self.control = control
        // Bounded: a job writes no faster than its output is taken (`pump` waits; the job then waits in its write).
        let (stream, continuation) = AsyncStream<[UInt8]>.makeStream(bufferingPolicy: .bufferingOldest(Self.bufferedChunks))
        self.output = stream
        let started = Self.monotonic()
        Thread.detachNewThread { [self] in
            self.pump(fd: outputFD, into: continuation)
        }
        Thread.detachNewThread { [self] in
            self.reap(started: started)
        }
        if control.check != nil {
            Thread.detachNewThread { [self] in
                self.watch()
            }
        }
        DispatchQueue.global().asyncAfter(deadline: .now() + deadline) { [self] in
            self.stop(Stop(outcome: .timedOut))
        }
    }

    /// Measures `folder` (the job's) while the job runs, and stops the job (`failed`, with the reason) once it passes
    /// `limits` (`DiskRule`). On a thread of its own, which ends with the run.
    public func watchDisk(folder: String, limits: DiskLimits) {
        Thread.detachNewThread { [self] in
            var incomplete = 0
            while report.value == nil && exited.withLock({ $0 }) == nil {
                let began = Self.monotonic()
                var measure = control.measure?(folder, limits) ?? DiskRule.measure(folder, limits: limits)
                // The next look waits in proportion to the walk alone: the scan of the processes below is bounded
                // (`mapsBudget`), and a job that slowed it put off every look by ten times as long.
                let walked = Self.monotonic() - began
                // What its processes hold open of files deleted since: disk the walk cannot see, the job's all the same.
                if let processes = control.processes {
                    if let open = DiskRule.openDeletedBytes(of: processes(), onDiskOf: folder) { measure.openDeleted = open } else { measure.incomplete = true }
                }
                // Measured while the run went on: a folder gone with the run's end says nothing.
                guard report.value == nil && exited.withLock({ $0 }) == nil else { return }
                incomplete = measure.incomplete ? incomplete + 1 : 0
                if let why = DiskRule.verdict(measure, limits: limits, incompleteInARow: incomplete) {
                    stop(Stop(outcome: .failed, reason: why))
                    return
                }
                let until = Self.monotonic() + DiskRule.interval(walkSeconds: walked)
                while Self.monotonic() < until && report.value == nil && exited.withLock({ $0 }) == nil { usleep(250_000) }
            }
        }
    }

    /// Stops the job now: kills its whole process tree. The report says `cancelled`.
    public func cancel() { stop(Stop(outcome: .cancelled, reason: "cancelled")) }

    /// Waits for the end of the run.
    public func wait() async -> RunReport { await report.wait() }

    private func stop(_ why: Stop) {
        guard report.value == nil else { return }
        let first = ending.withLock { e -> Bool in
            guard e == nil else { return false }
            e = why
            return true
        }
        if first { control.killAll() }
    }

    /// Polls the runner's check until the run ends (bounded by the deadline, which ends the run).
    private func watch() {
        guard let check = control.check else { return }
        while report.value == nil && exited.withLock({ $0 }) == nil {
            if let why = check() {
                stop(why)
                return
            }
            usleep(250_000)
        }
    }

    private static func exit(_ ended: ForkedProcess.Ended) -> Exit {
        let status = ended.status
        let signaled = (status & 0x7f) != 0 && (status & 0x7f) != 0x7f
        return Exit(
            exitCode: signaled ? nil : (status >> 8) & 0xff, signal: signaled ? status & 0x7f : nil, cpuSeconds: ended.cpuSeconds,
            peakMemoryKb: ended.peakMemoryKb)
    }

    private func reap(started: Double) {
        let exit = control.waitForExit()
        let end = Self.monotonic()
        exited.withLock { $0 = end }
        control.killAll()
        let forced = ending.withLock { $0 }
        var r = RunReport(
            outcome: forced?.outcome ?? (exit.exitCode == 0 ? .completed : .failed), exitCode: exit.exitCode, signal: exit.signal,
            runtimeMs: Int64((end - started) * 1000), peakMemoryKb: exit.peakMemoryKb, cpuSeconds: exit.cpuSeconds)
        if let reason = forced?.reason {
            r.reason = reason
        } else if r.outcome == .failed {
            if let signal = exit.signal { r.reason = "killed by signal \(signal)" } else { r.reason = "exited with code \(exit.exitCode ?? -1)" }
        }
        r = control.finish(r)
        if let explain = control.explainTail {
            // The pump may wait on a slow reader (up to 10 s after the end, `pump`): the tail is read once it is done.
            _ = pumped.wait(timeout: .now() + 12)
            r = explain(r, String(decoding: tail.withLock { $0 }, as: UTF8.self))
        }
        // A stop decided with its reason (a disk limit, a check) is why the run ended, whatever the runner guesses from
        // the kill it took (a container killed by SIGKILL reads as out of memory).
        if let reason = forced?.reason { r.reason = reason }
        report.fulfil(r)
    }

    /// Copies the pipe into the stream until EOF, or until the main process has been gone a while (a process that
    /// escaped every kill may hold the pipe open forever).
    private func pump(fd: Int32, into continuation: AsyncStream<[UInt8]>.Continuation) {
        defer {
            close(fd)
            continuation.finish()
            pumped.signal()
        }
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&p, 1, 200)
            if ready < 0 && errno == EINTR { continue }
            if ready == 0 {
                if let gone = exited.withLock({ $0 }), Self.monotonic() - gone > 1.0 { return }
                continue
            }
            let n = read(fd, &buffer, buffer.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            if control.explainTail != nil {
                tail.withLock { t in
                    t += buffer[0..<n].suffix(Self.tailBytes)
                    if t.count > Self.tailBytes { t.removeFirst(t.count - Self.tailBytes) }
                }
            }
            // The reader is behind: this waits, the pipe fills, and the job waits in its own write. Before, whatever a
            // job wrote while its output was sent on (a 64 KiB log frame at a time) piled up in the worker's memory,
            // which no limit of the job's counts: gigabytes in seconds. A reader gone for good (the stream ended) takes
            // nothing more, and the rest is read and dropped.
            let chunk = Array(buffer[0..<n])
            while case .dropped = continuation.yield(chunk) {
                if let gone = exited.withLock({ $0 }), Self.monotonic() - gone > 10 { return }
                usleep(1_000)
            }
        }
    }

    /// The output chunks (up to 64 KiB each) a run holds for its reader: 4 MiB at most.
    static let bufferedChunks = 64

    static func monotonic() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}

/// The C strings of one exec, handed to the thread that forks.
struct CStrings: @unchecked Sendable {
    // Safe: written before the thread starts, read only by it, freed only after it reported the fork.
    let argv: [UnsafeMutablePointer<CChar>?]
    let envp: [UnsafeMutablePointer<CChar>?]
}

/// A process could not be started.
public struct SpawnError: Error, CustomStringConvertible {
    public var errno: Int32
    public var path: String
    public var description: String { "cannot start \(path): \(String(cString: strerror(errno)))" }
}

extension JobExecution {
    /// A run with no process of its own: `work` runs on a thread of its own, writes its output with `emit`, should
    /// return soon after `stopped()` turns true (a cancel, or the deadline), and returns its exit code. Output, cancel,
    /// deadline and report behave as for a process (a stopped run reports as killed). Used by the in-process grid's
    /// scripted runner (issue 14), where a test needs a job's lifecycle without starting a process.
    public static func inProcess(
        deadline: Double, _ work: @escaping @Sendable (_ emit: @Sendable ([UInt8]) -> Void, _ stopped: @Sendable () -> Bool) -> Int32
    ) throws -> JobExecution {
        var fds: [Int32] = [0, 0]
        guard grid_pipe_cloexec(&fds) == 0 else { throw SpawnError(errno: errno, path: "an in-process run") }
        let writeFD = fds[1]
        let stop = Mutex(false)
        let exit = Mutex<Exit?>(nil)
        let ended = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            let code = work(
                { bytes in
                    bytes.withUnsafeBytes { raw in
                        var offset = 0
                        while offset < raw.count {
                            let n = write(writeFD, raw.baseAddress! + offset, raw.count - offset)
                            if n < 0 && errno == EINTR { continue }
                            if n <= 0 { return }
                            offset += n
                        }
                    }
                }, { stop.withLock { $0 } })
            close(writeFD)
            let killed = stop.withLock { $0 }
            exit.withLock { $0 = Exit(exitCode: killed ? nil : code, signal: killed ? SIGKILL : nil, cpuSeconds: 0, peakMemoryKb: 0) }
            ended.signal()
        }
        let control = Control(
            waitForExit: {
                ended.wait()
                return exit.withLock { $0 }!
            },
            killAll: { stop.withLock { $0 = true } })
        return JobExecution(pid: 0, outputFD: fds[0], deadline: deadline, control: control)
    }
}
