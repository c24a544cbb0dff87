public import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A long-running child (a manager or worker that `up`, the bench or a test starts; redis-server, nginx): the one
/// supervisor of the project. Its standard output is read line by line as it comes; its standard error is kept (the
/// last 64 KiB), written to a file, or passed through. Only this child is ever signalled, by its own pid, and no wait
/// on it is without a bound.
public final class ChildProcess: @unchecked Sendable {
    // Safe: `process` is set once in init; `unread`, `lines` and `errors` are only touched while holding `lock`.

    /// Where the child's standard error goes.
    public enum ErrorOutput: Sendable {
        /// Kept here, the last 64 KiB (`errorLog`).
        case keep
        /// Written to this file (`errorLog` reads it back).
        case file(String)
        /// Straight to this process's standard error.
        case inherit
    }

    public let name: String
    public let process: Process
    /// The file its standard error goes to, with `.file`.
    public let stderrPath: String?
    private let lock = NSLock()
    private var unread: [String] = []
    private var lines: [String] = []
    private var errors = Data()
    private let available = DispatchSemaphore(value: 0)

    public init(
        name: String, path: String, arguments: [String], environment: [String: String]? = nil, directory: String? = nil,
        errors errorOutput: ErrorOutput = .keep
    ) throws {
        self.name = name
        let (p, out) = Command.process(path, arguments, environment: environment, directory: directory)
        var errPipe: Pipe?
        switch errorOutput {
        case .keep:
            let pipe = Pipe()
            p.standardError = pipe
            errPipe = pipe
            stderrPath = nil
        case .file(let path):
            FileManager.default.createFile(atPath: path, contents: nil)
            p.standardError = FileHandle(forWritingAtPath: path)
            stderrPath = path
        case .inherit:
            p.standardError = FileHandle.standardError
            stderrPath = nil
        }
        process = p
        // Started from a fresh thread with no signals blocked: the child inherits its signal mask, and the threads of
        // Swift's concurrency pool block SIGTERM, which would make the child deaf to `stop()`.
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
            throw GridChildError("cannot start \(name) (\(path)): \(String(decoding: failure.get(), as: UTF8.self))")
        }
        let outHandle = out.fileHandleForReading
        Thread.detachNewThread { [self] in
            var pending = Data()
            while case let chunk = outHandle.availableData, !chunk.isEmpty {
                pending.append(chunk)
                while let nl = pending.firstIndex(of: 0x0A) {
                    let line = String(decoding: pending[pending.startIndex..<nl], as: UTF8.self)
                    pending.removeSubrange(pending.startIndex...nl)
                    lock.withLock {
                        unread.append(line)
                        lines.append(line)
                    }
                    available.signal()
                }
            }
            available.signal()
        }
        if let errHandle = errPipe?.fileHandleForReading {
            Thread.detachNewThread { [self] in
                while case let chunk = errHandle.availableData, !chunk.isEmpty {
                    lock.withLock {
                        errors.append(chunk)
                        if errors.count > 64 << 10 { errors.removeFirst(errors.count - (64 << 10)) }
                    }
                }
            }
        }
    }

    public var pid: pid_t { process.processIdentifier }

    /// Whether it still runs (not exited, not a zombie).
    public var isRunning: Bool { !hasExited }

    /// Whether the child is gone or a zombie. Read from /proc: Foundation's `isRunning` can lag by seconds when the
    /// child exits while its pipes are being read.
    public var hasExited: Bool {
        guard process.isRunning else { return true }
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return true }
        // The state follows the parenthesised command name: "pid (comm) S …".
        guard let close = stat.lastIndex(of: ")") else { return false }
        let state = stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).first
        return state == "Z" || state == "X"
    }

    private func takeLine() -> String? { lock.withLock { unread.isEmpty ? nil : unread.removeFirst() } }

    /// The next line it printed, or nil after `timeout` seconds or once it exited with nothing more to read. Blocks
    /// the calling thread: from async code use the async form.
    public func nextLine(timeout: Double) -> String? {
        let deadline = ContinuousClock.now + .milliseconds(Int64(min(max(timeout.isNaN ? 0 : timeout, 0), 86_400) * 1000))
        while true {
            if let line = takeLine() { return line }
            if hasExited {
                // Its last lines may still be on their way from the reader.
                _ = available.wait(timeout: .now() + 0.2)
                return takeLine()
            }
            if ContinuousClock.now >= deadline { return nil }
            _ = available.wait(timeout: .now() + 0.1)
        }
    }

    /// The next line it printed, or nil after `timeout` seconds or once it exited, waited for without holding a thread
    /// (a test's pool is as wide as the machine has cores, and a blocked thread there stalls every other test).
    public func nextLine(timeout: Double) async -> String? {
        let deadline = ContinuousClock.now + .milliseconds(Int64(min(max(timeout.isNaN ? 0 : timeout, 0), 86_400) * 1000))
        while true {
            if let line = takeLine() { return line }
            if hasExited {
                try? await Task.sleep(for: .milliseconds(200))
                return takeLine()
            }
            if ContinuousClock.now >= deadline { return nil }
            try? await Task.sleep(for: .milliseconds(20))
        }
    }

    /// Every line it printed on standard output so far.
    public var output: [String] { lock.withLock { lines } }

    /// What it wrote to standard error (the last 64 KiB kept, or its file); empty when it was passed through.
    public var errorLog: String {
        if let stderrPath { return (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }
        return lock.withLock { String(decoding: errors, as: UTF8.self) }
    }

    /// Sends `sig` to it, if it still runs.
    public func signal(_ sig: Int32) {
        if !hasExited { kill(pid, sig) }
    }

    /// Waits (bounded) for it to exit; SIGKILLs it when the time is up. Its exit status (128 + signal when killed by one).
    @discardableResult
    public func waitForExit(timeout: Double = 10) -> Int32 { reap(within: timeout) }

    private func reap(within seconds: Double) -> Int32 {
        if let status = Command.exitStatus(of: process, within: seconds) { return status }
        kill(pid, SIGKILL)
        return Command.exitStatus(of: process, within: 5) ?? 128 + SIGKILL
    }

    /// `waitForExit`, without holding a thread.
    @discardableResult
    public func waitForExit(timeout: Double = 10) async -> Int32 {
        let deadline = ContinuousClock.now + .milliseconds(Int64(min(max(timeout.isNaN ? 0 : timeout, 0), 86_400) * 1000))
        while !hasExited && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        return reap(within: 0)
    }

    /// SIGTERM, up to `grace` seconds to exit, then SIGKILL.
    public func stop(grace: Double = 10) {
        guard !hasExited else {
            _ = Command.exitStatus(of: process, within: 0)
            return
        }
        kill(pid, SIGTERM)
        _ = reap(within: grace)
    }
}

/// A child that could not be started, in words.
public struct GridChildError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
