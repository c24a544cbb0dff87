public import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Where `download` saves a job's outputs. Their names come from the worker that ran the job (a stranger's machine),
/// through a manager the user may not control, so a name is a claim:
/// - it is a valid relative name (`FileName.validate`: no "..", no absolute path, no control characters);
/// - each folder on its way is made here, or must already be a folder here: a link (planted in the folder, or a name
///   such as `a` sent as a link's target) is never followed, so nothing is written outside the folder;
/// - the file is new: an existing file (`.git/config` in a repository the user saves into, or an earlier output of the
///   same name) is never overwritten.
///
/// Each step opens the next folder from the one before (`openat` with `O_NOFOLLOW`), so a folder swapped for a link
/// between a check and a write is refused too.
public struct OutputFolder {
    public let path: String

    /// `fresh`: the folder must not exist yet (the default `job-ID`: a folder of that name already there may be another
    /// user's link); else it is made if missing, and may hold files already (none is overwritten).
    public init(_ path: String, fresh: Bool) throws {
        self.path = path
        if mkdir(path, 0o755) != 0 {
            let made = errno
            guard made == EEXIST, !fresh else {
                throw made == EEXIST
                    ? GridError(.conflict, "\(path) already exists: name a folder to save into")
                    : GridError(.internal, "cannot make \(path): \(String(cString: strerror(made)))")
            }
            var s = stat()
            guard stat(path, &s) == 0, s.st_mode & S_IFMT == S_IFDIR else { throw GridError(.conflict, "\(path) is not a folder") }
        }
    }

    /// Writes `data` as the output `name`; returns the file's path.
    @discardableResult
    public func write(_ data: Data, name: String) throws -> String {
        try FileName.validate(name)
        let parts = FileName.parts(name)
        var folder = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard folder >= 0 else { throw GridError(.internal, "cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(folder) }
        for part in parts.dropLast() {
            if mkdirat(folder, part, 0o755) != 0, errno != EEXIST {
                throw GridError(.internal, "cannot make the folder of \(name): \(String(cString: strerror(errno)))")
            }
            let next = openat(folder, part, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard next >= 0 else {
                throw GridError(.conflict, "\(name): \(part) in \(path) is a link or not a folder; nothing is written through it")
            }
            close(folder)
            folder = next
        }
        let fd = openat(folder, parts.last ?? name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw errno == EEXIST
                ? GridError(.conflict, "\(name) already exists in \(path): not overwritten")
                : GridError(.internal, "cannot write \(name) in \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var written = 0
        try data.withUnsafeBytes { (bytes: UnsafeRawBufferPointer) in
            while written < bytes.count {
                let n = Glibc.write(fd, bytes.baseAddress! + written, bytes.count - written)
                if n < 0, errno == EINTR { continue }
                guard n > 0 else { throw GridError(.internal, "cannot write \(name) in \(path): \(String(cString: strerror(errno)))") }
                written += n
            }
        }
        return path + "/" + name
    }
}
