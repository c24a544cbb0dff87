import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// `podman system service` started by a worker for itself (`--sandbox podman` when no engine answers, the usual case
/// for rootless Podman without `systemctl --user enable podman.socket`): a child that dies with the worker
/// (parent-death signal) and is stopped with it.
public final class PodmanUserService: Sendable {
    /// The service's Docker-API socket.
    public let socket: String
    private let execution: JobExecution

    private init(socket: String, execution: JobExecution) {
        self.socket = socket
        self.execution = execution
    }

    /// The `podman` on `PATH`, if any.
    public static func podman(environment: [String: String]) -> String? {
        for dir in (environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin").split(separator: ":") {
            let path = String(dir) + "/podman"
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return nil
    }

    /// Starts the service on `socket` and waits (at most `timeout` seconds) until it answers.
    public static func start(podman: String, socket: String, environment: [String: String], timeout: Double = 30) throws -> PodmanUserService {
        try? FileManager.default.removeItem(atPath: socket)
        let execution: JobExecution
        do {
            execution = try JobExecution.spawn(
                path: podman, arguments: ["system", "service", "--log-level=error", "--time=0", "unix://" + socket], environment: environment,
                directory: (socket as NSString).deletingLastPathComponent, limits: [], deadline: 10 * 365 * 86_400)
        } catch {
            throw SandboxUnavailable("cannot start \(podman) system service: \(error)")
        }
        let service = PodmanUserService(socket: socket, execution: execution)
        let engine = DockerEngine(socket: socket)
        let end = Date().addingTimeInterval(timeout)
        while Date() < end {
            if engine.ping() { return service }
            usleep(100_000)
        }
        service.stop()
        throw SandboxUnavailable("\(podman) system service did not answer at \(socket) within \(Int(timeout)) s")
    }

    /// Stops the service and everything it started.
    public func stop() { execution.cancel() }
}
