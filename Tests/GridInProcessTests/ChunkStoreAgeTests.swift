import Foundation
import GridCore
import GridPeer
@testable import GridWorker
import NIOCore
import Testing

/// A chunk's age on a peer's disk, which decides when a chunk no file names is reclaimed (`ChunkReclaim`): storing a
/// chunk again renews it, a repair copy keeps the age of the copy it came from, and an age from the wire is a claim.
@Suite struct ChunkStoreAgeTests {
    static func store(_ label: String) throws -> ChunkStore {
        let root = NSTemporaryDirectory() + "campusgrid-chunkage-\(label)-\(UUID().uuidString.prefix(8))"
        return try ChunkStore(root: root)
    }

    static func chunk(_ byte: UInt8, _ count: Int = 5000) -> (hash: String, bytes: ByteBuffer) {
        let bytes = ByteBuffer(repeating: byte, count: count)
        return (ChunkStore.sha256(bytes), bytes)
    }

    var now: Double { Date().timeIntervalSince1970 }

    @Test func anOldCopyIsReclaimedOnceAndItsBytesAreCountedOff() throws {
        let store = try Self.store("old")
        defer { try? FileManager.default.removeItem(atPath: store.root) }
        let (old, oldBytes) = Self.chunk(1)
        let (fresh, freshBytes) = Self.chunk(2)
        try store.put(old, oldBytes, storedAt: Int64(now) - 1000)
        try store.put(fresh, freshBytes)
        #expect(store.storedAt(old) == Int64(now) - 1000 || store.storedAt(old) == Int64(now) - 999)
        #expect(store.heldBytes == 2 * ChunkStore.charge(5000))
        #expect(store.pastLease(now: now, lease: 500) == [old])
        #expect(store.reclaim(fresh, now: now, lease: 500) == nil)
        #expect(store.reclaim(old, now: now, lease: 500) == ChunkStore.charge(5000))
        #expect(store.reclaim(old, now: now, lease: 500) == nil)
        #expect(!store.has(old) && store.has(fresh))
        #expect(store.heldBytes == ChunkStore.charge(5000))
        // Names that are no chunk's reclaim nothing.
        for bad in ["", "../x", String(repeating: "A", count: 64)] { #expect(store.reclaim(bad, now: now, lease: 0) == nil) }
    }

    @Test func storingAChunkAgainRenewsItAndARepairCopyNeverMakesItOlder() throws {
        let store = try Self.store("renew")
        defer { try? FileManager.default.removeItem(atPath: store.root) }
        let (hash, bytes) = Self.chunk(3)
        try store.put(hash, bytes, storedAt: Int64(now) - 1000)
        #expect(store.pastLease(now: now, lease: 500) == [hash])
        // An upload of the same bytes (no age given): the copy here is the new file's now.
        try store.put(hash, bytes)
        #expect(store.pastLease(now: now, lease: 500) == [])
        #expect(store.reclaim(hash, now: now, lease: 500) == nil)
        // A repair copy of an old one arriving where a newer copy is: the newer age stays.
        try store.put(hash, bytes, storedAt: Int64(now) - 1000)
        #expect(store.pastLease(now: now, lease: 500) == [])
        #expect(store.heldBytes == ChunkStore.charge(5000))
    }

    @Test func aRenewalMakesAnOldCopyNewAndFindsNoMissingOne() throws {
        let store = try Self.store("keep")
        defer { try? FileManager.default.removeItem(atPath: store.root) }
        let (hash, bytes) = Self.chunk(5)
        try store.put(hash, bytes, storedAt: Int64(now) - 1000)
        #expect(store.renew(hash))
        #expect(store.pastLease(now: now, lease: 500) == [] && store.reclaim(hash, now: now, lease: 500) == nil)
        let (absent, _) = Self.chunk(6)
        #expect(!store.renew(absent) && !store.has(absent))
        #expect(!store.renew("../../etc/passwd"))
    }

    @Test(arguments: [Int64.max, Int64.min, -1, Int64(Date().timeIntervalSince1970) + 3600])
    func anAgeFromTheWireAheadOfTheClockOrBelowZeroCountsAsNow(storedAt: Int64) throws {
        let store = try Self.store("forged")
        defer { try? FileManager.default.removeItem(atPath: store.root) }
        let (hash, bytes) = Self.chunk(4)
        try store.put(hash, bytes, storedAt: storedAt)
        let at = try #require(store.storedAt(hash))
        #expect(abs(Double(at) - now) < 60, "\(storedAt) gave \(at)")
        #expect(store.reclaim(hash, now: now, lease: 500) == nil)
    }
}
