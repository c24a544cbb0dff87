import CGridSpawn
import Foundation
import Synchronization
import Testing

@testable import GridSandbox

#if canImport(Glibc)
import Glibc
#endif

/// The disk rule, measure by measure, and the walk that measures.
@Suite struct DiskRuleTests {
    let limits = DiskLimits(maxBytes: 100, maxEntries: 10, floorBytes: 50)

    @Test func withinItsLimitsAJobGoesOn() {
        #expect(DiskRule.verdict(.init(bytes: 100, entries: 10, free: 50), limits: limits) == nil)
        #expect(DiskRule.verdict(.init(bytes: 0, entries: 0, free: nil), limits: limits) == nil)
        #expect(DiskRule.verdict(.init(bytes: 0, entries: 0, free: .max), limits: limits) == nil)
    }

    @Test func pastAnyLimitItStopsWithTheReason() {
        #expect(DiskRule.verdict(.init(bytes: 101, entries: 1, free: 1 << 40), limits: limits)?.contains("disk limit reached") == true)
        #expect(DiskRule.verdict(.init(bytes: 1, entries: 11, free: 1 << 40), limits: limits)?.contains("files and folders") == true)
        #expect(DiskRule.verdict(.init(bytes: 1, entries: 1, free: 49), limits: limits)?.contains("nearly full") == true)
        #expect(DiskRule.verdict(.init(bytes: 1, entries: 1, free: .min), limits: limits)?.contains("nearly full") == true)
        // A tree too deep to walk, or a folder made unreadable, hides what is below it.
        #expect(DiskRule.verdict(.init(bytes: nil, entries: 0, free: 1 << 40), limits: limits)?.contains("disk limit reached") == true)
        #expect(DiskRule.verdict(.init(bytes: 1, entries: 1, hidden: true, free: 1 << 40), limits: limits)?.contains("unreadable") == true)
        #expect(DiskRule.verdict(.init(bytes: .max, entries: .max, free: 0), limits: limits) != nil)
        // The disk's floor is the worker's trouble (the job goes back to the queue); the rest are the job's.
        #expect(DiskRule.isFloor(DiskRule.verdict(.init(bytes: 1, entries: 1, free: 0), limits: limits)!))
        #expect(!DiskRule.isFloor(DiskRule.verdict(.init(bytes: 101, entries: 1, free: 1 << 40), limits: limits)!))
        #expect(DiskRule.isVerdict(DiskRule.verdict(.init(bytes: 101, entries: 1, free: 1 << 40), limits: limits)!))
    }

    /// Deleted files the job holds open count as its folder's; no sum of two claims traps.
    @Test func deletedFilesStillOpenCountAsTheFolders() {
        func measure(_ bytes: Int64, open: Int64) -> DiskRule.Measure {
            var m = DiskRule.Measure(bytes: bytes, entries: 1, free: 1 << 40)
            m.openDeleted = open
            return m
        }
        #expect(DiskRule.verdict(measure(60, open: 40), limits: limits) == nil)
        #expect(DiskRule.verdict(measure(60, open: 41), limits: limits)?.contains("deleted files still open") == true)
        #expect(DiskRule.verdict(measure(0, open: 101), limits: limits)?.contains("disk limit reached") == true)
        #expect(DiskRule.verdict(measure(.max, open: .max), limits: limits) != nil)
        #expect(DiskRule.verdict(measure(100, open: .min), limits: limits) == nil)
        #expect(DiskRule.verdict(measure(101, open: 0), limits: limits)?.contains("deleted") == false)
    }

