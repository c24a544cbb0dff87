import GridCore
import GridPeer
import Testing

@Suite struct MemoryTableTests {
    @Test func newerVersionsWinAndOlderOnesAreIgnored() {
        var t = MemoryTable()
        let r1 = t.apply("k", .init(value: .number(1), version: 10, origin: "w-a"))
        #expect(r1)
        let r2 = t.apply("k", .init(value: .number(0), version: 9, origin: "w-b"))
        #expect(!r2)
        let r3 = t.apply("k", .init(value: .number(2), version: 11, origin: "w-a"))
        #expect(r3)
        // Same version: the origin breaks the tie, the same way on every peer.
        let r4 = t.apply("k", .init(value: .number(3), version: 11, origin: "w-b"))
        #expect(r4)
        let r5 = t.apply("k", .init(value: .number(4), version: 11, origin: "w-a"))
        #expect(!r5)
        #expect(t.get("k")?.value == .number(3))
    }

    @Test func tombstonesHideKeysAndStopStaleCopiesFromReturning() {
        var t = MemoryTable()
        t.apply("k", .init(value: .string("v"), version: 1, origin: "w-a"))
        t.apply("k", .init(value: nil, version: 2, origin: "w-a"))
        #expect(t.keys(prefix: "") == [])
        let r6 = t.apply("k", .init(value: .string("v"), version: 1, origin: "w-a"))
        #expect(!r6)
        t.collectGarbage(now: 2 + t.tombstoneTTL + 1)
        #expect(t.get("k") == nil)
    }

    /// A stranger's deletion of a public name, as new as its writer likes, held where nothing of the name was: the
    /// owner's older value takes its place. The owner's own deletion still bars her stale copies.
    @Test func aPublicValueTakesThePlaceOfAStrangersDeletionWhateverItsVersion() {
        let key = PeerNamespace.stored("notice", user: nil, kind: .memory)
        let hers = PeerNamespace.wrap(.string("by alice"), owner: "alice")
        var t = MemoryTable()
        #expect(t.store(key, .init(value: nil, version: 500, origin: "w-m"), writer: "mallory") == .kept)
        #expect(t.store(key, .init(value: hers, version: 100, origin: "w-a"), writer: "alice", heldDeletedBy: "mallory") == .kept)
        #expect(t.get(key)?.value == hers)
        #expect(t.heldByOwner["mallory"] == nil && (t.heldByOwner["alice"] ?? 0) > 0, "\(t.heldByOwner)")

        var honest = MemoryTable()
        #expect(honest.store(key, .init(value: nil, version: 500, origin: "w-a"), writer: "alice") == .kept)
        #expect(honest.store(key, .init(value: hers, version: 100, origin: "w-a"), writer: "alice", heldDeletedBy: "alice") == .lost)
        #expect(honest.store(key, .init(value: hers, version: 100, origin: "w-a"), writer: "alice") == .lost)
        #expect(honest.get(key)?.value == nil)
    }

    @Test func rebalanceSendsKeysToNewOwnersAndDropsKeysNoLongerOwned() {
        var t = MemoryTable()
        for i in 0..<300 { t.apply("k\(i)", .init(value: .number(Double(i)), version: 1, origin: "w-a")) }
        let peers = ["w-a", "w-b", "w-c", "w-d"]
        let moves = t.rebalance(selfId: "w-a", peers: peers, replicas: 2)
        for m in moves {
            let owners = Rendezvous.owners(of: m.key, among: peers, replicas: 2)
            #expect(Set(m.sendTo) == Set(owners.filter { $0 != "w-a" }))
            #expect(m.dropAfter == !owners.contains("w-a"))
        }
        #expect(moves.contains { $0.dropAfter })
        #expect(t.rebalance(selfId: "w-a", peers: ["w-a"], replicas: 2).isEmpty)
    }

    @Test func versionsAlwaysIncrease() {
        var c = VersionClock()
        #expect(c.next(nowMs: 100) == 100)
        #expect(c.next(nowMs: 100) == 101)
        #expect(c.next(nowMs: 50) == 102)
        #expect(c.next(nowMs: 500) == 500)
    }

    /// A seal is kept with its entry, a deletion's too (kept a day): both are counted, so deletions of made-up keys
    /// cannot hold more than the budget says.
    @Test func aSealIsCountedWithItsEntryDeletionsToo() {
        let seal = String(repeating: "s", count: 1200)
        let bare = MemoryTable.size(of: "k", MemoryTable.Entry(value: nil, version: 1, origin: "w"))
        #expect(MemoryTable.size(of: "k", MemoryTable.Entry(value: nil, version: 1, origin: "w", seal: seal)) == bare + 1200)
        let value = MemoryTable.size(of: "k", MemoryTable.Entry(value: .number(1), version: 1, origin: "w"))
        #expect(MemoryTable.size(of: "k", MemoryTable.Entry(value: .number(1), version: 1, origin: "w", seal: seal)) == value + 1200)
        #expect(MemoryTable().tombstoneTTL == 24 * 3600 * 1000)
    }
}
