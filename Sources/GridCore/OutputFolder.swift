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
///   same name) is never overwritten, and a file cut short by a failure is removed.
///
/// The folder is held open from the start and each step opens the next from the one before (`openat` with
/// `O_NOFOLLOW`), so a folder swapped for a link between a check and a write is refused too.
///
/// A `fresh` folder (the default `job-ID`) is filled under a temporary name beside it and renamed into place by
/// `finish()` only when every output is in: a download that fails leaves nothing named `job-ID` (it can be run again),
/// and one named so by someone else meanwhile is never written into.
public final class OutputFolder {
    /// Where the outputs end up.
    public let path: String
    /// Where they are written until `finish()` (the same as `path` unless fresh).
    public let filling: String
    private let fd: Int32
    private var finished = false

    public init(_ path: String, fresh: Bool) throws {
        self.path = path
        if fresh {
            if access(path, F_OK) == 0 || errno != ENOENT { throw GridError(.conflict, "\(path) already exists: name a folder to save into") }
            filling = path + ".part-\(getpid())-\(UInt32.random(in: 0 ... .max))"
            guard mkdir(filling, 0o755) == 0 else { throw GridError(.internal, "cannot make \(filling): \(String(cString: strerror(errno)))") }
            fd = open(filling, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        } else {
            filling = path
            if mkdir(path, 0o755) != 0 && errno != EEXIST {
                throw GridError(.internal, "cannot make \(path): \(String(cString: strerror(errno)))")
            }
            // A folder the user named may be a link they made: followed, as they asked.
            fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        }
        guard fd >= 0 else {
            let e = errno
            if fresh { rmdir(filling) }
            throw e == ENOTDIR ? GridError(.conflict, "\(path) is not a folder") : GridError(.internal, "cannot open \(path): \(String(cString: strerror(e)))")
        }
    }

    deinit {
        close(fd)
        // A fresh folder never finished: what was written goes (nothing else is in it).
        if !finished && filling != path { Self.removeTree(filling) }
    }

    /// Writes `data` as the output `name`; returns the path it will have once finished.
    @discardableResult
    public func write(_ data: Data, name: String) throws -> String {
        try FileName.validate(name)
        let parts = FileName.parts(name)
        var folder = dup(fd)
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
        let last = parts.last ?? name
        let file = openat(folder, last, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
        guard file >= 0 else {
            throw errno == EEXIST
                ? GridError(.conflict, "\(name) already exists in \(path): not overwritten")
                : GridError(.internal, "cannot write \(name) in \(path): \(String(cString: strerror(errno)))")
        }
        var complete = false
        defer {
            close(file)
            if !complete { unlinkat(folder, last, 0) }
        }
        var written = 0
        try data.withUnsafeBytes { (bytes: UnsafeRawBufferPointer) in
            while written < bytes.count {
                let n = Glibc.write(file, bytes.baseAddress! + written, bytes.count - written)
                if n < 0, errno == EINTR { continue }
                guard n > 0 else { throw GridError(.internal, "cannot write \(name) in \(path): \(String(cString: strerror(errno)))") }
                written += n
            }
        }
        complete = true
        return path + "/" + name
    }

    /// Puts a fresh folder in place, once every output is in (nothing to do for a folder the user named). Refused if
    /// something took the name meanwhile.
    public func finish() throws {
        guard !finished else { return }
        if filling != path {
            // `rename` replaces an empty folder at the name, never a file or a link, and never writes through one.
            var s = stat()
            if lstat(path, &s) == 0 { throw GridError(.conflict, "\(path) appeared while the outputs were saved; they are in \(filling)") }
            guard rename(filling, path) == 0 else {
                throw GridError(.conflict, "cannot name \(filling) \(path): \(String(cString: strerror(errno))); the outputs are in \(filling)")
            }
        }
        finished = true
    }

    private static func removeTree(_ path: String) {
        try? FileManager.default.removeItem(atPath: path)
    }
}
