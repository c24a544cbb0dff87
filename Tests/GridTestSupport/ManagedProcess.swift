import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A real process started by a test: standard output is read line by line, standard error goes to a log file.
/// Only processes started here are ever signalled, by their own PID.
public final class ManagedProcess: @unchecked Sendable {
    // Safe: `lines` is guarded by `lock`; `process` is only read after start.
    public let process: Process
    public let name: String
    public let stderrPath: String
    private let lock = NSLock()
    private var lines: [String] = []
    private var allOutput: [String] = []
    private let available = DispatchSemaphore(value: 0)

    public var pid: Int32 { process.processIdentifier }
    public var isRunning: Bool { process.isRunning }

    public init(name: String, executable: String, arguments: [String], environment: [String: String], logDirectory: String) throws {
        self.name = name
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = arguments
        p.environment = environment
        p.standardInput = FileHandle.nullDevice
        let out = Pipe()
        p.standardOutput = out
        stderrPath = logDirectory + "/\(name).stderr.log"
        FileManager.default.createFile(atPath: stderrPath, contents: nil)
        p.standardError = FileHandle(forWritingAtPath: stderrPath)
        self.process = p
        try p.run()
        let handle = out.fileHandleForReading
        Thread.detachNewThread { [self] in
            var pending = Data()
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                pending.append(chunk)
                while let nl = pending.firstIndex(of: 0x0A) {
                    let line = String(decoding: pending[pending.startIndex..<nl], as: UTF8.self)
                    pending.removeSubrange(pending.startIndex...nl)
                    lock.lock()
                    lines.append(line)
                    allOutput.append(line)
                    lock.unlock()
                    available.signal()
                }
            }
        }
    }

    /// The next line printed on standard output, or nil after `timeout` seconds (or if the process exited).
    public func nextLine(timeout: Double = 30) -> String? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if available.wait(timeout: .now() + 0.1) == .success {
                lock.lock()
                defer { lock.unlock() }
                if !lines.isEmpty { return lines.removeFirst() }
            } else if !process.isRunning {
                return nil
            }
        }
        return nil
    }

    /// The next line printed on standard output, or nil after `timeout` seconds (or if the process exited), waited for
    /// without holding a thread: tests run in parallel on a pool as wide as the machine has cores (2 in CI), and a
    /// blocked thread there stalls every other test, including their own timers.
    public func nextLine(timeout: Double = 30) async -> String? {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            let line: String? = lock.withLock { lines.isEmpty ? nil : lines.removeFirst() }
            if let line { return line }
            if !process.isRunning {
                // It may have printed its last line just before it exited.
                return lock.withLock { lines.isEmpty ? nil : lines.removeFirst() }
            }
            if Date() >= deadline { return nil }
            try? await Task.sleep(for: .milliseconds(20))
        }
    }

    /// Everything printed on standard output so far.
    public var output: [String] {
        lock.lock()
        defer { lock.unlock() }
        return allOutput
    }

    /// What the process wrote to standard error.
    public var errorLog: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }

    public func signal(_ sig: Int32) {
        if process.isRunning { kill(process.processIdentifier, sig) }
    }

    /// Waits for the process to exit (bounded); SIGKILLs it when the time is up.
    @discardableResult
    public func waitForExit(timeout: Double = 10) -> Int32 {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        return process.terminationStatus
    }

    /// Waits for the process to exit (bounded) without holding a thread; SIGKILLs it when the time is up.
    @discardableResult
    public func waitForExit(timeout: Double = 10) async -> Int32 {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        return process.terminationStatus
    }

    /// SIGTERM, then SIGKILL if it does not exit in time.
    public func stop(timeout: Double = 10) {
        signal(SIGTERM)
        waitForExit(timeout: timeout)
    }
}

/// Runs blocking work (a synchronous suite of checks, a process run to its end) on a thread of its own and waits for it
/// without holding a thread of the pool every test shares.
public func onThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread { continuation.resume(with: Result { try body() }) }
    }
}

/// Runs a tool to its end (synchronously: call it from a thread of its own, or for quick tools) and returns what it
/// printed; throws with that output when it fails.
@discardableResult
public func runTool(_ path: String, _ args: [String]) throws -> String {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: path)
    p.arguments = args
    let out = Pipe()
    p.standardOutput = out
    p.standardError = out
    try p.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    let text = String(decoding: data, as: UTF8.self)
    guard p.terminationStatus == 0 else { throw TestGridError("\(path) \(args.joined(separator: " ")) failed: \(text)") }
    return text
}
