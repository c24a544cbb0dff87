import Foundation
import GridCore

#if canImport(Glibc)
import Glibc
#endif

/// Writing a job's bundle into its scratch directory and collecting its outputs.
enum JobFiles {
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
    /// Stops at `maxBytes`; the second value lists files left out.
    static func collect(
        in directory: URL, globs: [String], inputs: [String: Stamp], maxBytes: Int
    ) -> (files: [(name: String, data: Data)], skipped: [String]) {
        let fm = FileManager.default
        guard let walker = fm.enumerator(at: directory, includingPropertiesForKeys: [.isRegularFileKey, .isSymbolicLinkKey]) else {
            return ([], [])
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
        var out: [(String, Data)] = []
        var skipped: [String] = []
        var total = 0
        for name in names {
            guard (try? FileName.validate(name)) != nil else { continue }
            if globs.isEmpty {
                if name.hasPrefix("__pycache__/") || name.contains("/__pycache__/") { continue }
                if let before = inputs[name], stamp(directory.appendingPathComponent(name).path) == before { continue }
            } else if !globs.contains(where: { fnmatch($0, name, 0) == 0 }) {
                continue
            }
            guard let data = fm.contents(atPath: directory.appendingPathComponent(name).path) else { continue }
            if total + data.count > maxBytes {
                skipped.append(name)
                continue
            }
            total += data.count
            out.append((name, data))
        }
        return (out, skipped)
    }
}
