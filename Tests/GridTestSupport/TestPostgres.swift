import Foundation
import GridSandbox

#if canImport(Glibc)
import Glibc
#endif

/// The tests' PostgreSQL (issue 16): one private cluster for every test process on this machine, started by the
/// project's own `scripts/postgres` on first use (never assumed running), and a fresh database for each caller so
/// tests running in parallel never share state. Databases left by test processes that are gone are dropped when a
/// process first uses the cluster.
public enum TestPostgres {
    /// The cluster's folder: `$CAMPUSGRID_TEST_POSTGRES_DIR`, else one per user under the temporary folder.
    public static var directory: String {
        if let d = ProcessInfo.processInfo.environment["CAMPUSGRID_TEST_POSTGRES_DIR"], !d.isEmpty { return d }
        let tmp = ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        return tmp + "/campusgrid-postgres-test-\(getuid())"
    }

    /// The repository's `scripts/postgres` (this file is Tests/GridTestSupport/TestPostgres.swift).
    public static var script: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("scripts/postgres").path
    }

    private static let state = Counter()

    /// The URL of a new, empty database on the test cluster (starting the cluster if it is not running). It carries the
    /// cluster's password: hand it to a process in its environment, never on its command line. Blocks for the script
    /// (well under a second once the cluster runs): call it from a test, not from an event loop.
    public static func freshDatabaseURL() throws -> String {
        let (n, first) = state.next()
        if first { _ = try? run(["prune", directory, "t"]) }
        let name = "t_\(getpid())_\(n)"
        let url = try run(["start", directory, name]).trimmingCharacters(in: .whitespacesAndNewlines)
        guard url.hasPrefix("postgres://") else { throw TestGridError("scripts/postgres printed no URL for \(name)") }
        return url
    }

    /// Runs `scripts/postgres` (e.g. `["start", DIR, DATABASE]`) and returns its stdout; its stderr goes to a file, shown
    /// when it fails. Blocks: call it from a thread of its own (`onThread`).
    /// With `holding`, the script runs with that file open on descriptor 7, as a caller's open descriptors would be.
    @discardableResult
    public static func run(_ args: [String], holding file: String? = nil) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        if let file {
            p.arguments = ["-c", #"exec 7>>"$0"; exec /bin/bash "$@""#, file, script] + args
        } else {
            p.arguments = [script] + args
        }
        var env = ProcessInfo.processInfo.environment
        env["CAMPUSGRID_POSTGRES_FAST"] = "1"
        p.environment = env
        let errPath = NSTemporaryDirectory() + "campusgrid-pg-\(getpid())-\(UUID().uuidString).err"
        FileManager.default.createFile(atPath: errPath, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: errPath) }
        let err = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
        defer { try? err.close() }
        let out = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        // Bounded (the script bounds its own waits), and reaped here if Foundation misses the script's exit (it was
        // seen to: the child left a zombie, isRunning stayed true, waitUntilExit() hung).
        let exitStatus = Command.exitStatus(of: p, within: 300)
        guard let exitStatus else {
            p.terminate()
            throw TestGridError("scripts/postgres \(args.first ?? "") did not finish in 300 s")
        }
        guard exitStatus == 0 else {
            let why = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
            throw TestGridError("scripts/postgres \(args.first ?? "") failed (\(exitStatus)): \(why.suffix(2000))")
        }
        return String(decoding: data, as: UTF8.self)
    }

    private final class Counter: @unchecked Sendable {
        // Safe: guarded by `lock`.
        private let lock = NSLock()
        private var n = 0
        func next() -> (Int, Bool) {
            lock.withLock {
                n += 1
                return (n, n == 1)
            }
        }
    }
}
