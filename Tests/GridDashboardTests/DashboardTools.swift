import Foundation
import GridTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// Paths and helpers the dashboard's process-level tests share: the repository root, the test artifacts folder,
/// free ports, and running an outside tool (python, schemathesis) to completion with a bounded wait.
enum DashboardTools {
    static let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// `test-artifacts/dashboard` in the repository (gitignored): screenshots and reports a person can look at.
    static var artifacts: URL {
        let url = repositoryRoot.appendingPathComponent("test-artifacts/dashboard")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// The Python with the test tools: the venv `scripts/setup` makes, else `python3`.
    static var python: String {
        let venv = repositoryRoot.appendingPathComponent(".build-venv/bin/python").path
        return FileManager.default.isExecutableFile(atPath: venv) ? venv : "/usr/bin/python3"
    }

    static func executable(_ candidates: [String]) -> String? {
        candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// A port that was free a moment ago on 127.0.0.1.
    static func freePort() -> Int { freeTCPPort() }

    /// A tool run by a test: output to a file, stopped by its PID (and only it) if it outlives `timeout`.
    final class Tool: @unchecked Sendable {
        // Safe: used from one test task.
        let process = Process()
        let outputPath: String

        init(
            _ executable: String, _ arguments: [String], environment: [String: String] = [:], outputPath: String, directory: String? = nil
        ) throws {
            self.outputPath = outputPath
            process.executableURL = URL(fileURLWithPath: executable)
            if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
            process.arguments = arguments
            var env = ProcessInfo.processInfo.environment
            for (k, v) in environment { env[k] = v }
            process.environment = env
            _ = FileManager.default.createFile(atPath: outputPath, contents: nil)
            let out = FileHandle(forWritingAtPath: outputPath)
            process.standardOutput = out
            process.standardError = out
            process.standardInput = FileHandle.nullDevice
            try process.run()
        }

        /// Waits for the end, calling `tick` about five times a second; kills the tool at `timeout`. Returns the status.
        func wait(timeout: Double, tick: () async throws -> Void = {}) async rethrows -> Int32 {
            let deadline = Date().addingTimeInterval(timeout)
            while process.isRunning && Date() < deadline {
                try await tick()
                try? await Task.sleep(for: .milliseconds(200))
            }
            if process.isRunning {
                kill(process.processIdentifier, SIGKILL)
            }
            process.waitUntilExit()
            return process.terminationStatus
        }

        var output: String { (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "" }
    }
}
