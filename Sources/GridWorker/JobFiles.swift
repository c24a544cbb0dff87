import Foundation
import GridCore
import GridProtocol
import GridSandbox

#if canImport(Glibc)
import Glibc
#endif

/// Writing a job's bundle into its scratch directory and collecting its outputs.
enum JobFiles {
    /// What each run's folder in the worker's `jobs` folder is named after: `run-PID-JOB-ATTEMPT`.
    static let runPrefix = "run-"

    /// The folder of one run in `jobs`, named with the worker's PID, so that a worker starting later can tell the
    /// folders a worker that was killed left behind (`sweep`) from those of a worker still running beside it.
    static func folder(for ref: JobRef, in jobs: String, pid: pid_t = getpid()) -> URL {
        URL(fileURLWithPath: jobs).appendingPathComponent("\(runPrefix)\(pid)-\(ref.jobId)-\(ref.attempt)")
    }

    /// Removes the run folders in `jobs` whose worker is gone: what a worker killed mid-run left, which nothing else
    /// would ever delete. Called as a worker starts, before it runs anything.
    ///
    /// `exclusive`: the caller holds the data folder's lock (`DataFolderLock`), so no other worker uses it and every
    /// run folder there is a gone worker's, whatever PID it names (one from another PID namespace, too), as is every
    /// folder named `JOB-ATTEMPT` (how run folders were named before they carried the PID). Otherwise, only a folder
    /// whose PID no process has goes (another worker may share the data folder; a PID reused since only keeps a
    /// folder longer), and one named with the caller's own PID (a predecessor's: a worker that is always PID 1 in a
    /// container of its own). Anything else in `jobs` stays. Returns the names removed.
    @discardableResult
    static func sweep(jobs: String, own: pid_t = getpid(), exclusive: Bool = false, remove: (URL) -> Void = DiskRule.remove) -> [String] {
        var removed: [String] = []
        for name in (try? FileManager.default.contentsOfDirectory(atPath: jobs)) ?? [] {
            guard let pid = runFolderPID(name) else { continue }
            if !exclusive {
                guard let pid, pid > 0 else { continue }
                if pid != own, kill(pid, 0) == 0 || errno == EPERM { continue }
            }
            let folder = URL(fileURLWithPath: jobs).appendingPathComponent(name)
            remove(folder)
            if !FileManager.default.fileExists(atPath: folder.path) { removed.append(name) }
        }
        return removed
    }

    /// Whether `name` is a run folder's: `.some(PID)` for `run-PID-JOB-ATTEMPT`, `.some(nil)` for the older
    /// `JOB-ATTEMPT`, nil for anything else.
    static func runFolderPID(_ name: String) -> pid_t?? {
        let isNumber = { (s: Substring) in !s.isEmpty && s.utf8.allSatisfy { (0x30...0x39).contains($0) } && Int64(s) != nil }
        if name.hasPrefix(runPrefix) {
            let fields = name.dropFirst(runPrefix.count).split(separator: "-", omittingEmptySubsequences: false)
            guard fields.count == 3, fields.allSatisfy(isNumber), let pid = pid_t(fields[0]) else { return nil }
            return .some(pid)
        }
        let fields = name.split(separator: "-", omittingEmptySubsequences: false)
        guard fields.count == 2, fields.allSatisfy(isNumber) else { return nil }
        return .some(nil)
    }

    /// Writes `files` (names already checked) from `payload` into `directory`.
    static func unpack(_ files: [(name: String, data: Data)], into directory: URL) throws {
        let fm = FileManager.default
        try fm.createDirectory(at: directory, withIntermediateDirectories: true)
        for file in files {
            try FileName.validate(file.name)
            let url = directory.appendingPathComponent(file.name)
            try fm.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try write(file.data, to: url.path)
        }
    }

