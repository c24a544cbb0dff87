import Foundation

/// Finds the real Python interpreter once, so jobs do not pay for a shim (pyenv's `python3` costs ~200 ms a start and
/// lives in a home directory a sandbox cannot see).
public enum PythonLocator {
    public static func resolve(_ candidate: String = "python3") throws -> String {
        // Bounded: pyenv's shim alone costs ~0.2 s; a Python that hangs at start is as good as none. `-S`: the
        // interpreter's path does not depend on `site`, whose imports are most of a start (17 of 26 ms here).
        guard let r = try? Command.run("/usr/bin/env", [candidate, "-S", "-c", "import sys, os; print(os.path.realpath(sys.executable))"], timeout: 30)
        else { throw PythonNotFound(candidate: candidate) }
        let path = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        guard r.succeeded, path.hasPrefix("/") else { throw PythonNotFound(candidate: candidate) }
        return path
    }

    public struct PythonNotFound: Error, CustomStringConvertible {
        public var candidate: String
        public var description: String { "no working Python interpreter at \(String(reflecting: candidate)); install python3 or pass --python PATH" }
    }
}
