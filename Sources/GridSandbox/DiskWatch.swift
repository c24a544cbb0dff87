import CGridSpawn
public import Foundation

/// How much disk one job may take on the worker. A job's files are capped one by one (`RunnerLimits.maxFileBytes`),
/// but a job that wrote many of them filled its contributor's disk. While a job runs, its folder is measured every few
/// seconds (`JobExecution.watchDisk`); a job past these is stopped, as a job past its memory is.
public struct DiskLimits: Sendable, Hashable {
    /// Bytes the job's folder may take (blocks allocated, so a sparse file counts what it holds).
    public var maxBytes: Int64
    /// Files and folders the job's folder may hold (each takes an inode of the contributor's disk).
    public var maxEntries: Int64
    /// Free space the worker's disk keeps: below it, the job is stopped whatever its own size (it may hide what it
    /// wrote: a file deleted while still open takes space no walk of its folder sees).
    public var floorBytes: Int64

    public init(maxBytes: Int64 = 10 << 30, maxEntries: Int64 = 200_000, floorBytes: Int64 = 256 << 20) {
        self.maxBytes = maxBytes
        self.maxEntries = maxEntries
        self.floorBytes = floorBytes
    }
}

/// The rule, pure: whether one measure of a job's folder and of its disk stops the job, and why.
public enum DiskRule {
    /// One measure: the folder's bytes and entries (nil bytes: it could not be walked: a tree deeper than a path can
    /// name hides what is below), and the disk's free bytes (nil: unknown).
    public struct Measure: Sendable, Hashable {
        public var bytes: Int64?
        public var entries: Int64
        public var free: Int64?
        public init(bytes: Int64?, entries: Int64, free: Int64?) {
            self.bytes = bytes
            self.entries = entries
            self.free = free
        }
    }

    /// Why the job must stop, in words for its owner; nil while it is within its limits.
    public static func verdict(_ m: Measure, limits: DiskLimits) -> String? {
        guard let bytes = m.bytes else { return "its folder could not be measured (a tree too deep to walk); stopped" }
        if bytes > limits.maxBytes { return "disk limit reached: its folder passed \(mib(limits.maxBytes)) on this worker" }
        if m.entries > limits.maxEntries { return "disk limit reached: its folder passed \(limits.maxEntries) files and folders on this worker" }
        if let free = m.free, free < limits.floorBytes {
            return "the worker's disk is nearly full (\(mib(max(0, free))) free, under the \(mib(limits.floorBytes)) it keeps); stopped"
        }
        return nil
    }

    /// Whether `reason` is one `verdict` gives.
    public static func isVerdict(_ reason: String) -> Bool {
        reason.hasPrefix("disk limit reached") || reason.hasPrefix("the worker's disk is nearly full") || reason.hasPrefix("its folder could not be measured")
    }

    /// How long to wait before the next measure, given how long this one took: at least `every` seconds, and at least
    /// ten times the walk (so that measuring takes at most a tenth of a core), at most a minute.
    public static func interval(walkSeconds: Double, every: Double = 2) -> Double {
        guard walkSeconds.isFinite, walkSeconds > 0 else { return every }
        return min(60, max(every, walkSeconds * 10))
    }

    static func mib(_ bytes: Int64) -> String {
        bytes >= 1 << 30 ? String(format: "%.1f GiB", Double(bytes) / Double(1 << 30)) : "\(bytes >> 20) MiB"
    }

    /// Measures `folder` now: its tree (the walk stops just past the limits) and its disk's free space.
    public static func measure(_ folder: String, limits: DiskLimits) -> Measure {
        var entries: Int64 = 0
        let bytes = grid_disk_usage(folder, limits.maxBytes, limits.maxEntries, &entries)
        var s = statvfs()
        let free: Int64? =
            statvfs(folder, &s) == 0
            ? { let (b, o) = Int64(clamping: s.f_bavail).multipliedReportingOverflow(by: Int64(clamping: s.f_frsize)); return o ? .max : b }() : nil
        return Measure(bytes: bytes < 0 ? nil : bytes, entries: entries, free: free)
    }
}