    /// A walk that failed for a passing reason (a folder vanished as it went) stops no job: an honest one that makes and
    /// removes temporary folders was stopped as "too deep". The disk's floor still counts.
    @Test func anIncompleteWalkStopsNothingButTheFloorStillCounts() {
        #expect(DiskRule.verdict(.init(bytes: 0, entries: 0, incomplete: true, free: 1 << 40), limits: limits) == nil)
        #expect(DiskRule.verdict(.init(bytes: 0, entries: 0, incomplete: true, free: 1 << 40), limits: limits, incompleteInARow: 2) == nil)
        // A walk that keeps failing measures nothing: three in a row stop the job.
        #expect(
            DiskRule.verdict(.init(bytes: 0, entries: 0, incomplete: true, free: 1 << 40), limits: limits, incompleteInARow: 3)?
                .contains("3 times in a row") == true)
        #expect(DiskRule.verdict(.init(bytes: 0, entries: 0, incomplete: true, free: 1), limits: limits) != nil)
    }

    /// An interpreter's folder (where one user's tasks after another's write) meets the disk's floor only once the disk
    /// lost more than the folder may hold since the interpreter started: a disk the contributor's own files filled
    /// would otherwise stop every interpreter as it starts. No claim of free space traps.
    @Test func theFloorCountsOnlyOnceTheDiskLostMoreThanTheFolderMayHold() {
        #expect(!DiskRule.floorCounts(freeAtStart: 1_000, freeNow: 1_000, maxBytes: 100))
        #expect(!DiskRule.floorCounts(freeAtStart: 1_000, freeNow: 900, maxBytes: 100))
        #expect(DiskRule.floorCounts(freeAtStart: 1_000, freeNow: 899, maxBytes: 100))
        // More free than at the start (the contributor deleted files): not yet.
        #expect(!DiskRule.floorCounts(freeAtStart: 1_000, freeNow: 5_000, maxBytes: 100))
        // Unknown either way: the floor holds, as for a job.
        #expect(DiskRule.floorCounts(freeAtStart: nil, freeNow: 0, maxBytes: 100))
        #expect(DiskRule.floorCounts(freeAtStart: 1_000, freeNow: nil, maxBytes: 100))
        // Boundary values: no subtraction traps, and the sign of the fall decides.
        #expect(DiskRule.floorCounts(freeAtStart: .max, freeNow: .min, maxBytes: .max))
        #expect(!DiskRule.floorCounts(freeAtStart: .min, freeNow: .max, maxBytes: 0))
        #expect(!DiskRule.floorCounts(freeAtStart: .max, freeNow: 0, maxBytes: .max))
        #expect(DiskRule.floorCounts(freeAtStart: .max, freeNow: 0, maxBytes: 0))
        #expect(DiskRule.floorCounts(freeAtStart: 0, freeNow: -1, maxBytes: -5))
        // What the interpreter's check then passes on: a disk under its floor stops it only when the floor counts.
        let low = DiskRule.Measure(bytes: 1, entries: 1, free: 10)
        var quiet = limits
        if !DiskRule.floorCounts(freeAtStart: 20, freeNow: low.free, maxBytes: limits.maxBytes) { quiet.floorBytes = 0 }
        #expect(DiskRule.verdict(low, limits: quiet) == nil)
        #expect(DiskRule.verdict(low, limits: limits).map(DiskRule.isFloor) == true)
    }

    @Test func measuringTakesAtMostATenthOfACore() {
        #expect(DiskRule.interval(walkSeconds: 0.001) == 2)
        #expect(DiskRule.interval(walkSeconds: 0.5) == 5)
        #expect(DiskRule.interval(walkSeconds: 100) == 60)
        for odd in [Double.nan, .infinity, -.infinity, -1, 0] { #expect(DiskRule.interval(walkSeconds: odd) == 2) }
    }

    /// Blocks held, not sizes claimed: a sparse file counts what it holds; a link is not followed (to a big file
    /// outside, or to `/`), and the walk stops just past the limits.
    @Test func theWalkCountsBlocksHeldAndFollowsNoLink() throws {
        let dir = "/tmp/cg-du-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir + "/sub", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Data(repeating: 1, count: 1 << 20).write(to: URL(fileURLWithPath: dir + "/sub/a.bin"))
        // A sparse file of 1 TiB.
        let fd = open(dir + "/sparse", O_WRONLY | O_CREAT, 0o600)
        #expect(fd >= 0)
        #expect(ftruncate(fd, 1 << 40) == 0)
        close(fd)
        try FileManager.default.createSymbolicLink(atPath: dir + "/root", withDestinationPath: "/")
        let m = DiskRule.measure(dir, limits: DiskLimits(maxBytes: 1 << 30, maxEntries: 1_000, floorBytes: 0))
        let bytes = try #require(m.bytes)
        #expect(bytes >= 1 << 20 && bytes < 2 << 20, "\(bytes)")
        #expect(m.entries == 5, "\(m.entries)")
        #expect((m.free ?? 0) > 0)
        // The walk stops once past a limit.
        let stopped = DiskRule.measure(dir, limits: DiskLimits(maxBytes: 1 << 30, maxEntries: 2, floorBytes: 0))
        #expect(stopped.entries == 3)
        let missing = DiskRule.measure(dir + "/missing", limits: limits)
        #expect(missing.incomplete && DiskRule.verdict(missing, limits: DiskLimits(maxBytes: 1, maxEntries: 1, floorBytes: 0)) == nil)
    }

    /// A worker that is not root cannot read a folder its job made unreadable: the walk says so (the job is stopped),
    /// and the worker can still delete the folder afterwards. (Measured here on a thread whose file-system uid is 65534,
    /// the owner of the files, as a worker started by that user would.)
    @Test func aFolderMadeUnreadableIsReportedAndStillRemoved() throws {
        let dir = "/tmp/cg-du-hide-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir + "/hide/deeper", withIntermediateDirectories: true)
        defer {
            _ = grid_make_removable(dir)
            try? FileManager.default.removeItem(atPath: dir)
        }
        try Data(repeating: 1, count: 1 << 20).write(to: URL(fileURLWithPath: dir + "/hide/deeper/big.bin"))
        for p in [dir, dir + "/hide", dir + "/hide/deeper", dir + "/hide/deeper/big.bin"] { #expect(chown(p, 65534, 65534) == 0) }
        #expect(chmod(dir + "/hide/deeper", 0o000) == 0)
        #expect(chmod(dir + "/hide", 0o300) == 0)
        let limits = DiskLimits(maxBytes: 1 << 30, maxEntries: 1_000, floorBytes: 0)
        let seen = Mutex<(DiskRule.Measure?, Int32, Int)>((nil, -1, -1))
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            // The file-system uid is the calling thread's own: the test's other threads stay root.
            _ = grid_setfsuid(65534)
            let m = DiskRule.measure(dir, limits: limits)
            let failed = grid_make_removable(dir)
            let after = DiskRule.measure(dir, limits: limits)
            _ = grid_setfsuid(0)
            seen.withLock { $0 = (m, failed, after.hidden ? 1 : 0) }
            done.signal()
        }
        done.wait()
        let (measured, failed, hiddenAfter) = seen.withLock { $0 }
        let m = try #require(measured)
        #expect(m.hidden, "\(m)")
        #expect(DiskRule.verdict(m, limits: limits)?.contains("unreadable") == true)
        #expect(failed == 0)
        #expect(hiddenAfter == 0)
        var st = stat()
        #expect(stat(dir + "/hide/deeper", &st) == 0 && st.st_mode & 0o777 == 0o700)
    }

    /// What the worker could never read (a folder of another uid: a rootless container's user) is not the job hiding
    /// anything, and stops nothing; and a tree 600 folders deep with an unreadable one at the bottom is still made
    /// deletable (with at most 16 descriptors open).
    @Test func anotherUsersFolderStopsNothingAndDeepTreesAreStillRemoved() throws {
        let dir = "/tmp/cg-du-deep-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir + "/theirs", withIntermediateDirectories: true)
        defer {
            _ = grid_make_removable(dir)
            try? FileManager.default.removeItem(atPath: dir)
        }
        #expect(chown(dir, 65534, 65534) == 0)
        #expect(chown(dir + "/theirs", 12345, 12345) == 0 && chmod(dir + "/theirs", 0o700) == 0)
        var path = dir
        for _ in 0..<600 {
            path += "/d"
            #expect(mkdir(path, 0o700) == 0)
            #expect(chown(path, 65534, 65534) == 0)
        }
        #expect(chmod(path, 0o000) == 0)
        let limits = DiskLimits(maxBytes: 1 << 30, maxEntries: 100_000, floorBytes: 0)
        let deepest = path
        // Measured as the folder's owner: `theirs` is another uid's, unreadable to it, and hides nothing of the job's;
        // the deep unreadable folder is its own.
        let theirs = Mutex<Bool?>(nil)
        let removed = Mutex<Int32>(-1)
        let finished = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            _ = grid_setfsuid(65534)
            // The deep one opened for this measure: `theirs` alone can hide anything from it.
            #expect(chmod(deepest, 0o700) == 0)
            let onlyTheirs = DiskRule.measure(dir, limits: limits)
            #expect(chmod(deepest, 0o000) == 0)
            theirs.withLock { $0 = onlyTheirs.hidden }
            removed.withLock { $0 = grid_make_removable(dir) }
            _ = grid_setfsuid(0)
            finished.signal()
        }
        finished.wait()
        #expect(theirs.withLock { $0 } == false, "another uid's folder was taken for the job hiding something")
        #expect(removed.withLock { $0 } <= 1, "only another uid's folder may stay unreadable")
        var st = stat()
        #expect(stat(deepest, &st) == 0 && st.st_mode & 0o777 == 0o700, "the deepest folder was not opened up")
    }
}
