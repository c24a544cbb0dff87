import CGridSpawn
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// One running job process: its merged output as a stream, cancellation, and its final report.
///
/// Two threads per job do the blocking work (reading the output pipe, `wait4` on the main process); when the main
/// process ends, whatever it left behind is killed, so a run never leaves processes behind.
public final class JobExecution: Sendable {
    /// Output (stdout and stderr together) in chunks, as it is written; ends when the job's processes are gone.
    public let output: AsyncStream<[UInt8]>
    public let pid: pid_t
    private let marker: String
    private let ending = Mutex<RunReport.Outcome?>(nil)
    private let exited = Mutex<Double?>(nil)
    private let report = OneShot<RunReport>()
    private let describe: @Sendable (RunReport) -> RunReport

    /// Starts `path` and returns its execution; `deadline` is the wall-clock limit in seconds.
    static func spawn(
        path: String, arguments: [String], environment: [String: String], directory: String, limits: [grid_rlimit], deadline: Double,
        describe: @escaping @Sendable (RunReport) -> RunReport = { $0 }
    ) throws -> JobExecution {
        var fds: [Int32] = [0, 0]
        guard grid_pipe_cloexec(&fds) == 0 else { throw SpawnError(errno: errno, path: path) }
        let marker = UUID().uuidString
        var env = environment
        env[ProcessTree.markerName] = marker
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        let envp = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        let pid = limits.withUnsafeBufferPointer { lp in
            grid_spawn(path, argv, envp, directory, fds[1], lp.baseAddress, Int32(lp.count), 1)
        }
        let spawnErrno = errno
        close(fds[1])
        guard pid > 0 else {
            close(fds[0])
            throw SpawnError(errno: spawnErrno, path: path)
        }
        return JobExecution(pid: pid, outputFD: fds[0], marker: marker, deadline: deadline, describe: describe)
    }

    private init(pid: pid_t, outputFD: Int32, marker: String, deadline: Double, describe: @escaping @Sendable (RunReport) -> RunReport) {
        self.pid = pid
        self.marker = marker
        self.describe = describe
        let (stream, continuation) = AsyncStream<[UInt8]>.makeStream(bufferingPolicy: .unbounded)
        self.output = stream
        let started = Self.monotonic()
        Thread.detachNewThread { [self] in
            self.pump(fd: outputFD, into: continuation)
        }
        Thread.detachNewThread { [self] in
            self.reap(started: started)
        }
        DispatchQueue.global().asyncAfter(deadline: .now() + deadline) { [self] in
            self.stop(.timedOut)
        }
    }

    /// Stops the job now: kills its whole process tree. The report says `cancelled`.
    public func cancel() { stop(.cancelled) }

    /// Waits for the end of the run.
    public func wait() async -> RunReport { await report.wait() }

    private func stop(_ why: RunReport.Outcome) {
        guard report.value == nil else { return }
        let first = ending.withLock { e -> Bool in
            guard e == nil else { return false }
            e = why
            return true
        }
        if first { ProcessTree.killAll(pgid: pid, marker: marker) }
    }

    private func reap(started: Double) {
        var status: Int32 = 0
        var usage = rusage()
        while wait4(pid, &status, 0, &usage) < 0 && errno == EINTR {}
        let end = Self.monotonic()
        exited.withLock { $0 = end }
        ProcessTree.killAll(pgid: pid, marker: marker)
        let runtimeMs = Int64((end - started) * 1000)
        let cpu = Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6 + Double(usage.ru_stime.tv_sec)
            + Double(usage.ru_stime.tv_usec) / 1e6
        let signaled = (status & 0x7f) != 0 && (status & 0x7f) != 0x7f
        let signal: Int32? = signaled ? status & 0x7f : nil
        let code: Int32? = signaled ? nil : (status >> 8) & 0xff
        let forced = ending.withLock { $0 }
        var r = RunReport(
            outcome: forced ?? (code == 0 ? .completed : .failed), exitCode: code, signal: signal, runtimeMs: runtimeMs,
            peakMemoryKb: Int64(usage.ru_maxrss), cpuSeconds: cpu)
        switch r.outcome {
        case .completed: break
        case .cancelled: r.reason = "cancelled"
        case .timedOut: r.reason = nil
        case .failed:
            if let signal { r.reason = "killed by signal \(signal)" } else { r.reason = "exited with code \(code ?? -1)" }
        }
        report.fulfil(describe(r))
    }

    /// Copies the pipe into the stream until EOF, or until the main process has been gone a while (a process that
    /// escaped every kill may hold the pipe open forever).
    private func pump(fd: Int32, into continuation: AsyncStream<[UInt8]>.Continuation) {
        defer {
            close(fd)
            continuation.finish()
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
            continuation.yield(Array(buffer[0..<n]))
        }
    }

    static func monotonic() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}

/// A process could not be started.
public struct SpawnError: Error, CustomStringConvertible {
    public var errno: Int32
    public var path: String
    public var description: String { "cannot start \(path): \(String(cString: strerror(errno)))" }
}
