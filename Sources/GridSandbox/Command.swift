public import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// One-shot commands with a time limit: the probes a worker runs at start (its Python, bubblewrap, `nvidia-smi`) and
/// the bench's tools. The one place such a command is run, so that none waits without a bound: a driver that hangs
/// `nvidia-smi`, or a child that leaves a daemon holding its output, never hangs whoever asked.
public enum Command {
    /// The result of a finished (or stopped) command.
    public struct Result: Sendable {
        public var status: Int32
        public var stdout: String
        public var stderr: String
        /// It outlived its time limit and was killed.
        public var timedOut: Bool
        /// Exited 0 in time.
        public var succeeded: Bool { status == 0 && !timedOut }
    }

    /// Runs `path` to completion or until `timeout` seconds pass (then SIGTERM, then SIGKILL). Output is read while it
    /// runs; `inheritStderr` lets its messages reach this process's standard error instead of capturing them.
    public static func run(
        _ path: String, _ arguments: [String], environment: [String: String]? = nil, directory: String? = nil, timeout: Double,
        inheritStderr: Bool = false
    ) throws -> Result {
        let (p, out) = process(path, arguments, environment: environment, directory: directory)
        let err = Pipe()
        p.standardError = inheritStderr ? FileHandle.standardError : err
        try p.run()
        let outData = Collected()
        let errData = Collected()
        let readers = DispatchGroup()
        for (pipe, sink) in inheritStderr ? [(out, outData)] : [(out, outData), (err, errData)] {
            readers.enter()
            Thread.detachNewThread {
                // In pieces, so that what came before a stop (or before a daemon kept the pipe open) is kept.
                let handle = pipe.fileHandleForReading
                while case let chunk = handle.availableData, !chunk.isEmpty { sink.append(chunk) }
                readers.leave()
            }
        }
        let limit = timeout.isFinite ? max(0, timeout) : (timeout > 0 ? 86_400 : 0)
        var status = exitStatus(of: p, within: limit)
        let timedOut = status == nil
        if timedOut {
            kill(p.processIdentifier, SIGTERM)
            status = exitStatus(of: p, within: 0.5)
            if status == nil {
                kill(p.processIdentifier, SIGKILL)
                status = exitStatus(of: p, within: 5)
            }
        }
        // A daemon the command left behind may hold its pipes open: its output so far is taken, the rest not waited for.
        _ = readers.wait(timeout: .now() + 2)
        return Result(
            status: status ?? 128 + SIGKILL, stdout: String(decoding: outData.get(), as: UTF8.self),
            stderr: String(decoding: errData.get(), as: UTF8.self), timedOut: timedOut)
    }

    /// A child not yet started: `path` with `arguments`, no standard input, its standard output to the returned pipe.
    static func process(_ path: String, _ arguments: [String], environment: [String: String]?, directory: String?) -> (Process, Pipe) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = arguments
        if let environment { p.environment = environment }
        if let directory { p.currentDirectoryURL = URL(fileURLWithPath: directory) }
        let out = Pipe()
        p.standardOutput = out
        p.standardInput = FileHandle.nullDevice
        return (p, out)
    }

    /// The standard output of a command that succeeded in time, or nil (not there, failed, or too slow).
    public static func output(_ path: String, _ arguments: [String], timeout: Double) -> String? {
        guard let r = try? run(path, arguments, timeout: timeout), r.succeeded else { return nil }
        return r.stdout
    }

    /// The exit status of `p` once it exits (128 + the signal when one ended it), or nil after `seconds`. Never `waitUntilExit()`: Foundation learns of a
    /// child's exit when every holder of a socket it gave the child has closed it, so a daemon the child started (and
    /// that kept the socket) hid the exit for the daemon's whole life. The child is reaped here when Foundation has not.
    public static func exitStatus(of p: Process, within seconds: Double) -> Int32? {
        let deadline = ContinuousClock.now + .milliseconds(Int64(min(max(seconds, 0), 86_400) * 1000))
        repeat {
            // One convention whoever saw the end: the exit code, or 128 + the signal that ended it (as a shell says).
            if !p.isRunning { return p.terminationReason == .uncaughtSignal ? 128 + p.terminationStatus : p.terminationStatus }
            var status: Int32 = 0
            if waitpid(p.processIdentifier, &status, WNOHANG) == p.processIdentifier {
                return (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
            }
            usleep(5_000)
        } while ContinuousClock.now < deadline
        return nil
    }
}

/// Bytes read by one thread and taken by another.
public final class Collected: @unchecked Sendable {
    // Safe: every access holds `lock`.
    private let lock = NSLock()
    private var data = Data()
    public init() {}
    public func set(_ d: Data) { lock.withLock { data = d } }
    public func append(_ d: Data) { lock.withLock { data.append(d) } }
    public func get() -> Data { lock.withLock { data } }
}
