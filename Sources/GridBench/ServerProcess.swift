import Foundation
import GridSandbox

#if canImport(Glibc)
import Glibc
#endif

/// A long-running child of the bench (a manager, a worker, redis-server, nginx): its standard output is read line by
/// line, its standard error kept (the last 64 KiB) for error messages. `stop()` ends it by its pid: SIGTERM, then SIGKILL.
public final class ServerProcess: @unchecked Sendable {
    // Safe: `process` is set once in init; `lines` and `errors` are only touched while holding `lock`.
    public let name: String
    private let process: Process
    private let lock = NSLock()
    private var lines: [String] = []
    private var errors = Data()
    private let available = DispatchSemaphore(value: 0)

    public init(name: String, path: String, arguments: [String], environment: [String: String]? = nil, directory: String? = nil) throws {
        self.name = name
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = arguments
        if let environment { p.environment = environment }
        if let directory { p.currentDirectoryURL = URL(fileURLWithPath: directory) }
        let out = Pipe()
        let err = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = FileHandle.nullDevice
        process = p
        // Started from a fresh thread with no signals blocked: the child inherits its signal mask, and the threads
        // of Swift's concurrency pool block SIGTERM, which would make the child deaf to `stop()`.
        let failure = Collected()
        let started = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            var none = sigset_t()
            sigemptyset(&none)
            pthread_sigmask(SIG_SETMASK, &none, nil)
            do { try p.run() } catch { failure.set(Data("\(error)".utf8)) }
            started.signal()
        }
        started.wait()
        if !failure.get().isEmpty {
            throw BenchError("cannot start \(name) (\(path)): \(String(decoding: failure.get(), as: UTF8.self))")
        }
        let outHandle = out.fileHandleForReading
        let errHandle = err.fileHandleForReading
        Thread.detachNewThread { [self] in
            var pending = Data()
            while true {
                let chunk = outHandle.availableData
                if chunk.isEmpty { break }
                pending.append(chunk)
                while let nl = pending.firstIndex(of: 0x0A) {
                    let line = String(decoding: pending[pending.startIndex..<nl], as: UTF8.self)
                    pending.removeSubrange(pending.startIndex...nl)
                    lock.lock()
                    lines.append(line)
                    lock.unlock()
                    available.signal()
                }
            }
            available.signal()
        }
        Thread.detachNewThread { [self] in
            while true {
                let chunk = errHandle.availableData
                if chunk.isEmpty { break }
                lock.lock()
                errors.append(chunk)
                if errors.count > 64 << 10 { errors.removeFirst(errors.count - (64 << 10)) }
                lock.unlock()
            }
        }
    }

    public var pid: pid_t { process.processIdentifier }
    public var isRunning: Bool { process.isRunning }

    /// The next line the child printed, or nil after `timeout` seconds or when it exited.
    public func nextLine(timeout: Double) -> String? {
        let deadline = Stats.now() + timeout
        while Stats.now() < deadline {
            lock.lock()
            if !lines.isEmpty {
                defer { lock.unlock() }
                return lines.removeFirst()
            }
            lock.unlock()
            if available.wait(timeout: .now() + 0.2) == .timedOut && hasExited { return nil }
        }
        return nil
    }

    /// The end of what it wrote to standard error.
    public var errorLog: String {
        lock.lock()
        defer { lock.unlock() }
        return String(decoding: errors, as: UTF8.self)
    }

    /// SIGTERM, up to `grace` seconds to exit, then SIGKILL.
    public func stop(grace: Double = 10) {
        guard !hasExited else { return }
        kill(pid, SIGTERM)
        let deadline = Stats.now() + grace
        while !hasExited && Stats.now() < deadline { usleep(10_000) }
        if !hasExited {
            kill(pid, SIGKILL)
            let killDeadline = Stats.now() + 5
            while !hasExited && Stats.now() < killDeadline { usleep(10_000) }
        }
    }

    /// Whether the child is gone or a zombie. Read from /proc: Foundation's `isRunning` can lag by seconds when the
    /// child exits while its pipes are being read.
    var hasExited: Bool {
        guard process.isRunning else { return true }
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return true }
        // The state follows the parenthesised command name: "pid (comm) S …".
        guard let close = stat.lastIndex(of: ")") else { return false }
        let state = stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).first
        return state == "Z" || state == "X"
    }
}
