public import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Files only their owner may read: keys, tokens, credentials.
///
/// `FileManager.createFile(atPath:contents:attributes: [.posixPermissions: 0o600])` writes a temporary file with the
/// process's default mode (0644 under the usual umask), renames it into place, and only then applies 0600: another
/// local user watching the folder could open the temporary file and keep reading it. Here the file is 0600 from the
/// moment it exists, and a folder made for it is 0700.
public enum PrivateFile {
    /// Writes `data` to `path`, replacing it whole (a temporary file beside it, renamed over it: a reader never sees
    /// half of it). Never follows a link at the temporary name.
    public static func write(_ data: Data, to path: String) throws {
        let folder = (path as NSString).deletingLastPathComponent
        if !folder.isEmpty { try makeFolder(folder) }
        let temporary = path + ".tmp-\(getpid())-\(UInt32.random(in: 0 ... .max))"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw GridError(.internal, "cannot write \(path): \(String(cString: strerror(errno)))") }
        var done = false
        defer {
            close(fd)
            if !done { unlink(temporary) }
        }
        // The umask may have taken bits from 0600; never more than the owner's.
        guard fchmod(fd, 0o600) == 0 else { throw GridError(.internal, "cannot make \(path) private: \(String(cString: strerror(errno)))") }
        let bytes = [UInt8](data)
        var written = 0
        while written < bytes.count {
            let n = bytes[written...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { throw GridError(.internal, "cannot write \(path): \(String(cString: strerror(errno)))") }
            written += n
        }
        guard fsync(fd) == 0, rename(temporary, path) == 0 else {
            throw GridError(.internal, "cannot write \(path): \(String(cString: strerror(errno)))")
        }
        done = true
    }

    /// Makes `folder` (and its parents) when missing, the folder itself 0700; one that exists keeps its mode.
    public static func makeFolder(_ folder: String) throws {
        var isFolder: ObjCBool = false
        if FileManager.default.fileExists(atPath: folder, isDirectory: &isFolder), isFolder.boolValue { return }
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    }
}
