public import Foundation
import GridCore

#if canImport(Glibc)
import Glibc
#endif

/// One worker per data folder. Two workers on one folder would share a worker id, and each would take the other's run
/// folders and interpreters' folders for ones a dead worker left (`JobFiles.sweep`); two workers in different PID
/// namespaces (two containers, both PID 1) cannot tell each other's PIDs apart. So a worker holds an exclusive `flock`
/// on `worker.lock` in its data folder while it runs: the kernel releases it when the process ends, however it ends,
/// and a lock crosses PID namespaces. Holding it, a worker knows that whatever run folders it finds are a gone
/// worker's.
public final class DataFolderLock: Sendable {
    /// The lock file.
    public let path: String
    private let fd: Int32

    private init(path: String, fd: Int32) {
        self.path = path
        self.fd = fd
    }

    deinit { close(fd) }

    /// Takes the lock of `folder` (made if missing, private to the worker's user), waiting up to `wait` seconds for a
    /// worker that holds it to end (one being replaced while it stops). Throws, with the PID the holder wrote, when it
    /// does not end in time, or when the lock file cannot be opened (a link put in its place is not followed).
    public static func take(_ folder: String, wait: Double = 10) throws -> DataFolderLock {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let path = folder + "/worker.lock"
        let fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw GridError(.`internal`, "could not open \(path): \(String(cString: strerror(errno)))") }
        let deadline = Date().addingTimeInterval(max(0, min(wait, 600)))
        // Bounded: one try every 50 ms until the deadline.
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let e = errno
            guard e == EWOULDBLOCK || e == EINTR, Date() < deadline else {
                let holder = e == EWOULDBLOCK ? Self.holder(fd) : nil
                close(fd)
                guard e == EWOULDBLOCK else { throw GridError(.`internal`, "could not lock \(path): \(String(cString: strerror(e)))") }
                throw GridError(
                    .conflict,
                    "another worker\(holder.map { " (PID \($0))" } ?? "") is using the data folder \(folder); give each worker its own --data-dir")
            }
            usleep(50_000)
        }
        // Who holds it, for the message a second worker gives.
        let pid = Array("\(getpid())\n".utf8)
        if ftruncate(fd, 0) == 0 { _ = pid.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) } }
        return DataFolderLock(path: path, fd: fd)
    }

    /// The PID the holder wrote (what a stranger's file there says is only shown, never acted on).
    private static func holder(_ fd: Int32) -> Int32? {
        var buffer = [UInt8](repeating: 0, count: 16)
        let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { return nil }
        return Int32(String(decoding: buffer[..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)).flatMap { $0 > 0 ? $0 : nil }
    }
}
