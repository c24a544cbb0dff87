import Foundation
import GridSandbox

#if canImport(Glibc)
import Glibc
#endif

/// A Podman Docker-API service for one test, on its own unix socket in a temporary folder, run by the project's one
/// supervisor (`ChildProcess`: stopped by its PID, every wait bounded). `--time` makes it exit by itself when idle, so
/// even a crashed test leaves nothing running for long.
public final class PodmanService: @unchecked Sendable {
    // Safe: immutable after init; `process` locks itself.
    public let socket: String
    private let process: ChildProcess
    private let folder: String

    /// The image the OCI tests run in (built by scripts/build-sandbox-image).
    public static var image: String {
        ProcessInfo.processInfo.environment["CAMPUSGRID_IMAGE"] ?? "localhost/campusgrid-python:3.11-1"
    }

    public init() throws {
        guard let podman = ["/usr/bin/podman", "/usr/local/bin/podman"].first(where: { FileManager.default.isExecutableFile(atPath: $0) })
        else {
            throw TestGridError("podman is not installed: run scripts/setup")
        }
        folder = "/tmp/cg-pd-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        socket = folder + "/podman.sock"
        // conmon drops notes (an `oom` file) into its working directory: keep them in the service's folder, with its
        // log.
        let p = try ChildProcess(
            name: "podman-service", path: podman, arguments: ["system", "service", "--time=120", "unix://" + socket],
            directory: folder, errors: .file(folder + "/service.log"))
        process = p
        // The socket file appears before the service answers; on a fresh machine its first start also sets up
        // storage, which can take many seconds under load. Wait for `/_ping` itself, bounded.
        let deadline = Date().addingTimeInterval(120)
        while !Self.answers(socket) && Date() < deadline && p.isRunning { usleep(100_000) }
        guard Self.answers(socket) else {
            stop()
            throw TestGridError("podman system service did not answer at \(socket) within 120 s")
        }
    }

    /// Whether an engine answers `GET /_ping` with 200 on `socket` within 10 s.
    static func answers(_ socket: String) -> Bool {
        guard FileManager.default.fileExists(atPath: socket) else { return false }
        let fd = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let path = Array(socket.utf8)
        guard path.count < MemoryLayout.size(ofValue: addr.sun_path) else { return false }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            raw.copyBytes(from: path)
            raw[path.count] = 0
        }
        var tv = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let ok = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard ok == 0 else { return false }
        let request = Array("GET /_ping HTTP/1.0\r\nHost: d\r\n\r\n".utf8)
        guard request.withUnsafeBytes({ Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == request.count else { return false }
        var buffer = [UInt8](repeating: 0, count: 64)
        let n = buffer.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress, $0.count, 0) }
        guard n > 12 else { return false }
        return String(decoding: buffer[0..<n], as: UTF8.self).hasPrefix("HTTP/1.") && buffer[9...11] == Array("200".utf8)[...]
    }

    /// Stops the service (SIGTERM, then SIGKILL after 10 s) and removes its folder. Bounded: Foundation alone was seen
    /// to miss the service's exit (a zombie, `isRunning` still true) and its `waitUntilExit()` hung a whole test run.
    public func stop() {
        process.stop(grace: 10)
        try? FileManager.default.removeItem(atPath: folder)
    }

    deinit { stop() }
}
