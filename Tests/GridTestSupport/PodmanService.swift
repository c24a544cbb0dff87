import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A Podman Docker-API service for one test, on its own unix socket in a temporary folder; stopped by its PID.
/// `--time` makes it exit by itself when idle, so even a crashed test leaves nothing running for long.
public final class PodmanService: @unchecked Sendable {
    // Safe: immutable after init; `process` is only signalled and waited on.
    public let socket: String
    private let process: Process
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
        let p = Process()
        p.executableURL = URL(fileURLWithPath: podman)
        p.arguments = ["system", "service", "--time=120", "unix://" + socket]
        // conmon drops notes (an `oom` file) into its working directory: keep them in the service's folder.
        p.currentDirectoryURL = URL(fileURLWithPath: folder)
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle(forWritingAtPath: "/dev/null")
        process = p
        try p.run()
        let deadline = Date().addingTimeInterval(30)
        while !FileManager.default.fileExists(atPath: socket) && Date() < deadline && p.isRunning { usleep(50_000) }
        guard FileManager.default.fileExists(atPath: socket) else {
            stop()
            throw TestGridError("podman system service did not open \(socket)")
        }
    }

    /// Stops the service (SIGTERM, then SIGKILL after 10 s) and removes its folder.
    public func stop() {
        if process.isRunning { kill(process.processIdentifier, SIGTERM) }
        let deadline = Date().addingTimeInterval(10)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        try? FileManager.default.removeItem(atPath: folder)
    }

    deinit { stop() }
}
