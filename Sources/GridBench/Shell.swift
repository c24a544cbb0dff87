import Foundation
public import GridSandbox

#if canImport(Glibc)
import Glibc
#endif

/// Running other programs from the bench: one-shot commands with a time limit, and lookups on `PATH`.
public enum Shell {
    /// The result of a finished command (`Command`, in GridSandbox, runs it).
    public typealias Result = Command.Result

    /// Finds `name` on `PATH` (plus the sbin folders, where Debian puts nginx and redis-server).
    public static func which(_ name: String) -> String? {
        if name.hasPrefix("/") { return FileManager.default.isExecutableFile(atPath: name) ? name : nil }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for dir in path.split(separator: ":").map(String.init) + ["/usr/sbin", "/sbin", "/usr/local/sbin"] {
            let candidate = dir + "/" + name
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    /// Runs `command` (looked up on `PATH`) to completion or until `timeout` seconds pass (then kills it).
    public static func run(
        _ command: String, _ arguments: [String], environment: [String: String]? = nil, directory: String? = nil, timeout: Double
    ) throws -> Result {
        guard let path = which(command) else { throw BenchError("\(command) is not installed") }
        return try Command.run(path, arguments, environment: environment, directory: directory, timeout: timeout)
    }

    /// The standard output of a command that succeeded, or nil.
    public static func output(_ command: String, _ arguments: [String], timeout: Double) -> String? {
        guard let r = try? run(command, arguments, timeout: timeout), r.status == 0, !r.timedOut else { return nil }
        return r.stdout
    }

    /// A TCP port on 127.0.0.1 that was free a moment ago (the kernel picks it).
    public static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw BenchError("cannot open a socket") }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        guard ok else { throw BenchError("cannot find a free port") }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    /// Waits until something accepts TCP connections on 127.0.0.1:`port`, up to `timeout` seconds.
    public static func waitForPort(_ port: Int, timeout: Double) -> Bool {
        let deadline = Stats.now() + timeout
        while Stats.now() < deadline {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = in_port_t(UInt16(port).bigEndian)
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            let ok = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
            }
            close(fd)
            if ok { return true }
            usleep(20_000)
        }
        return false
    }
}

/// A failure of the bench itself, in words.
public struct BenchError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
