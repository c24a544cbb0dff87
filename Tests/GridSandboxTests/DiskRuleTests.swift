import Foundation
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
        // A tree too deep to walk hides what is below it.
        #expect(DiskRule.verdict(.init(bytes: nil, entries: 0, free: 1 << 40), limits: limits) != nil)
        #expect(DiskRule.verdict(.init(bytes: .max, entries: .max, free: 0), limits: limits) != nil)
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
        #expect(DiskRule.measure(dir + "/missing", limits: limits).bytes == nil)
    }
}
