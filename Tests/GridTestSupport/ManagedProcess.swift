import Foundation
public import GridSandbox

#if canImport(Glibc)
import Glibc
#endif

/// A real process started by a test: the project's one supervisor, `ChildProcess`, with its standard error in a log file
/// (kept for a post-mortem with CAMPUSGRID_TEST_KEEP_FILES=1). Only processes started here are ever signalled, by
/// their own PID.
public typealias ManagedProcess = ChildProcess

extension ChildProcess {
    /// A test's process: standard error goes to `logDirectory/NAME.stderr.log`; a process started again under the same
    /// name (a worker restarted on its data folder) writes `NAME.2.stderr.log`, and so on, so a post-mortem has every
    /// life's log.
    public convenience init(name: String, executable: String, arguments: [String], environment: [String: String], logDirectory: String) throws {
        var path = logDirectory + "/\(name).stderr.log"
        var life = 1
        while FileManager.default.fileExists(atPath: path), life < 1000 {
            life += 1
            path = logDirectory + "/\(name).\(life).stderr.log"
        }
        try self.init(name: name, path: executable, arguments: arguments, environment: environment, errors: .file(path))
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
    let r = try Command.run(path, args, timeout: 600)
    let text = r.stdout + r.stderr
    guard r.succeeded else {
        throw TestGridError("\(path) \(args.joined(separator: " ")) failed\(r.timedOut ? " (no end within 600 s)" : ""): \(text)")
    }
    return text
}
