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
    /// One measure: the folder's bytes and entries, and the disk's free bytes (nil: unknown).
    public struct Measure: Sendable, Hashable {
        /// nil: the folder could not be walked (a tree too deep for a path to name hides what is below).
        public var bytes: Int64?
        public var entries: Int64
        /// A folder in it could not be read, or an entry looked at, for want of permission: what is below it is hidden.
        public var hidden: Bool
        /// The walk failed for a passing reason (a folder vanished while it went on, twice): bytes and entries say
        /// nothing this time.
        public var incomplete: Bool
        public var free: Int64?
        /// Bytes of files the job's processes hold open that were deleted (on the folder's disk): they count as the
        /// folder's.
        public var openDeleted: Int64 = 0
        public init(bytes: Int64?, entries: Int64, hidden: Bool = false, incomplete: Bool = false, free: Int64?) {
            self.bytes = bytes
            self.entries = entries
            self.hidden = hidden
            self.incomplete = incomplete
            self.free = free
        }
    }

    /// How many incomplete measures in a row stop a job: a walk that keeps failing measures nothing.
    public static let incompleteLimit = 3

    /// Why the job must stop, in words for its owner; nil while it is within its limits. `incompleteInARow`: how many
    /// measures in a row, this one included, were incomplete.
    public static func verdict(_ m: Measure, limits: DiskLimits, incompleteInARow: Int = 0) -> String? {
        if let free = m.free, free < limits.floorBytes {
            return floorPrefix + " (\(mib(max(0, free))) free, under the \(mib(limits.floorBytes)) it keeps); stopped"
        }
        if m.incomplete {
            guard incompleteInARow >= incompleteLimit else { return nil }
            return "disk limit reached: its folder could not be measured \(incompleteInARow) times in a row"
        }
        guard let bytes = m.bytes else { return "disk limit reached: its folder could not be measured (a tree too deep to walk)" }
        if m.hidden { return "disk limit reached: part of its folder was made unreadable, so it could not be measured" }
        let open = max(0, m.openDeleted)
        let (total, overflow) = max(0, bytes).addingReportingOverflow(open)
        if overflow || total > limits.maxBytes {
            let hidden = open > 0 ? " (\(mib(open)) of it in deleted files still open)" : ""
            return "disk limit reached: its folder passed \(mib(limits.maxBytes)) on this worker\(hidden)"
        }
        if m.entries > limits.maxEntries { return "disk limit reached: its folder passed \(limits.maxEntries) files and folders on this worker" }
        return nil
    }

    static let floorPrefix = "the worker's disk is nearly full"

    /// Whether the disk's floor holds for a folder that `maxBytes` bounds and that started when the disk had
    /// `freeAtStart` free: only once the free space fell by more than the folder may hold (a disk the contributor's own
    /// files filled would otherwise stop everything as it starts there). Unknown free space: it holds. Never traps.
    public static func floorCounts(freeAtStart: Int64?, freeNow: Int64?, maxBytes: Int64) -> Bool {
        guard let start = freeAtStart, let now = freeNow else { return true }
        let (fell, overflow) = start.subtractingReportingOverflow(now)
        return overflow ? start > now : fell > maxBytes
    }

    /// The bytes held by regular files that `pids` hold open, or have mapped, that were deleted (no name left), on the
    /// file system of `folder`: each file once, whoever holds it. An open one counts the blocks it holds; one only
    /// mapped (its descriptor closed), at least the bytes mapped. A process that ended meanwhile, or that this worker
    /// may not look into, counts nothing. (A descriptor in flight on a socket, held by no process, is not seen: the
    /// disk's floor still holds.) Never negative; no sum traps (it stops at `Int64.max`). Nil when a process's mappings
    /// were too many to read whole (a job may pile up mappings to push a deleted file's out of reach): the measure is
    /// then incomplete.
    /// The mappings of all the processes together are read to `mapsBudget` at most: past it, incomplete too (a job's
    /// hundred processes of 15 MiB of mappings each cost a look ten seconds of the kernel's time, and the next look was
    /// put off ten times as long: a minute in which the disk went unwatched).
    public static func openDeletedBytes(of pids: [Int32], onDiskOf folder: String, mapsBudget: Int = mapsBudget) -> Int64? {
        var s = stat()
        guard stat(folder, &s) == 0 else { return 0 }
        let device = UInt64(s.st_dev)
        var held: [UInt64: Int64] = [:]
        var mapped: [UInt64: Int64] = [:]
        var mapsRead = 0
        for pid in Set(pids) where pid > 0 {
            let dir = "/proc/\(pid)/fd"
            for fd in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] {
                var f = stat()
                // stat follows the descriptor's link to the open file itself, deleted or not.
                guard stat(dir + "/" + fd, &f) == 0, (f.st_mode & S_IFMT) == S_IFREG, f.st_nlink == 0, UInt64(f.st_dev) == device else { continue }
                held[UInt64(f.st_ino)] = max(0, Int64(f.st_blocks)).multipliedReportingOverflow(by: 512).overflow ? .max : max(0, Int64(f.st_blocks)) * 512
            }
            // "start-end perms offset major:minor inode path (deleted)": a deleted file mapped on the folder's disk. The
            // file is at least as long as the furthest byte any mapping of it reaches (the same file mapped by many
            // forked processes counts once).
            guard let bytes = JobCgroup.readBytes("/proc/\(pid)/maps", limit: min(mapsLimit, max(0, mapsBudget - mapsRead) + 1)) else { continue }
            mapsRead += bytes.count
            guard bytes.count < mapsLimit, mapsRead <= mapsBudget else { return nil }
            for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") where line.hasSuffix(" (deleted)") {
                let f = line.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: true)
                guard f.count >= 5, let inode = UInt64(f[4]), inode != 0, deviceNumber(f[3]) == device else { continue }
                let range = f[0].split(separator: "-")
                guard range.count == 2, let start = UInt64(range[0], radix: 16), let end = UInt64(range[1], radix: 16), end > start,
                    let offset = UInt64(f[2], radix: 16)
                else { continue }
                let (reach, overflow) = offset.addingReportingOverflow(end - start)
                mapped[inode] = max(mapped[inode] ?? 0, overflow ? .max : Int64(clamping: reach))
            }
        }
        var total: Int64 = 0
        for inode in Set(held.keys).union(mapped.keys) {
            let bytes = max(held[inode] ?? 0, mapped[inode] ?? 0)
            let (sum, overflow) = total.addingReportingOverflow(bytes)
            total = overflow ? .max : sum
        }
        return total
    }

    /// The most of one process's `/proc/PID/maps` read (an honest program's is some hundreds of KiB).
    static let mapsLimit = 16 << 20
    /// The most of all of a job's processes' `/proc/PID/maps` read in one look.
    public static let mapsBudget = 64 << 20

    /// The device number (as `stat`'s `st_dev`) of a `major:minor` field of `/proc/PID/maps` (hex); nil when it is not one.
    static func deviceNumber(_ field: Substring) -> UInt64? {
        let parts = field.split(separator: ":")
        guard parts.count == 2, let major = UInt64(parts[0], radix: 16), let minor = UInt64(parts[1], radix: 16),
            major < 1 << 32, minor < 1 << 32
        else { return nil }
        // glibc's makedev.
        return ((major & 0xfff) << 8) | ((major & ~0xfff) << 32) | (minor & 0xff) | ((minor & ~0xff) << 12)
    }

    /// Whether `reason` is one `verdict` gives.
    public static func isVerdict(_ reason: String) -> Bool { reason.hasPrefix("disk limit reached") || isFloor(reason) }

    /// Whether `reason` is the disk's floor (the worker's disk, not this job's folder: the job goes back to the queue).
    public static func isFloor(_ reason: String) -> Bool { reason.hasPrefix(floorPrefix) }

    /// Whether `reason` carries the floor's verdict anywhere (an environment build's error wraps it).
    public static func mentionsFloor(_ reason: String) -> Bool { reason.contains(floorPrefix) }

    /// How long to wait before the next measure, given how long this one took: at least `every` seconds, and at least
    /// ten times the walk (so that measuring takes at most a tenth of a core), at most a minute.
    public static func interval(walkSeconds: Double, every: Double = 2) -> Double {
        guard walkSeconds.isFinite, walkSeconds > 0 else { return every }
        return min(60, max(every, walkSeconds * 10))
    }

    static func mib(_ bytes: Int64) -> String {
        bytes >= 1 << 30 ? String(format: "%.1f GiB", Double(bytes) / Double(1 << 30)) : "\(bytes >> 20) MiB"
    }

    /// The bytes an unprivileged writer may still put on the file system that holds `path` (nil: unknown). The one
    /// measure of free disk: the job watch, the disk floor and the grid inputs' reserve all use it.
    public static func freeBytes(_ path: String) -> Int64? {
        var s = statvfs()
        guard statvfs(path, &s) == 0 else { return nil }
        let (b, o) = Int64(clamping: s.f_bavail).multipliedReportingOverflow(by: Int64(clamping: s.f_frsize))
        return o ? .max : b
    }

    /// Measures `folder` now: its tree (the walk stops just past the limits) and its disk's free space. A walk that
    /// fails (a folder vanished while it went on, say) is tried once more; one that fails again is incomplete.
    public static func measure(_ folder: String, limits: DiskLimits) -> Measure {
        var entries: Int64 = 0
        var hidden: Int32 = 0
        var bytes: Int64 = -1
        var failure: Int32 = 0
        for _ in 0..<2 {
            bytes = grid_disk_usage(folder, limits.maxBytes, limits.maxEntries, &entries, &hidden)
            failure = bytes < 0 ? errno : 0
            if bytes >= 0 || failure == ENAMETOOLONG || failure == ELOOP { break }
        }
        let tooDeep = bytes < 0 && (failure == ENAMETOOLONG || failure == ELOOP)
        return Measure(
            bytes: tooDeep ? nil : max(0, bytes), entries: entries, hidden: hidden != 0, incomplete: bytes < 0 && !tooDeep, free: freeBytes(folder))
    }

    /// Makes a job's folder deletable again by the worker (a job may have left folders without read, write or search
    /// permission, which only matters to a worker that is not root), then deletes it.
    public static func remove(_ folder: URL) {
        _ = grid_make_removable(folder.path)
        try? FileManager.default.removeItem(at: folder)
    }
}
