import Foundation

/// Finds the real Python interpreter once, so jobs do not pay for a shim (pyenv's `python3` costs ~200 ms a start and
/// lives in a home directory a sandbox cannot see).
public enum PythonLocator {
    public static func resolve(_ candidate: String = "python3") throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [candidate, "-c", "import sys, os; print(os.path.realpath(sys.executable))"]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        do { try process.run() } catch { throw PythonNotFound(candidate: candidate) }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let path = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard process.terminationStatus == 0, path.hasPrefix("/") else { throw PythonNotFound(candidate: candidate) }
        return path
    }

    public struct PythonNotFound: Error, CustomStringConvertible {
        public var candidate: String
        public var description: String { "no working Python interpreter at \(String(reflecting: candidate)); install python3 or pass --python PATH" }
    }
}