    /// Writes `data` to `path`, replacing a file there but never following a link. Not forced to the disk: the scratch
    /// directory lives as long as the run, and a crash loses the run anyway (`Data.write(to:)` `fsync`s each file).
    static func write(_ data: Data, to path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o666)
        guard fd >= 0 else { throw GridError(.`internal`, "could not write \(path): \(String(cString: strerror(errno)))") }
        var done = 0
        var failure: Int32 = 0
        data.withUnsafeBytes { raw in
            while done < raw.count {
                let n = Glibc.write(fd, raw.baseAddress! + done, raw.count - done)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else {
                    failure = n < 0 ? errno : ENOSPC
                    return
                }
                done += n
            }
        }
        if close(fd) != 0, failure == 0 { failure = errno }
        guard failure == 0 else { throw GridError(.`internal`, "could not write \(path): \(String(cString: strerror(failure)))") }
    }

    /// What an input file looked like when the job started: a file with the same size and modification time
    /// afterwards is taken as unchanged.
    struct Stamp: Hashable, Sendable {
        var size: Int
        var modified: Date?
    }

    /// The stamps of `names` inside `directory` (names that are not regular files are left out).
    static func stamps(of names: some Sequence<String>, in directory: URL) -> [String: Stamp] {
        var out: [String: Stamp] = [:]
        for name in names {
            if let stamp = stamp(directory.appendingPathComponent(name).path) { out[name] = stamp }
        }
        return out
    }

    static func stamp(_ path: String) -> Stamp? {
        guard let attrs = try? FileManager.default.attributesOfItem(atPath: path), let size = attrs[.size] as? Int else { return nil }
        return Stamp(size: size, modified: attrs[.modificationDate] as? Date)
    }

    /// Output files of a finished job: those matching `globs`, or every file that is not an unchanged input.
    /// Stops at `maxBytes`, at `maxFiles` files and at `maxNameBytes` of their names (the report that lists them is one
    /// line, and the manager takes at most `WorkerClaims.files` of them: a job of 600 long names of `"` made a report
    /// over the line limit, which closed the worker's link each time it was sent again). `leftOut` counts the files
    /// left out, `skipped` names the first 20 of them. Each file is read as `readRegularFile` reads it:
    /// never through a link, never a FIFO or device, never more than the room left (whatever the job did to the folder
    /// after it was listed: a process of the job that outlived it may still be at work there).
    /// `afterListing`: called once the folder is listed, before any file is read (tests change the folder there).
    static func collect(
        in directory: URL, globs: [String], inputs: [String: Stamp], maxBytes: Int, maxFiles: Int = WorkerClaims.files.upperBound,
        maxNameBytes: Int = maxOutputNameBytes, afterListing: (() -> Void)? = nil
    ) -> (files: [(name: String, data: Data)], skipped: [String], leftOut: Int) {
        let fm = FileManager.default
        guard let walker = fm.enumerator(at: directory, includingPropertiesForKeys: [.isRegularFileKey, .isSymbolicLinkKey]) else {
            return ([], [], 0)
        }
        let base = directory.standardizedFileURL.path
        var names: [String] = []
        for case let url as URL in walker {
            let values = try? url.resourceValues(forKeys: [.isRegularFileKey, .isSymbolicLinkKey])
            guard values?.isRegularFile == true, values?.isSymbolicLink != true else { continue }
            let path = url.standardizedFileURL.path
            guard path.hasPrefix(base + "/") else { continue }
            names.append(String(path.dropFirst(base.count + 1)))
        }
        names.sort()
        afterListing?()
        var out: [(String, Data)] = []
        var skipped: [String] = []
        var leftOut = 0
        var total = 0
        var nameBytes = 0
        func leave(_ name: String) {
            leftOut += 1
            if skipped.count < 20 { skipped.append(name) }
        }
        for name in names {
            guard (try? FileName.validate(name)) != nil else { continue }
            if globs.isEmpty {
                if name.hasPrefix("__pycache__/") || name.contains("/__pycache__/") { continue }
                if let before = inputs[name], stamp(directory.appendingPathComponent(name).path) == before { continue }
            } else if !globs.contains(where: { fnmatch($0, name, 0) == 0 }) {
                continue
            }
            guard out.count < maxFiles, nameBytes + name.utf8.count <= maxNameBytes else {
                leave(name)
                continue
            }
            switch readRegularFile(name, in: base, limit: maxBytes - total) {
            case .notARegularFile:
                continue
            case .tooLarge:
                leave(name)
            case .data(let data):
                total += data.count
                nameBytes += name.utf8.count
                out.append((name, data))
            }
        }
        return (out, skipped, leftOut)
    }

    /// The most bytes of output names one report lists (`collect`): with each name twice (`files`, `saved`), JSON's
    /// escapes (`"` is two bytes) and a bounded reason per saved output, a report stays well under the line limit.
    static let maxOutputNameBytes = 64 << 10

    enum Read: Equatable {
        case data(Data)
        /// Larger than the limit: left unread.
        case tooLarge
        /// Gone, a link (at any step of its path), a FIFO, a device, a directory, or unreadable.
        case notARegularFile
    }

    /// Reads regular file `name` (relative, checked) inside `base`, opening each step of its path with `O_NOFOLLOW`
    /// from the folder's own descriptor, so no link is followed anywhere, and the file with `O_NONBLOCK` (a FIFO put in
    /// its place cannot hang the worker) and only if `fstat` says it is a regular file. At most `limit` bytes: a larger
    /// file (a sparse one of a gigabyte costs the job nothing) is not read at all.
    static func readRegularFile(_ name: String, in base: String, limit: Int) -> Read {
        var fd = open(base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return .notARegularFile }
        // Split on the "/" byte, as the file system does (`FileName.parts`).
        let parts = FileName.parts(name)
        guard let last = parts.last, !parts.contains(where: { $0.isEmpty || $0.utf8.elementsEqual(".".utf8) || $0.utf8.elementsEqual("..".utf8) }) else {
            close(fd)
            return .notARegularFile
        }
        for part in parts.dropLast() {
            let next = openat(fd, part, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            close(fd)
            guard next >= 0 else { return .notARegularFile }
            fd = next
        }
        let file = openat(fd, last, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        close(fd)
        guard file >= 0 else { return .notARegularFile }
        defer { close(file) }
        var info = stat()
        guard fstat(file, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { return .notARegularFile }
        let size = Int(clamping: info.st_size)
        guard size <= max(0, limit) else { return .tooLarge }
        // Up to the size it had when opened (a file still growing is cut there), and never past the limit.
        var data = Data(count: size)
        var done = 0
        let failed = data.withUnsafeMutableBytes { raw -> Bool in
            while done < size {
                let n = read(file, raw.baseAddress! + done, size - done)
                if n < 0 && errno == EINTR { continue }
                if n < 0 { return true }
                if n == 0 { break }
                done += n
            }
            return false
        }
        guard !failed else { return .notARegularFile }
        if done < size { data.removeSubrange(done...) }
        return .data(data)
    }
}
